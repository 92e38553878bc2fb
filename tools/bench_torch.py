#!/usr/bin/python3
"""PyTorch timings of the cells that bench/ (dasecv-bench) measures.

Run with Debian's /usr/bin/python3 (python3-torch). Prints one JSON object:
the environment (torch version, threads, BLAS) and, per benchmark name
("conv_fwd/cell", ... the dasecv names without the backend), the median time
of each repetition in milliseconds and the median over repetitions.

Each repetition warms up, then times single calls until it has at least
--min-runs calls and --min-time seconds, and keeps their median. Backward
cells time the backward kernel alone (aten's convolution_backward,
max_pool2d_with_indices_backward, threshold_backward,
native_batch_norm_backward; affine as its three matrix products), each call
after an untimed forward on the same tensors, as dasecv-bench does. Batch norms run in train mode
(batch statistics, running statistics updated): sbn is spatial batch norm
of the conv activations, bn the one over the hidden affine's features.
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

aten = torch.ops.aten


def randu(*shape, scale=1.0, gen):
    """Uniform in [-scale, scale), float32 (the distribution dasecv-bench uses)."""
    return (torch.rand(*shape, generator=gen, dtype=torch.float32) * 2 - 1) * scale


def conv_cells(name, n, c, h, w, f, k, stride, pad, gen):
    x = randu(n, c, h, w, gen=gen)
    wt = randu(f, c, k, k, scale=0.1, gen=gen)
    b = randu(f, scale=0.1, gen=gen)
    out = F.conv2d(x, wt, b, stride=stride, padding=pad)
    dout = randu(*out.shape, gen=gen)

    def fwd():
        F.conv2d(x, wt, b, stride=stride, padding=pad)

    def bwd():  # dx, dw, db
        aten.convolution_backward(dout, x, wt, [f], [stride, stride],
                                  [pad, pad], [1, 1], False, [0, 0], 1,
                                  [True, True, True])
    bwd.prepare = fwd
    return {f"conv_fwd/{name}": fwd, f"conv_bwd/{name}": bwd}


def pool_cells(name, n, c, h, w, gen):
    x = randu(n, c, h, w, gen=gen)
    out, idx = aten.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    dout = randu(*out.shape, gen=gen)

    def fwd():
        F.max_pool2d(x, 2, 2)

    def bwd():
        aten.max_pool2d_with_indices_backward(dout, x, [2, 2], [2, 2], [0, 0],
                                              [1, 1], False, idx)

    def fwd_indices():  # the training forward, which the backward follows
        aten.max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], False)
    bwd.prepare = fwd_indices
    return {f"pool_fwd/{name}": fwd, f"pool_bwd/{name}": bwd}


def relu_cells(name, shape, gen):
    x = randu(*shape, gen=gen)
    dout = randu(*shape, gen=gen)

    def fwd():
        torch.relu(x)

    def bwd():
        aten.threshold_backward(dout, x, 0)
    bwd.prepare = fwd
    return {f"relu_fwd/{name}": fwd, f"relu_bwd/{name}": bwd}


def affine_cells(name, n, d, m, gen):
    # dasecv keeps w as (D, M), so out = x @ w + b
    x = randu(n, d, gen=gen)
    w = randu(d, m, scale=0.1, gen=gen)
    b = randu(m, scale=0.1, gen=gen)
    dout = randu(n, m, gen=gen)

    def fwd():
        torch.addmm(b, x, w)

    def bwd():
        torch.mm(dout, w.t())
        torch.mm(x.t(), dout)
        dout.sum(0)
    bwd.prepare = fwd
    return {f"affine_fwd/{name}": fwd, f"affine_bwd/{name}": bwd}


def batchnorm_cells(prefix, name, shape, gen):
    """Train-mode batch norm over dim 1 (gamma, beta ~ U(-0.1, 0.1) as in
    dasecv-bench); backward gives dx, dgamma and dbeta."""
    c = shape[1]
    x = randu(*shape, gen=gen)
    gamma = randu(c, scale=0.1, gen=gen)
    beta = randu(c, scale=0.1, gen=gen)
    rm, rv = torch.zeros(c), torch.ones(c)
    eps = 1e-5
    _, save_mean, save_invstd = aten.native_batch_norm(x, gamma, beta, rm, rv,
                                                       True, 0.1, eps)
    dout = randu(*shape, gen=gen)

    def fwd():
        F.batch_norm(x, rm, rv, gamma, beta, training=True, momentum=0.1, eps=eps)

    def bwd():
        aten.native_batch_norm_backward(dout, x, gamma, rm, rv, save_mean,
                                        save_invstd, True, eps,
                                        [True, True, True])
    bwd.prepare = fwd
    return {f"{prefix}_fwd/{name}": fwd, f"{prefix}_bwd/{name}": bwd}


def threelayer_step(gen, n=50):
    """ThreeLayerConvNet (conv7x7x32 pad 3 - relu - pool2x2 - affine 100 -
    relu - affine 10 - softmax loss) forward + backward, weights * 1e-3."""
    x = randu(n, 3, 32, 32, gen=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    params = [randu(32, 3, 7, 7, scale=1e-3, gen=gen), torch.zeros(32),
              randu(8192, 100, scale=1e-3, gen=gen), torch.zeros(100),
              randu(100, 10, scale=1e-3, gen=gen), torch.zeros(10)]
    for p in params:
        p.requires_grad_(True)
    w1, b1, w2, b2, w3, b3 = params

    def step():
        for p in params:
            p.grad = None  # dasecv overwrites its gradients: no accumulation
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=3)), 2, 2)
        h = F.relu(torch.addmm(b2, h.reshape(n, -1), w2))
        loss = F.cross_entropy(torch.addmm(b3, h, w3), y)
        loss.backward()
    return {"model_step/threelayer": step}


def all_cells(gen):
    cells = {}
    cells.update(conv_cells("cell", 100, 3, 31, 31, 25, 3, 2, 1, gen))
    cells.update(pool_cells("cell", 100, 3, 32, 32, gen))
    cells.update(conv_cells("cifar", 50, 3, 32, 32, 32, 7, 1, 3, gen))
    cells.update(conv_cells("deep", 50, 32, 16, 16, 32, 3, 1, 1, gen))
    cells.update(relu_cells("cifar", (50, 32, 32, 32), gen))
    cells.update(pool_cells("cifar", 50, 32, 32, 32, gen))
    cells.update(affine_cells("cifar", 50, 8192, 100, gen))
    cells.update(batchnorm_cells("sbn", "cifar", (50, 32, 32, 32), gen))
    cells.update(batchnorm_cells("bn", "cifar", (50, 100), gen))
    cells.update(threelayer_step(gen))
    return cells


def time_once(fn, warmup, min_runs, min_time):
    """Median of single timed calls after warm-up; a backward cell's forward
    (fn.prepare) runs untimed before each call."""
    prepare = getattr(fn, "prepare", None) or (lambda: None)
    for _ in range(warmup):
        prepare()
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        prepare()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-runs", type=int, default=20)
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="seconds of timed calls per repetition")
    ap.add_argument("--filter", default="",
                    help="only names containing this substring")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(True)
    gen = torch.Generator().manual_seed(0)
    cells = {k: v for k, v in all_cells(gen).items() if a.filter in k}
    results = {}
    with torch.no_grad():
        for name, fn in cells.items():
            if name.startswith("model_step/"):
                continue
            results[name] = run_reps(fn, a)
    for name, fn in cells.items():
        if name.startswith("model_step/"):
            results[name] = run_reps(fn, a)

    config = torch.__config__.show()
    blas = [l.strip() for l in config.splitlines() if "BLAS_INFO" in l]
    json.dump({
        "context": {
            "torch_version": torch.__version__,
            "threads": torch.get_num_threads(),
            "mkldnn_enabled": torch.backends.mkldnn.is_available(),
            "build": blas[0] if blas else "",
            "repetitions": a.repetitions,
            "statistic": "median of per-repetition medians, ms",
        },
        "results": results,
    }, sys.stdout, indent=1)
    print()


def run_reps(fn, a):
    reps, runs = [], []
    for _ in range(a.repetitions):
        ms, n = time_once(fn, a.warmup, a.min_runs, a.min_time)
        reps.append(ms)
        runs.append(n)
    return {"median_ms": statistics.median(reps), "reps_ms": reps, "runs": runs}


if __name__ == "__main__":
    main()
