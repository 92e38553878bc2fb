"""Datasets as numpy arrays: CIFAR-10 and Fashion-MNIST (MNIST's IDX format).

    X_train, y_train, X_test, y_test = dasecv.load_cifar10(dir)
    X_train, y_train, X_test, y_test = dasecv.load_fashion_mnist()

Images are uint8, (N, C, H, W) (CIFAR-10: C = 3; Fashion-MNIST: C = 1);
labels int64. CIFAR-10 is read from the official binary layout
(data_batch_1.bin ... test_batch.bin, cifar-10-batches-bin) or the python
pickle layout (data_batch_1 ... test_batch, cifar-10-batches-py). The
course's split and preprocessing are dasecv.course.data_utils'.
A missing, truncated or malformed file raises OSError or ValueError naming it.
"""
import gzip
import os
import pickle

import numpy as np

from . import _dasecv

CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
                   'horse', 'ship', 'truck')
FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
                         'Shirt', 'Sneaker', 'Bag', 'Ankle boot')

_RECORD = 1 + 3 * 32 * 32


def _cifar_bin(path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise ValueError('%s: %d bytes is not a whole number of CIFAR-10 records of %d '
                         'bytes' % (path, raw.size, _RECORD))
    raw = raw.reshape(-1, _RECORD)
    y = raw[:, 0].astype(np.int64)
    if y.max() > 9:
        raise ValueError('%s: label %d is not a CIFAR-10 class' % (path, y.max()))
    return raw[:, 1:].reshape(-1, 3, 32, 32), y


def _cifar_pickle(path):
    with open(path, 'rb') as f:
        try:
            d = pickle.load(f, encoding='latin1')
        except Exception as e:
            raise ValueError('%s: not a CIFAR-10 python batch (%s)' % (path, e)) from None
    try:
        X = np.asarray(d['data'], dtype=np.uint8)
        y = np.asarray(d['labels'], dtype=np.int64)
        X = X.reshape(-1, 3, 32, 32)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError('%s: not a CIFAR-10 python batch (%s)' % (path, e)) from None
    if X.shape[0] != y.shape[0] or (y.size and (y.min() < 0 or y.max() > 9)):
        raise ValueError('%s: %d images but %d labels in 0..9' % (path, X.shape[0], y.size))
    return X, y


def load_cifar10(directory):
    """(X_train, y_train, X_test, y_test) from a CIFAR-10 directory, binary or
    python layout: X uint8 (N, 3, 32, 32), y int64."""
    directory = os.fspath(directory)
    if os.path.exists(os.path.join(directory, 'data_batch_1.bin')):
        read, ext = _cifar_bin, '.bin'
    elif os.path.exists(os.path.join(directory, 'data_batch_1')):
        read, ext = _cifar_pickle, ''
    else:
        raise FileNotFoundError('%s: no CIFAR-10 batches (data_batch_1.bin or '
                                'data_batch_1)' % directory)
    parts = []
    for b in range(1, 6):
        path = os.path.join(directory, 'data_batch_%d%s' % (b, ext))
        if not os.path.exists(path):
            break  # fewer batches than the official five are accepted
        parts.append(read(path))
    Xte, yte = read(os.path.join(directory, 'test_batch' + ext))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            Xte, yte)


def _idx(path, ndim):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 + 4 * ndim or data[:3] != b'\0\0\x08' or data[3] != ndim:
        raise ValueError('%s: not an IDX file of %d-dimensional unsigned bytes'
                         % (path, ndim))
    dims = np.frombuffer(data, dtype='>u4', count=ndim, offset=4).astype(np.int64)
    n = int(np.prod(dims))
    if len(data) != 4 + 4 * ndim + n:
        raise ValueError('%s: %d bytes, expected %d for shape %s'
                         % (path, len(data), 4 + 4 * ndim + n, tuple(dims)))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def _idx_file(directory, name):
    for cand in (name, name + '.gz'):
        p = os.path.join(directory, cand)
        if os.path.exists(p):
            return p
    raise FileNotFoundError('%s: no %s or %s.gz' % (directory, name, name))


def load_fashion_mnist(directory=None):
    """(X_train, y_train, X_test, y_test) from MNIST-format IDX files (gzip or
    not); directory None: $DASECV_FASHION_MNIST_DIR or Debian's
    /usr/share/datasets/fashion-mnist. X uint8 (N, 1, 28, 28), y int64."""
    directory = os.fspath(directory) if directory is not None else _dasecv.fashion_mnist_dir()
    out = []
    for split in ('train', 't10k'):
        X = _idx(_idx_file(directory, '%s-images-idx3-ubyte' % split), 3)
        y = _idx(_idx_file(directory, '%s-labels-idx1-ubyte' % split), 1).astype(np.int64)
        if X.shape[0] != y.shape[0]:
            raise ValueError('%s: %d %s images but %d labels'
                             % (directory, X.shape[0], split, y.shape[0]))
        out += [X[:, None, :, :], y]
    return tuple(out)
