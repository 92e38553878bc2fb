"""Shared pieces of the binding's tests: numpy references written here, the
relative error the course's notebooks print, and the dtype/backend grids."""
import numpy as np
import pytest

import dasecv

DTYPES = [np.float32, np.float64]
BACKENDS = [b for b in ('naive', 'fast', 'onednn', 'auto')
            if dasecv.backend_available(b)]
# Forward/backward agreement with the numpy references: float32 accumulates
# in a different order per backend (blocked sums, oneDNN's own kernels).
TOL = {np.float32: 2e-4, np.float64: 1e-10}


def rel_error(x, y):
    """max |x - y| / max(1e-8, |x| + |y|), as the course's notebooks print."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def close(actual, expected, dtype):
    """Agreement scaled to the size of the values (absolute near zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    err = float(np.max(np.abs(actual - expected))) / scale if expected.size else 0.0
    assert err <= TOL[dtype], "error %g above %g" % (err, TOL[dtype])


@pytest.fixture
def rng():
    return np.random.default_rng(231)


# ---- numpy references --------------------------------------------------------

def ref_conv(x, w, b, stride, pad):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho, Wo = (H + 2 * pad - HH) // stride + 1, (W + 2 * pad - WW) // stride + 1
    out = np.empty((N, F, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            win = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def ref_conv_backward(dout, x, w, stride, pad):
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            sl = (slice(None), slice(None), slice(i * stride, i * stride + HH),
                  slice(j * stride, j * stride + WW))
            g = dout[:, :, i, j]                                # (N, F)
            dw += np.tensordot(g, xp[sl], axes=([0], [0]))      # (F, C, HH, WW)
            dxp[sl] += np.tensordot(g, w, axes=([1], [0]))      # (N, C, HH, WW)
    return dxp[:, :, pad:pad + H, pad:pad + W], dw, dout.sum(axis=(0, 2, 3))


def ref_pool(x, ph, pw, stride):
    N, C, H, W = x.shape
    Ho, Wo = (H - ph) // stride + 1, (W - pw) // stride + 1
    out = np.empty((N, C, Ho, Wo), dtype=x.dtype)
    for i in range(Ho):
        for j in range(Wo):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + ph,
                                j * stride:j * stride + pw].max(axis=(2, 3))
    return out


def ref_pool_backward(dout, x, ph, pw, stride):
    N, C = x.shape[:2]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            win = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw]
            k = win.reshape(N, C, -1).argmax(axis=2)            # first maximum
            n, c = np.meshgrid(np.arange(N), np.arange(C), indexing='ij')
            dx[n, c, i * stride + k // pw, j * stride + k % pw] += dout[:, :, i, j]
    return dx


def normalize(x, axis, eps):
    """(x - mean) / sqrt(var + eps) along axis (biased variance)."""
    mu = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, keepdims=True)
    return (x - mu) / np.sqrt(var + eps), var


def normalize_backward(dxhat, xhat, var, axis, eps):
    """Gradient through normalize, given d(xhat)."""
    n = np.prod([xhat.shape[a] for a in np.atleast_1d(axis)])
    return (n * dxhat - dxhat.sum(axis=axis, keepdims=True)
            - xhat * (dxhat * xhat).sum(axis=axis, keepdims=True)) / (n * np.sqrt(var + eps))


def ref_groupnorm(x, gamma, beta, G, eps):
    N, C, H, W = x.shape
    xg = x.reshape(N, G, -1)
    xhat, var = normalize(xg, 2, eps)
    g = np.reshape(gamma, (1, C, 1, 1))
    return g * xhat.reshape(x.shape) + np.reshape(beta, (1, C, 1, 1)), xhat, var


def dropout_uniform(seed, n):
    """The engine's dropout stream (splitmix64 of seed and index) in numpy."""
    with np.errstate(over='ignore'):
        z = np.uint64(seed) + (np.arange(n, dtype=np.uint64) + np.uint64(1)) \
            * np.uint64(0x9e3779b97f4a7c15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def ref_softmax_loss(x, y):
    s = x - x.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    N = x.shape[0]
    dx = np.exp(logp)
    dx[np.arange(N), y] -= 1
    return -logp[np.arange(N), y].mean(), dx / N


def ref_svm_loss(x, y):
    N = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(N), y][:, None] + 1)
    margins[np.arange(N), y] = 0
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(N), y] -= dx.sum(axis=1)
    return margins.sum() / N, dx / N
