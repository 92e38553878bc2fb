"""The course's gradient_check.py: centred finite differences in numpy.

Each function perturbs x in place, one element at a time, by +h and -h and
restores it, so x must be a writeable float array (float64 for the course's
error levels). f is called with x itself.
"""
from random import randrange

import numpy as np

__all__ = [
    'eval_numerical_gradient', 'eval_numerical_gradient_array',
    'eval_numerical_gradient_blobs', 'eval_numerical_gradient_net',
    'grad_check_sparse', 'rel_error',
]


def _centred(x, ix, h, f):
    """(f at x[ix] + h, f at x[ix] - h), x restored afterwards."""
    keep = x[ix]
    try:
        x[ix] = keep + h
        plus = f()
        x[ix] = keep - h
        minus = f()
    finally:
        x[ix] = keep
    return plus, minus


def eval_numerical_gradient(f, x, verbose=True, h=0.00001):
    """Gradient of the scalar function f at x, one element at a time."""
    grad = np.zeros_like(x)
    for ix in np.ndindex(*x.shape):
        plus, minus = _centred(x, ix, h, lambda: f(x))
        grad[ix] = (plus - minus) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient at x of sum(f(x) * df) for an array-valued f: what backward
    gives for upstream gradient df."""
    grad = np.zeros_like(x)
    for ix in np.ndindex(*x.shape):
        # copies: f may return the same buffer for both calls
        plus, minus = _centred(x, ix, h, lambda: np.array(f(x), copy=True))
        grad[ix] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def eval_numerical_gradient_blobs(f, inputs, output, h=1e-5):
    """For f(*inputs, output) writing output.vals from blobs with .vals and
    .diffs: the gradient of sum(output.vals * output.diffs) per input."""
    grads = []
    for blob in inputs:
        grad = np.zeros_like(blob.diffs)

        def run():
            f(*(tuple(inputs) + (output,)))
            return np.copy(output.vals)

        for ix in np.ndindex(*blob.vals.shape):
            plus, minus = _centred(blob.vals, ix, h, run)
            grad[ix] = np.sum((plus - minus) * output.diffs) / (2.0 * h)
        grads.append(grad)
    return grads


def eval_numerical_gradient_net(net, inputs, output, h=1e-5):
    """eval_numerical_gradient_blobs for a net whose forward() fills output."""
    return eval_numerical_gradient_blobs(lambda *blobs: net.forward(),
                                         inputs, output, h=h)


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5):
    """Compares analytic_grad with centred differences of the scalar f at
    num_checks random elements of x, printing each; returns the relative
    errors."""
    errors = []
    for _ in range(num_checks):
        ix = tuple(randrange(n) for n in x.shape)
        plus, minus = _centred(x, ix, h, lambda: f(x))
        numeric = (plus - minus) / (2 * h)
        analytic = analytic_grad[ix]
        denom = abs(numeric) + abs(analytic)
        err = abs(numeric - analytic) / denom if denom > 0 else 0.0
        print('numerical: %f analytic: %f, relative error: %e'
              % (numeric, analytic, err))
        errors.append(err)
    return errors


def rel_error(x, y):
    """The notebooks' relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)))
