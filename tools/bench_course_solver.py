#!/usr/bin/env python3
"""One epoch of the course's ThreeLayerConvNet cell on CIFAR-10, through
``dasecv.course.solver.Solver`` (the course's Python API; the loop runs in
C) and through ``dasecv train`` with the same settings, in interleaved
rounds:

    PYTHONPATH=build/python /usr/bin/python3 tools/bench_course_solver.py \\
        CIFAR10_DIR [--rounds 3] [--dasecv build/cli/dasecv]

Settings: the notebook's cell, ThreeLayerConvNet(weight_scale=0.001,
hidden_dim=500, reg=0.001), adam with learning rate 1e-3, batch 50, one
epoch of the course's 49000 training images, the course's epoch-end checks
(1000 training and all 1000 validation images). Images/s are 49000 over the
wall time of ``solver.train()`` and over ``dasecv train``'s reported
``seconds`` (its solver's wall time), so both include the epoch-end checks
and neither the data loading; ``dasecv train``'s own training-only rate is
shown next to them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def course_round(data_dir):
    import numpy as np
    os.environ['DASECV_CIFAR10_DIR'] = data_dir
    from dasecv.course.classifiers.cnn import ThreeLayerConvNet
    from dasecv.course.data_utils import get_CIFAR10_data
    from dasecv.course.solver import Solver
    data = get_CIFAR10_data()
    np.random.seed(0)
    model = ThreeLayerConvNet(weight_scale=0.001, hidden_dim=500, reg=0.001)
    solver = Solver(model, data, num_epochs=1, batch_size=50, update_rule='adam',
                    optim_config={'learning_rate': 1e-3}, verbose=False)
    t = time.perf_counter()
    solver.train()
    dt = time.perf_counter() - t
    n = data['X_train'].shape[0]
    return n / dt, solver.train_acc_history[-1], solver.val_acc_history[-1]


def cli_round(exe, data_dir):
    cmd = [exe, 'train', '--data', 'cifar10:' + data_dir, '--hidden-dim', '500',
           '--weight-scale', '1e-3', '--reg', '1e-3', '--update-rule', 'adam',
           '--learning-rate', '1e-3', '--batch-size', '50', '--num-epochs', '1', '--json']
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r['images_per_s'], r['train_acc'], r['val_acc'], 49000 / r['seconds']


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('data_dir')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--dasecv', default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'build', 'cli', 'dasecv'))
    ap.add_argument('--course-only', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.course_only:
        print(json.dumps(course_round(a.data_dir)))
        return 0
    course, cli = [], []
    for _ in range(a.rounds):
        # the course's side in a fresh process too, so neither inherits the
        # other's warm caches or thread pool
        out = subprocess.run([sys.executable, os.path.abspath(__file__), a.data_dir,
                              '--course-only'], check=True, capture_output=True,
                             text=True).stdout
        course.append(json.loads(out.strip().splitlines()[-1]))
        cli.append(cli_round(a.dasecv, a.data_dir))
    with open('/proc/loadavg') as f:
        load = ' '.join(f.read().split()[:3])
    print('one CIFAR-10 epoch, ThreeLayerConvNet hidden 500, adam, batch 50; '
          '%d rounds, load average at end %s' % (a.rounds, load))
    print()
    print('| round | course Solver images/s | train acc | val acc | dasecv train images/s '
          '(with checks) | (training only) | train acc | val acc |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for i, (c, d) in enumerate(zip(course, cli)):
        print('| %d | %.0f | %.3f | %.3f | %.0f | %.0f | %.3f | %.3f |'
              % (i + 1, c[0], c[1], c[2], d[3], d[0], d[1], d[2]))
    mc = statistics.median(c[0] for c in course)
    md = statistics.median(d[3] for d in cli)
    print()
    print('median: course Solver %.0f images/s, dasecv train %.0f: %.0f%%'
          % (mc, md, 100 * mc / md))
    return 0


if __name__ == '__main__':
    sys.exit(main())
