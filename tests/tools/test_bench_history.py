"""tools/bench_history.py: the regression check flags a drop of more than
15% in a tracked ratio against the last run on the same CPU, and only that;
trend prints one row per run."""
import json
import os
import subprocess
import sys

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
sys.path.insert(0, TOOLS)
import bench_history  # noqa: E402


def line(commit, cpu, **ratios):
    return {"commit": commit, "date": "2026-01-01T00:00Z", "cpu": cpu, "isa": "avx2",
            "threads": 2, "ratios": {k.replace("__", "/"): v for k, v in ratios.items()}}


def write(tmp_path, lines):
    p = tmp_path / "history.jsonl"
    p.write_text("".join(json.dumps(l) + "\n" for l in lines))
    return str(p)


def run(*args):
    return subprocess.run([sys.executable, os.path.join(TOOLS, "bench_history.py"), *args],
                          capture_output=True, text=True)


def test_twenty_percent_drop_is_flagged(tmp_path):
    h = write(tmp_path, [line("a", "cpu X", torch__conv_fwd__cell=2.0, naive__pool=10.0),
                         line("b", "cpu X", torch__conv_fwd__cell=1.6, naive__pool=10.0)])
    r = run("check", "--history", h)
    assert r.returncode == 1, r.stdout
    assert "DROP torch/conv_fwd/cell: 2.00 -> 1.60 (-20%)" in r.stdout
    assert "ok   naive/pool" in r.stdout


def test_ten_percent_drop_passes(tmp_path):
    h = write(tmp_path, [line("a", "cpu X", torch__conv_fwd__cell=2.0),
                         line("b", "cpu X", torch__conv_fwd__cell=1.8)])
    r = run("check", "--history", h)
    assert r.returncode == 0, r.stdout
    assert "ok   torch/conv_fwd/cell" in r.stdout


def test_compares_with_the_same_cpu_only(tmp_path):
    # the previous line on cpu X is "a", not the slower machine's "b"
    lines = [line("a", "cpu X", r=2.0), line("b", "cpu Y", r=1.0), line("c", "cpu X", r=1.9)]
    ok, msgs = bench_history.check(lines)
    assert ok and "c against a" in msgs[0]
    ok, msgs = bench_history.check(lines + [line("d", "cpu Y", r=0.5)])
    assert not ok and "d against b" in msgs[0]
    ok, msgs = bench_history.check([line("a", "cpu X", r=2.0), line("b", "cpu Z", r=0.1)])
    assert ok and "nothing to compare" in msgs[0]


def test_cpu_substring_matches_lines_named_by_hand(tmp_path):
    h = write(tmp_path, [line("a", "AMD EPYC Zen 3, named by hand", r=2.0),
                         line("b", "AMD EPYC", r=1.0)])
    r = run("check", "--history", h)
    assert r.returncode == 0 and "nothing to compare" in r.stdout
    r = run("check", "--history", h, "--cpu", "AMD EPYC")
    assert r.returncode == 1 and "b against a" in r.stdout, r.stdout
    assert "DROP r: 2.00 -> 1.00 (-50%)" in r.stdout


def test_trend_and_bad_files(tmp_path):
    h = write(tmp_path, [line("a", "cpu X", r=2.0), line("b", "cpu X", r=1.5)])
    r = run("trend", "--history", h)
    assert r.returncode == 0
    rows = [l for l in r.stdout.splitlines() if l.startswith("| ")]
    assert len(rows) == 3 and "| b |" in rows[2] and "1.50" in rows[2]
    r = run("check", "--history", str(tmp_path / "missing.jsonl"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    r = run("check", "--history", str(tmp_path / "bad.jsonl"))
    assert r.returncode != 0 and "bad.jsonl:1: not JSON" in r.stderr


def test_ratios_from_medians():
    dsv = {("conv_fwd/cell", "naive"): (10.0, ""), ("conv_fwd/cell", "fast"): (0.5, ""),
           ("conv_fwd/cell", "onednn"): (1.0, ""), ("conv_fwd/cell", "fast_im2col"): (0.1, ""),
           ("model_step/threelayer", "fast/layer"): (12.0, ""),
           ("model_step/threelayer", "naive/layer"): (120.0, "")}
    r = bench_history.ratios(dsv, {"conv_fwd/cell": {"median_ms": 1.5},
                                   "model_step/threelayer": {"median_ms": 24.0}})
    # fast_im2col is a variant, not a backend: the best is fast's 0.5
    assert r == {"torch/conv_fwd/cell": 3.0, "naive/conv_fwd/cell": 20.0,
                 "torch/model_step/threelayer": 2.0, "naive/model_step/threelayer": 10.0}
