#!/usr/bin/python3
"""NumPy versions of the course's "fast" layers, timed on this machine.

Run with Debian's /usr/bin/python3 (python3-numpy). The course's fast layers
are: convolution as a strided view turned into a column matrix and one matrix
product (its backward scatters the column gradient back with a compiled
col2im loop, written here as one strided add per filter tap), and 2x2 max
pooling through a reshape (backward through an equality mask). Everything
but that scatter is the same sequence of numpy calls as the course's code.
The scatter was timed against the course's compiled col2im (Cython, built
with the course's setup) on the conv cell in float32, 2 BLAS threads, five
interleaved repetitions: 4.67 ms against 4.74 ms (median), the same results
bit for bit. float32 by default, as in the reference figures the speed
targets come from (the course's notebook itself runs float64). Same JSON
layout and timing method as tools/bench_torch.py; only the four course
cells. BLAS threads follow OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
(tools/compare.py sets them to its --threads).
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import as_strided



def time_once(fn, warmup, min_runs, min_time):
    """Median of single timed calls after warm-up (as in bench_torch.py)."""
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, len(times)


def conv_forward(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    f, _, hh, ww = w.shape
    ho = (h + 2 * pad - hh) // stride + 1
    wo = (wd + 2 * pad - ww) // stride + 1
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    sn, sc, sh, sw = xp.strides
    view = as_strided(xp, shape=(c, hh, ww, n, ho, wo),
                      strides=(sc, sh, sw, sn, stride * sh, stride * sw))
    cols = np.ascontiguousarray(view).reshape(c * hh * ww, n * ho * wo)
    out = w.reshape(f, -1) @ cols + b[:, None]
    out = np.ascontiguousarray(out.reshape(f, n, ho, wo).transpose(1, 0, 2, 3))
    return out, (x.shape, w, stride, pad, cols)


def conv_backward(dout, cache):
    (n, c, h, wd), w, stride, pad, cols = cache
    f, _, hh, ww = w.shape
    _, _, ho, wo = dout.shape
    db = dout.sum(axis=(0, 2, 3))
    d2 = dout.transpose(1, 0, 2, 3).reshape(f, -1)
    dw = (d2 @ cols.T).reshape(w.shape)
    dcols = (w.reshape(f, -1).T @ d2).reshape(c, hh, ww, n, ho, wo)
    dxp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad), dtype=dout.dtype)
    for i in range(hh):
        for j in range(ww):
            dxp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += \
                dcols[:, i, j].transpose(1, 0, 2, 3)
    dx = dxp[:, :, pad:pad + h, pad:pad + wd]
    return dx, dw, db


def pool_forward(x, k):
    n, c, h, w = x.shape
    xr = x.reshape(n, c, h // k, k, w // k, k)
    out = xr.max(axis=3).max(axis=4)
    return out, (x, xr, out)


def pool_backward(dout, cache):
    x, xr, out = cache
    mask = xr == out[:, :, :, None, :, None]
    dxr = np.zeros_like(xr)
    dob, _ = np.broadcast_arrays(dout[:, :, :, None, :, None], dxr)
    dxr[mask] = dob[mask]
    dxr /= mask.sum(axis=(3, 5), keepdims=True)  # ties share the gradient
    return dxr.reshape(x.shape)


def cells(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3, 31, 31)).astype(dtype)
    w = rng.standard_normal((25, 3, 3, 3)).astype(dtype)
    b = rng.standard_normal(25).astype(dtype)
    out, cc = conv_forward(x, w, b, 2, 1)
    dout = rng.standard_normal(out.shape).astype(dtype)
    xp = rng.standard_normal((100, 3, 32, 32)).astype(dtype)
    pout, pc = pool_forward(xp, 2)
    pdout = rng.standard_normal(pout.shape).astype(dtype)
    return {
        "conv_fwd/cell": lambda: conv_forward(x, w, b, 2, 1),
        "conv_bwd/cell": lambda: conv_backward(dout, cc),
        "pool_fwd/cell": lambda: pool_forward(xp, 2),
        "pool_bwd/cell": lambda: pool_backward(pdout, pc),
    }


def self_check():
    """The layers against direct loops on a tiny case (a wrong layer fails)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    out, cache = conv_forward(x, w, b, 2, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(out)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            ref[:, :, i, j] = np.tensordot(patch, w, ((1, 2, 3), (1, 2, 3))) + b
    assert np.allclose(out, ref), "conv forward"
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_backward(dout, cache)
    dxp_ref, dw_ref = np.zeros_like(xp), np.zeros_like(w)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            dw_ref += np.tensordot(dout[:, :, i, j], patch, (0, 0))
            dxp_ref[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += \
                np.tensordot(dout[:, :, i, j], w, (1, 0))
    assert np.allclose(dx, dxp_ref[:, :, 1:-1, 1:-1]), "conv dx"
    assert np.allclose(dw, dw_ref) and np.allclose(db, dout.sum((0, 2, 3))), "dw/db"
    xq = rng.standard_normal((2, 2, 4, 4))
    pout, pc = pool_forward(xq, 2)
    pd = rng.standard_normal(pout.shape)
    dxq = pool_backward(pd, pc)
    for i in range(2):
        for j in range(2):
            win = xq[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 2, 4)
            assert np.allclose(pout[:, :, i, j], win.max(-1)), "pool forward"
            g = dxq[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(2, 2, 4)
            hot = win == win.max(-1, keepdims=True)
            assert np.allclose(g, hot * pd[:, :, i, j, None]), "pool backward"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-runs", type=int, default=20)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--filter", default="")
    a = ap.parse_args()
    self_check()
    results = {}
    for name, fn in cells(np.dtype(a.dtype)).items():
        if a.filter not in name:
            continue
        reps, runs = [], []
        for _ in range(a.repetitions):
            ms, n = time_once(fn, a.warmup, a.min_runs, a.min_time)
            reps.append(ms)
            runs.append(n)
        results[name] = {"median_ms": statistics.median(reps), "reps_ms": reps,
                         "runs": runs}
    json.dump({"context": {"numpy_version": np.__version__, "dtype": a.dtype,
                           "repetitions": a.repetitions,
                           "statistic": "median of per-repetition medians, ms"},
               "results": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
