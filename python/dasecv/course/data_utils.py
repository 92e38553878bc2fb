"""The course's data_utils: CIFAR-10 loading and the course's preprocessing.

get_CIFAR10_data() takes no directory: it reads $DASECV_CIFAR10_DIR, a
directory of the binary (cifar-10-batches-bin) or python-pickle
(cifar-10-batches-py) layout.
"""
import os

import numpy as np

from ..data import load_cifar10

__all__ = ['load_CIFAR10', 'get_CIFAR10_data']


def load_CIFAR10(ROOT):
    """(X_train, y_train, X_test, y_test) as the course returns them: X float64
    (N, 32, 32, 3), y int64."""
    Xtr, ytr, Xte, yte = load_cifar10(ROOT)
    return (Xtr.transpose(0, 2, 3, 1).astype(np.float64), ytr,
            Xte.transpose(0, 2, 3, 1).astype(np.float64), yte)


def cifar10_dir():
    d = os.environ.get('DASECV_CIFAR10_DIR')
    if not d:
        raise FileNotFoundError('set DASECV_CIFAR10_DIR to a CIFAR-10 directory '
                                '(cifar-10-batches-bin or cifar-10-batches-py)')
    return d


def get_CIFAR10_data(num_training=49000, num_validation=1000, num_test=1000,
                     subtract_mean=True, dtype=np.float64):
    """The course's split and preprocessing: the first num_training training
    images, the next num_validation for validation, the first num_test test
    images; the mean training image subtracted; X (N, 3, 32, 32) of dtype
    (float64 as the course; float32 halves the memory), y int64."""
    Xtr, ytr, Xte, yte = load_cifar10(cifar10_dir())
    if num_training + num_validation > Xtr.shape[0] or num_test > Xte.shape[0]:
        raise ValueError('%d + %d training and %d test images asked; the files hold '
                         '%d and %d' % (num_training, num_validation, num_test,
                                        Xtr.shape[0], Xte.shape[0]))
    parts = {
        'train': (Xtr[:num_training], ytr[:num_training]),
        'val': (Xtr[num_training:num_training + num_validation],
                ytr[num_training:num_training + num_validation]),
        'test': (Xte[:num_test], yte[:num_test]),
    }
    mean = parts['train'][0].mean(axis=0, dtype=np.float64) if subtract_mean else 0.0
    out = {}
    for k, (X, y) in parts.items():
        Xf = X.astype(dtype)
        Xf -= np.asarray(mean, dtype=dtype)
        out['X_' + k], out['y_' + k] = Xf, y
    return out
