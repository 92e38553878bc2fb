"""Datasets from small files made here, the course's get_CIFAR10_data, and
the pictures (training curves, first-layer filters)."""
import gzip
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import dasecv
from dasecv.course import data_utils
from dasecv.course.vis_utils import visualize_grid


def cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(10, size=n).astype(np.uint8)
    X = rng.integers(256, size=(n, 3072)).astype(np.uint8)
    return X, y


def write_cifar(d, layout, n_per=30, batches=5, n_test=20):
    os.makedirs(d, exist_ok=True)
    all_X, all_y = [], []
    for b in range(batches + 1):
        X, y = cifar_records(n_test if b == batches else n_per, b)
        name = 'test_batch' if b == batches else 'data_batch_%d' % (b + 1)
        if layout == 'bin':
            rec = np.concatenate([y[:, None], X], axis=1)
            rec.tofile(os.path.join(d, name + '.bin'))
        else:
            with open(os.path.join(d, name), 'wb') as f:
                pickle.dump({'data': X, 'labels': [int(v) for v in y]}, f)
        all_X.append(X.reshape(-1, 3, 32, 32))
        all_y.append(y.astype(np.int64))
    return (np.concatenate(all_X[:-1]), np.concatenate(all_y[:-1]), all_X[-1], all_y[-1])


@pytest.mark.parametrize('layout', ['bin', 'py'])
def test_load_cifar10(tmp_path, layout):
    want = write_cifar(str(tmp_path), layout)
    got = dasecv.load_cifar10(str(tmp_path))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert got[0].shape == (150, 3, 32, 32)


def test_cifar10_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no CIFAR-10 batches'):
        dasecv.load_cifar10(str(tmp_path))
    write_cifar(str(tmp_path), 'bin')
    with open(tmp_path / 'data_batch_2.bin', 'ab') as f:
        f.write(b'\0' * 10)
    with pytest.raises(ValueError, match='data_batch_2.bin'):
        dasecv.load_cifar10(str(tmp_path))


def test_get_cifar10_data(tmp_path, monkeypatch):
    Xtr, ytr, Xte, yte = write_cifar(str(tmp_path), 'bin')
    monkeypatch.setenv('DASECV_CIFAR10_DIR', str(tmp_path))
    d = data_utils.get_CIFAR10_data(num_training=100, num_validation=30, num_test=10)
    assert d['X_train'].shape == (100, 3, 32, 32) and d['X_train'].dtype == np.float64
    assert d['X_val'].shape == (30, 3, 32, 32) and d['X_test'].shape == (10, 3, 32, 32)
    mean = Xtr[:100].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(d['X_train'], Xtr[:100] - mean)
    np.testing.assert_allclose(d['X_val'], Xtr[100:130] - mean)
    np.testing.assert_allclose(d['X_test'], Xte[:10] - mean)
    np.testing.assert_array_equal(d['y_val'], ytr[100:130])
    assert abs(d['X_train'].mean()) < 1e-9
    Xc, yc, _, _ = data_utils.load_CIFAR10(str(tmp_path))
    assert Xc.shape == (150, 32, 32, 3)
    np.testing.assert_array_equal(Xc[3], Xtr[3].transpose(1, 2, 0))
    with pytest.raises(ValueError, match='asked'):
        data_utils.get_CIFAR10_data(num_training=200)
    monkeypatch.delenv('DASECV_CIFAR10_DIR')
    with pytest.raises(FileNotFoundError, match='DASECV_CIFAR10_DIR'):
        data_utils.get_CIFAR10_data()


def write_idx(path, arr):
    head = b'\0\0\x08' + bytes([arr.ndim]) + b''.join(struct.pack('>I', s)
                                                      for s in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith('.gz') else open)(path, 'wb') as f:
        f.write(data)


