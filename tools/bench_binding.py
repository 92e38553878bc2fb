#!/usr/bin/python3
"""Per-call overhead of the binding: a tiny op (relu on a (2, 2) float32
array), so nearly all of the time is argument parsing, conversion, output
allocation and dispatch. Prints microseconds per call, the best of several
repeats, for the generic entry, the course's layer function and a backward.

    PYTHONPATH=build/python /usr/bin/python3 tools/bench_binding.py
"""
import sys
import timeit

import numpy as np

import dasecv
from dasecv.course import layers


def per_call_us(stmt, n=20000, repeat=7):
    return min(timeit.repeat(stmt, number=n, repeat=repeat)) / n * 1e6


def main():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]], dtype=np.float32)
    dout = np.ones_like(x)
    _, cache = layers.relu_forward(x)
    rows = [
        ('np.maximum(x, 0) (numpy, for scale)', lambda: np.maximum(x, 0)),
        ("dasecv.op_forward('relu', x)", lambda: dasecv.op_forward('relu', x)),
        ("dasecv.op_forward('relu', x, backend='naive')",
         lambda: dasecv.op_forward('relu', x, backend='naive')),
        ('course layers.relu_forward(x)', lambda: layers.relu_forward(x)),
        ('course layers.relu_backward(dout, cache)',
         lambda: layers.relu_backward(dout, cache)),
    ]
    print('threads: %d' % dasecv.get_num_threads())
    for name, fn in rows:
        print('%8.2f us  %s' % (per_call_us(fn), name))
    return 0


if __name__ == '__main__':
    sys.exit(main())
