#!/usr/bin/env python3
"""Inference latency and throughput of the course's ThreeLayerConvNet
(conv 32 7x7 pad 3 - relu - max pool 2x2 - affine 500 - relu - affine 10),
dasecv's backends against PyTorch, in one invocation:

    PYTHONPATH=build/python /usr/bin/python3 tools/compare_infer.py \\
        [--batches 1,256] [--threads 2] [--rounds 5] [--backends fast,onednn,auto]

Every (batch, side) pair runs once per round in its own process, in an order
shuffled per round (a fixed seed), so a slow stretch of a shared machine
falls on all of them alike. A process builds the network, makes 10 warm-up
calls, then times single calls (at least --min-calls of them and --min-time
seconds) and reports their median. dasecv: ``dasecv.Model.loss(X)`` in test
mode, the path of ``dasecv eval`` and ``predict`` (dsv_model_scores).
PyTorch 1.13: the same layers in ``eval()`` under ``no_grad()``, with
``torch.set_num_threads``. The table shows the median over rounds of those
medians, in ms per call, and the ratios.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

PY = '/usr/bin/python3'


def time_calls(fn, min_calls, min_time):
    for _ in range(10):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_calls or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def worker(a):
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.batch, 3, 32, 32), dtype=np.float32)
    if a.side == 'torch':
        import torch
        torch.set_num_threads(a.threads)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 7, padding=3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(8192, 500), torch.nn.ReLU(),
            torch.nn.Linear(500, 10)).eval()
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ms = time_calls(lambda: net(xt), a.min_calls, a.min_time)
    else:
        import dasecv
        m = dasecv.Model.from_config('threelayer', hidden_dim=500, weight_scale=1e-2,
                                     backend=a.side, threads=a.threads)
        ms = time_calls(lambda: m.loss(x), a.min_calls, a.min_time)
    print(json.dumps({'ms': ms}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--batches', default='1,256')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--backends', default='fast,onednn,auto')
    ap.add_argument('--min-calls', type=int, default=20)
    ap.add_argument('--min-time', type=float, default=1.0)
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--side', help=argparse.SUPPRESS)
    ap.add_argument('--batch', type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a)

    batches = [int(b) for b in a.batches.split(',')]
    sides = a.backends.split(',') + ['torch']
    pairs = [(b, s) for b in batches for s in sides]
    res = {p: [] for p in pairs}
    order = random.Random(1)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    for _ in range(a.rounds):
        order.shuffle(pairs)
        for b, s in pairs:
            out = subprocess.run(
                [PY, os.path.abspath(__file__), '--worker', '--side', s, '--batch', str(b),
                 '--threads', str(a.threads), '--min-calls', str(a.min_calls),
                 '--min-time', str(a.min_time)],
                env=env, check=True, capture_output=True, text=True).stdout
            res[(b, s)].append(json.loads(out.splitlines()[-1])['ms'])
    with open('/proc/loadavg') as f:
        load = ' '.join(f.read().split()[:3])
    print('ThreeLayerConvNet (hidden 500) inference, %d threads, median of %d rounds '
          '(each the median call), ms; load average at end %s' % (a.threads, a.rounds, load))
    backends = sides[:-1]
    print()
    print('| batch | ' + ' | '.join(backends) + ' | PyTorch | best dasecv / PyTorch (time) '
          '| images/s best dasecv / PyTorch | onednn / fast |')
    print('|---:|' + '---:|' * (len(backends) + 4))
    for b in batches:
        med = {s: statistics.median(res[(b, s)]) for s in sides}
        best = min(med[s] for s in backends)
        cells = ['%.3f' % med[s] for s in sides]
        of = ('%.2f' % (med['onednn'] / med['fast'])) if 'onednn' in med and 'fast' in med \
            else '-'
        print('| %d | %s | %.2f | %.2f | %s |' % (b, ' | '.join(cells), best / med['torch'],
                                                med['torch'] / best, of))


if __name__ == '__main__':
    sys.exit(main())
