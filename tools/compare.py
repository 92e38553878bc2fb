#!/usr/bin/env python3
"""Runs dasecv-bench and tools/bench_torch.py back to back and prints the
comparison table (markdown) of medians in milliseconds: on both sides the
median single call of each repetition, then the median over repetitions.

    tools/compare.py [--bench build-bench/bench/dasecv-bench] [--repetitions 3]
                     [--threads 2] [--filter REGEX] [--save DIR] [--record]

--record appends the run's tracked ratios (against PyTorch and against
naive, with the commit, CPU model, ISA and threads) to bench/history.jsonl;
tools/bench_history.py prints the trend and checks for drops.

Columns: the course's "fast" layers, as the fixed reference figures the
speed targets were set from and as timed here by tools/bench_numpy.py in the
same invocation (course cells only), PyTorch, each dasecv backend, fast's
convolution with its direct kernels off (im2col + sgemm; not counted as a
backend), best dasecv / PyTorch (below 1: dasecv is faster) and the speedup
of the best dasecv backend over the course, against the reference figures
and against the course's layers timed here. Only the standard library is
needed here; PyTorch runs under --torch-python (default /usr/bin/python3).
Both measurements happen in the same invocation so their ratios share the
machine's load; absolute numbers on a busy machine are noisy. dasecv's
repetitions are interleaved at random across its benchmarks, so its
backends are compared over the same stretch of time.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import bench_history

COURSE_MS = {  # the course's fast layers, float32, 2 threads: reference figures
    "conv_fwd/cell": 1.27,
    "conv_bwd/cell": 3.13,
    "pool_fwd/cell": 3.17,
    "pool_bwd/cell": 7.85,
}
BACKENDS = ["naive", "fast", "onednn"]
# fast's convolution with its direct kernels off (im2col + sgemm): its own
# column, not counted as a backend for "best"
VARIANTS = ["fast_im2col"]
ORDER = ["conv_fwd/cell", "conv_bwd/cell", "pool_fwd/cell", "pool_bwd/cell",
         "conv_fwd/cifar", "conv_bwd/cifar", "conv_fwd/deep", "conv_bwd/deep", "relu_fwd/cifar", "relu_bwd/cifar",
         "pool_fwd/cifar", "pool_bwd/cifar", "affine_fwd/cifar",
         "affine_bwd/cifar", "sbn_fwd/cifar", "sbn_bwd/cifar", "bn_fwd/cifar",
         "bn_bwd/cifar", "model_step/threelayer"]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_dasecv(a):
    # Repetitions of all benchmarks are run in a random interleaved order:
    # this VM's speed changes in stretches of seconds, and run back to back
    # one backend could land in a slow stretch and the next in a fast one.
    cmd = [a.bench, "--benchmark_format=json",
           f"--benchmark_repetitions={a.repetitions}",
           "--benchmark_enable_random_interleaving=true",
           "--benchmark_report_aggregates_only=true",
           f"--dsv_threads={a.threads}"]
    if a.filter:
        cmd.append(f"--benchmark_filter={a.filter}")
    if a.min_time:
        cmd.append(f"--benchmark_min_time={a.min_time}")
    print("running:", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
    if p.returncode not in (0, 1):  # 1: some benchmark failed, still report
        sys.exit(f"dasecv-bench exited with {p.returncode}")
    return json.loads(p.stdout)


def run_torch(a):
    cmd = [a.torch_python, os.path.join(HERE, "bench_torch.py"),
           f"--threads={a.threads}", f"--repetitions={a.repetitions}"]
    if a.filter:
        cmd.append(f"--filter={a.filter}")
    print("running:", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, check=True)
    return json.loads(p.stdout)


def run_numpy(a):
    cmd = [a.torch_python, os.path.join(HERE, "bench_numpy.py"),
           f"--repetitions={a.repetitions}"]
    if a.filter:
        cmd.append(f"--filter={a.filter}")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads),
               OMP_NUM_THREADS=str(a.threads))
    print("running:", " ".join(cmd), file=sys.stderr)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, env=env)
    return json.loads(p.stdout)


def to_ms(t, unit):
    return t * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def dasecv_medians(doc):
    """{(cell, backend-or-variant): (ms, label)} from Google Benchmark JSON:
    the median aggregate, or the single run without repetitions, of the
    median call (call_median_ms; results saved before it existed give the
    mean call, real_time)."""
    out, errors = {}, {}
    for b in doc.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        name = re.sub(r"/(real|manual)_time$", "", name)
        cell, _, variant = name.rpartition("/")
        if cell.startswith("model_step/"):  # model_step/<model>/<backend>/<schedule>
            cell, _, backend = cell.rpartition("/")
            variant = f"{backend}/{variant}"
        if b.get("error_occurred"):
            errors[(cell, variant)] = b.get("error_message", "error")
            continue
        agg = b.get("aggregate_name")
        if agg not in (None, "median"):
            continue
        if agg is None and (cell, variant) in out:
            continue
        ms = b.get("call_median_ms", to_ms(b["real_time"], b["time_unit"]))
        out[(cell, variant)] = (ms, b.get("label", ""))
    return out, errors


def fmt(ms):
    if ms is None:
        return "—"
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def speedup(slow, best):
    if not slow or not best:
        return "—"
    r = slow / best  # three digits below 10, so 3.97 is not shown as 4
    return f"{r:.0f}x" if r >= 10 else f"{r:.3g}x"


def table(dsv, torch, numpy):
    tres = torch["results"]
    nres = numpy["results"] if numpy else {}
    cells = list(dict.fromkeys([c for c, _ in dsv] + list(tres)))
    cells.sort(key=lambda c: (ORDER.index(c) if c in ORDER else len(ORDER), c))
    lines = ["| op | course (reference) | course here | PyTorch | naive | fast "
             "| onednn | fast im2col | best dasecv / PyTorch "
             "| speedup vs course (reference) | speedup vs course here |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cell in cells:
        variants = sorted({v for c, v in dsv if c == cell})
        groups = [""] if not variants or \
            all(v in BACKENDS + VARIANTS for v in variants) \
            else sorted({v.split("/", 1)[1] for v in variants if "/" in v})
        for g in groups:
            times = {}
            for be in BACKENDS + ["auto"]:
                key = (cell, f"{be}/{g}" if g else be)
                if key in dsv:
                    times[be] = dsv[key][0]
            pt = tres.get(cell, {}).get("median_ms")
            course = COURSE_MS.get(cell)
            best = min(times.values()) if times else None
            ratio = f"{best / pt:.2f}" if best and pt else "—"
            best_be = min(times, key=times.get) if times else ""
            name = f"{cell} ({g})" if g else cell
            here = nres.get(cell, {}).get("median_ms") if not g else None
            extra = [dsv.get((cell, v), (None,))[0] if not g else None
                     for v in VARIANTS]
            row = [name, fmt(course), fmt(here), fmt(pt)] + \
                  [fmt(times.get(be)) for be in BACKENDS] + \
                  [fmt(x) for x in extra] + \
                  [f"{ratio} ({best_be})" if best_be and pt else ratio,
                   speedup(course, best), speedup(here, best)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default=os.path.join(ROOT, "build-bench", "bench",
                                                    "dasecv-bench"))
    ap.add_argument("--torch-python", default="/usr/bin/python3")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--filter", default="",
                    help="regex for dasecv-bench, substring for bench_torch.py")
    ap.add_argument("--min-time", default="",
                    help="dasecv-bench --benchmark_min_time (seconds)")
    ap.add_argument("--save", default="", help="directory for the raw JSON")
    ap.add_argument("--record", nargs="?", const=bench_history.HISTORY, default=None,
                    metavar="FILE", help="append the tracked ratios to FILE "
                    "(default bench/history.jsonl)")
    ap.add_argument("--no-numpy", action="store_true",
                    help="skip tools/bench_numpy.py (the course-here column)")
    ap.add_argument("--from-json", nargs="+", metavar="FILE",
                    help="tabulate saved dasecv.json torch.json [numpy.json]")
    a = ap.parse_args()

    if a.from_json:
        docs = []
        for path in a.from_json:
            with open(path) as f:
                docs.append(json.load(f))
        dsv_doc, torch_doc = docs[0], docs[1]
        numpy_doc = docs[2] if len(docs) > 2 else None
    else:
        dsv_doc = run_dasecv(a)
        torch_doc = run_torch(a)
        numpy_doc = None if a.no_numpy else run_numpy(a)
    if a.save:
        os.makedirs(a.save, exist_ok=True)
        for name, doc in (("dasecv.json", dsv_doc), ("torch.json", torch_doc),
                          ("numpy.json", numpy_doc)):
            if doc is None:
                continue
            with open(os.path.join(a.save, name), "w") as f:
                json.dump(doc, f, indent=1)
    dsv, errors = dasecv_medians(dsv_doc)
    ctx = dsv_doc.get("context", {})
    print(f"dasecv {ctx.get('dasecv_buildtype', '?')} build, "
          f"threads={ctx.get('dasecv_threads', '?')} "
          f"backends={ctx.get('dasecv_backends', '?')}; "
          f"PyTorch {torch_doc['context']['torch_version']} "
          f"threads={torch_doc['context']['threads']}; "
          f"median call, median of {torch_doc['context']['repetitions']} "
          f"repetitions, ms; "
          f"load average at start "
          f"{' '.join(f'{x:.1f}' for x in ctx.get('load_avg', []))}")
    if numpy_doc:
        print(f"course here: tools/bench_numpy.py, numpy "
              f"{numpy_doc['context']['numpy_version']}, "
              f"{numpy_doc['context']['dtype']}, BLAS threads={a.threads}")
    print()
    print(table(dsv, torch_doc, numpy_doc))
    for (cell, variant), msg in sorted(errors.items()):
        print(f"\n{cell}/{variant}: {msg}")
    if a.record:
        line = bench_history.make_line(dsv, torch_doc, ctx.get("dasecv_threads", a.threads))
        bench_history.append(line, a.record)
        print(f"\nrecorded in {a.record}: {json.dumps(line['ratios'], sort_keys=True)}")


if __name__ == "__main__":
    main()