def test_load_fashion_mnist(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    Xtr = rng.integers(256, size=(12, 28, 28))
    ytr = rng.integers(10, size=12)
    Xte = rng.integers(256, size=(5, 28, 28))
    yte = rng.integers(10, size=5)
    write_idx(str(tmp_path / 'train-images-idx3-ubyte.gz'), Xtr)
    write_idx(str(tmp_path / 'train-labels-idx1-ubyte.gz'), ytr)
    write_idx(str(tmp_path / 't10k-images-idx3-ubyte'), Xte)
    write_idx(str(tmp_path / 't10k-labels-idx1-ubyte'), yte)
    monkeypatch.setenv('DASECV_FASHION_MNIST_DIR', str(tmp_path))
    X, y, Xt, yt = dasecv.load_fashion_mnist()
    assert X.shape == (12, 1, 28, 28) and X.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(X[:, 0], Xtr)
    np.testing.assert_array_equal(yt, yte)
    with open(tmp_path / 't10k-labels-idx1-ubyte', 'ab') as f:
        f.write(b'\0')
    with pytest.raises(ValueError, match='t10k-labels'):
        dasecv.load_fashion_mnist(str(tmp_path))
    os.remove(tmp_path / 't10k-labels-idx1-ubyte')
    with pytest.raises(FileNotFoundError, match='t10k-labels'):
        dasecv.load_fashion_mnist(str(tmp_path))


def test_visualize_grid():
    Xs = np.arange(5 * 2 * 3 * 1, dtype=np.float64).reshape(5, 2, 3, 1)
    Xs[4] = 7  # a constant tile
    g = visualize_grid(Xs, ubound=255.0, padding=1)
    assert g.shape == (2 * 3 + 2, 3 * 3 + 2, 1)
    assert g[0:2, 0:3].min() == 0 and g[0:2, 0:3].max() == 255
    assert np.all(g[2, :] == 0) and np.all(g[:, 3] == 0)      # padding
    np.testing.assert_array_equal(g[3:5, 4:7], 0)               # constant tile
    np.testing.assert_allclose(g[3:5, 0:3, 0], 255 * np.arange(6).reshape(2, 3) / 5)


def png_info(path):
    """(width, height) from a PNG's header; fails on anything else."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    assert head[12:16] == b'IHDR'
    return struct.unpack('>II', head[16:24])


def assert_not_blank(path):
    import matplotlib.image
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and float(img[:, :, :3].std()) > 0.01, 'the picture is blank'


def run_module(*args):
    env = dict(os.environ, MPLBACKEND='Agg', MPLCONFIGDIR=os.environ.get('TMPDIR', '/tmp'))
    return subprocess.run([sys.executable, '-m'] + list(args), capture_output=True,
                          text=True, env=env, timeout=300)


def test_plot_training_curves(tmp_path):
    pytest.importorskip('matplotlib')
    log = tmp_path / 'run.csv'
    rows = ['iteration,epoch,loss,lr,train_acc,val_acc,images_per_s']
    for it in range(1, 41):
        ep = (it - 1) // 10 + 1
        end = it % 10 == 0
        acc = ',%.3f,%.3f' % (0.2 + 0.1 * ep, 0.15 + 0.1 * ep) if end else ',,'
        rows.append('%d,%d,%.4f,0.001%s,1500' % (it, ep, 2.3 / it ** 0.3, acc))
    log.write_text('\n'.join(rows) + '\n')
    out = tmp_path / 'curves.png'
    r = run_module('dasecv.plot', str(log), '-o', str(out))
    assert r.returncode == 0, r.stderr
    w, h = png_info(out)
    assert (w, h) == (1000, 800)
    assert_not_blank(str(out))
    bad = tmp_path / 'bad.csv'
    bad.write_text('a,b\n1,2\n')
    r = run_module('dasecv.plot', str(bad), '-o', str(tmp_path / 'x.png'))
    assert r.returncode == 1 and 'not a dasecv train log' in r.stderr
    r = run_module('dasecv.plot', str(tmp_path / 'missing.csv'))
    assert r.returncode == 1 and 'missing.csv' in r.stderr


def test_filters_picture(tmp_path):
    pytest.importorskip('matplotlib')
    from test_solver import small_cnn, toy_data
    data = toy_data()
    s = dasecv.Solver(small_cnn(), data, update_rule='adam', batch_size=50, num_epochs=1,
                      verbose=False)
    s.train()
    ckpt = tmp_path / 'run.ckpt'
    s.save(str(ckpt))
    out = tmp_path / 'filters.png'
    r = run_module('dasecv.filters', str(ckpt), '-o', str(out))
    assert r.returncode == 0, r.stderr
    w, h = png_info(out)
    # 4 filters of 3x3: a 2x2 grid with 1 pixel of padding, 8 pixels per pixel
    assert (w, h) == (7 * 8, 7 * 8)
    assert_not_blank(str(out))
    r = run_module('dasecv.filters', str(tmp_path / 'curves.csv'), '-o', str(out))
    assert r.returncode == 1 and 'not a dasecv checkpoint' in r.stderr
