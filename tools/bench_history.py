#!/usr/bin/env python3
"""The benchmark history: bench/history.jsonl, one line per recorded run of
tools/compare.py --record, and the tools that read it.

    tools/bench_history.py trend [--history FILE] [--cpu SUBSTRING]
    tools/bench_history.py check [--history FILE] [--threshold 0.15] [--cpu SUBSTRING]

A line holds the commit, the date, the CPU model, the widest vector ISA, the
thread count and the tracked ratios: for each tracked cell, PyTorch's median
over the best dasecv backend's ("torch/<cell>") and naive's over the best
("naive/<cell>"). Both are speedups (higher is better) measured in one run,
so they survive a busy machine far better than absolute times, which are
not recorded.

`trend` prints the history as a table, one row per run. `check` compares
the last line with the previous line of the same CPU model and exits with
status 1 when any ratio they share dropped by more than the threshold (15%
by default); it is for a person to run after recording, not for CI: on a
shared machine a single run can be off by more than that.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HISTORY = os.path.join(ROOT, "bench", "history.jsonl")
# the course's cells and the whole model step: what the speed targets are about
TRACKED = ["conv_fwd/cell", "conv_bwd/cell", "pool_fwd/cell", "pool_bwd/cell",
           "model_step/threelayer"]
ISAS = ["avx512f", "avx2", "avx", "sse4_2", "neon", "asimd"]


def cpu_info():
    """(model name, widest ISA) from /proc/cpuinfo; '?' where unknown."""
    model, flags = "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "?":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    isa = next((i for i in ISAS if i in flags), "?")
    return model, isa


def git_commit():
    """Short hash of HEAD, with '-dirty' when the tree has changes."""
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def ratios(dsv, torch_results):
    """{name: ratio} from compare.py's dasecv medians {(cell, variant): (ms,
    label)} and bench_torch.py's results {cell: {"median_ms": ...}}. Model
    steps count every backend and schedule of the cell."""
    out = {}
    for cell in TRACKED:
        times = {v: ms for (c, v), (ms, _) in dsv.items()
                 if c == cell and v.split("/")[0] in ("naive", "fast", "onednn", "auto")}
        if not times:
            continue
        best = min(times.values())
        pt = torch_results.get(cell, {}).get("median_ms")
        if pt and best > 0:
            out[f"torch/{cell}"] = round(pt / best, 4)
        naive = [ms for v, ms in times.items() if v.split("/")[0] == "naive"]
        if naive and best > 0:
            out[f"naive/{cell}"] = round(min(naive) / best, 4)
    return out


def make_line(dsv, torch_doc, threads):
    model, isa = cpu_info()
    return {"commit": git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "cpu": model, "isa": isa, "threads": threads,
            "ratios": ratios(dsv, torch_doc.get("results", {}))}


def append(line, path=HISTORY):
    with open(path, "a") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


def load(path):
    lines = []
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.strip():
                try:
                    lines.append(json.loads(text))
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{n}: not JSON: {e}")
    return lines


def trend(lines, cpu=None):
    """The history as a markdown table, one row per run, oldest first."""
    lines = [l for l in lines if not cpu or cpu in l.get("cpu", "")]
    names = sorted({k for l in lines for k in l.get("ratios", {})},
                   key=lambda k: (k.partition("/")[2], k))
    head = ["commit", "date", "cpu", "isa", "threads"] + names
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for l in lines:
        r = l.get("ratios", {})
        cells = [l.get("commit", "?"), l.get("date", "?"), l.get("cpu", "?"),
                 l.get("isa", "?"), str(l.get("threads", "?"))]
        cells += [f"{r[k]:.2f}" if k in r else "—" for k in names]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def check(lines, threshold=0.15, cpu=None):
    """(ok, messages): the last line against the previous one of its CPU, or,
    with cpu, the previous one whose CPU model contains it (lines written by
    hand may name the same machine differently)."""
    if not lines:
        return True, ["no history yet"]
    last = lines[-1]
    same = (lambda l: cpu in l.get("cpu", "")) if cpu else \
        (lambda l: l.get("cpu") == last.get("cpu"))
    prev = next((l for l in reversed(lines[:-1]) if same(l)), None)
    if prev is None:
        return True, [f"no earlier run on {cpu or last.get('cpu')}: nothing to compare"]
    ok, msgs = True, []
    for name in sorted(set(last.get("ratios", {})) & set(prev.get("ratios", {}))):
        a, b = prev["ratios"][name], last["ratios"][name]
        change = b / a - 1 if a else 0.0
        drop = change < -threshold
        ok = ok and not drop
        msgs.append(f"{'DROP' if drop else 'ok  '} {name}: {a:.2f} -> {b:.2f} "
                    f"({change:+.0%})")
    head = (f"{last.get('commit')} against {prev.get('commit')} on {last.get('cpu')}, "
            f"threshold -{threshold:.0%}")
    return ok, [head] + msgs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["trend", "check"])
    ap.add_argument("--history", default=HISTORY)
    ap.add_argument("--cpu", default=None,
                    help="trend: only CPU models containing this; check: compare with "
                         "the last earlier run whose CPU model contains this")
    ap.add_argument("--threshold", type=float, default=0.15,
                    help="check: largest tolerated drop of a ratio (0.15 = 15%%)")
    a = ap.parse_args(argv)
    try:
        lines = load(a.history)
    except OSError as e:
        print(f"bench_history: cannot read {a.history}: {e.strerror}", file=sys.stderr)
        return 2
    if a.command == "trend":
        print(trend(lines, a.cpu))
        return 0
    ok, msgs = check(lines, a.threshold, a.cpu)
    print("\n".join(msgs))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
