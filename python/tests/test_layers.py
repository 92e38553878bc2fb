"""Every dasecv.course layer against the numpy references in conftest, in
float32 and float64; the generic ops on every backend built in."""
import numpy as np
import pytest

import dasecv
from dasecv.course import fast_layers, layer_utils, layers
from conftest import (BACKENDS, DTYPES, close, dropout_uniform, normalize,
                      normalize_backward, ref_conv, ref_conv_backward,
                      ref_groupnorm, ref_pool, ref_pool_backward,
                      ref_softmax_loss, ref_svm_loss)


def randn(rng, dtype, *shape):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_affine(rng, dtype):
    x, w, b = randn(rng, dtype, 4, 3, 2, 5), randn(rng, dtype, 30, 7), randn(rng, dtype, 7)
    out, cache = layers.affine_forward(x, w, b)
    assert out.dtype == dtype
    close(out, x.reshape(4, -1) @ w + b, dtype)
    dout = randn(rng, dtype, 4, 7)
    dx, dw, db = layers.affine_backward(dout, cache)
    assert dx.shape == x.shape
    close(dx, (dout @ w.T).reshape(x.shape), dtype)
    close(dw, x.reshape(4, -1).T @ dout, dtype)
    close(db, dout.sum(0), dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('shape', [(5,), (3, 4), (2, 3, 4, 5), (2, 1, 3, 2, 2)])
def test_relu(rng, dtype, shape):
    x = randn(rng, dtype, *shape)
    out, cache = layers.relu_forward(x)
    assert out.shape == x.shape
    close(out, np.maximum(x, 0), dtype)
    dout = randn(rng, dtype, *shape)
    close(layers.relu_backward(dout, cache), dout * (x > 0), dtype)


CONV_CASES = [((2, 3, 7, 7), (4, 3, 3, 3), 2, 1), ((2, 2, 5, 6), (3, 2, 2, 3), 1, 0),
              ((1, 5, 8, 8), (6, 5, 3, 3), 1, 1)]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('xs,ws,stride,pad', CONV_CASES)
@pytest.mark.parametrize('forward,backward', [
    (layers.conv_forward_naive, layers.conv_backward_naive),
    (fast_layers.conv_forward_fast, fast_layers.conv_backward_fast),
    (fast_layers.conv_forward_im2col, fast_layers.conv_backward_im2col),
    (fast_layers.conv_forward_strides, fast_layers.conv_backward_strides)])
def test_conv(rng, dtype, xs, ws, stride, pad, forward, backward):
    x, w, b = randn(rng, dtype, *xs), randn(rng, dtype, *ws), randn(rng, dtype, ws[0])
    conv_param = {'stride': stride, 'pad': pad}
    out, cache = forward(x, w, b, conv_param)
    close(out, ref_conv(x, w, b, stride, pad), dtype)
    dout = randn(rng, dtype, *out.shape)
    for got, want in zip(backward(dout, cache), ref_conv_backward(dout, x, w, stride, pad)):
        close(got, want, dtype)


POOL_CASES = [((2, 3, 8, 8), 2, 2, 2), ((2, 2, 7, 9), 3, 3, 2), ((1, 2, 5, 6), 2, 3, 1)]


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('xs,ph,pw,stride', POOL_CASES)
@pytest.mark.parametrize('forward,backward', [
    (layers.max_pool_forward_naive, layers.max_pool_backward_naive),
    (fast_layers.max_pool_forward_fast, fast_layers.max_pool_backward_fast),
    (fast_layers.max_pool_forward_reshape, fast_layers.max_pool_backward_reshape),
    (fast_layers.max_pool_forward_im2col, fast_layers.max_pool_backward_im2col)])
def test_max_pool(rng, dtype, xs, ph, pw, stride, forward, backward):
    x = randn(rng, dtype, *xs)
    pool_param = {'pool_height': ph, 'pool_width': pw, 'stride': stride}
    out, cache = forward(x, pool_param)
    close(out, ref_pool(x, ph, pw, stride), dtype)
    dout = randn(rng, dtype, *out.shape)
    close(backward(dout, cache), ref_pool_backward(dout, x, ph, pw, stride), dtype)


def bn_reference(x, gamma, beta, eps, dout):
    """Batch norm over axis 0 of (M, D) and its gradients."""
    xhat, var = normalize(x, 0, eps)
    dx = normalize_backward(dout * gamma, xhat, var, 0, eps)
    return gamma * xhat + beta, dx, (dout * xhat).sum(0), dout.sum(0)


@pytest.mark.parametrize('dtype', DTYPES)
def test_batchnorm(rng, dtype):
    N, D = 8, 5
    x = randn(rng, dtype, N, D) * 3 + 2
    gamma, beta, dout = randn(rng, dtype, D), randn(rng, dtype, D), randn(rng, dtype, N, D)
    bn_param = {'mode': 'train', 'momentum': 0.8}
    out, cache = layers.batchnorm_forward(x, gamma, beta, bn_param)
    want, dx, dgamma, dbeta = bn_reference(x, gamma, beta, 1e-5, dout)
    close(out, want, dtype)
    # running statistics: made as zeros, updated in place with the biased variance
    assert bn_param['running_mean'].dtype == dtype
    close(bn_param['running_mean'], 0.2 * x.mean(0), dtype)
    close(bn_param['running_var'], 0.2 * x.var(0), dtype)
    rm = bn_param['running_mean']
    layers.batchnorm_forward(x, gamma, beta, bn_param)
    assert bn_param['running_mean'] is rm
    close(rm, (0.8 * 0.2 + 0.2) * x.mean(0), dtype)
    for bwd in (layers.batchnorm_backward, layers.batchnorm_backward_alt):
        for got, exp in zip(bwd(dout, cache), (dx, dgamma, dbeta)):
            close(got, exp, dtype)
    bn_param['mode'] = 'test'
    out, _ = layers.batchnorm_forward(x, gamma, beta, bn_param)
    rv = bn_param['running_var']
    close(out, gamma * (x - rm) / np.sqrt(rv + 1e-5) + beta, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_spatial_batchnorm(rng, dtype):
    N, C, H, W = 3, 4, 5, 2
    x = randn(rng, dtype, N, C, H, W) + 1
    gamma, beta = randn(rng, dtype, C), randn(rng, dtype, C)
    dout = randn(rng, dtype, N, C, H, W)

    def to2d(a):
        return a.transpose(0, 2, 3, 1).reshape(-1, C)

    def from2d(a):
        return a.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    bn_param = {'mode': 'train'}
    out, cache = layers.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    want, dx, dgamma, dbeta = bn_reference(to2d(x), gamma, beta, 1e-5, to2d(dout))
    close(out, from2d(want), dtype)
    close(bn_param['running_mean'], 0.1 * to2d(x).mean(0), dtype)
    got = layers.spatial_batchnorm_backward(dout, cache)
    for g, e in zip(got, (from2d(dx), dgamma, dbeta)):
        close(g, e, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_layernorm(rng, dtype):
    N, D = 4, 7
    x = randn(rng, dtype, N, D) * 2 - 1
    gamma, beta, dout = randn(rng, dtype, D), randn(rng, dtype, D), randn(rng, dtype, N, D)
    out, cache = layers.layernorm_forward(x, gamma, beta, {'eps': 1e-4})
    xhat, var = normalize(x, 1, 1e-4)
    close(out, gamma * xhat + beta, dtype)
    dx, dgamma, dbeta = layers.layernorm_backward(dout, cache)
    close(dx, normalize_backward(dout * gamma, xhat, var, 1, 1e-4), dtype)
    close(dgamma, (dout * xhat).sum(0), dtype)
    close(dbeta, dout.sum(0), dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_spatial_groupnorm(rng, dtype):
    N, C, H, W, G = 2, 6, 3, 4, 3
    x = randn(rng, dtype, N, C, H, W)
    gamma, beta = randn(rng, dtype, 1, C, 1, 1), randn(rng, dtype, 1, C, 1, 1)
    dout = randn(rng, dtype, N, C, H, W)
    out, cache = layers.spatial_groupnorm_forward(x, gamma, beta, G, {})
    want, xhat, var = ref_groupnorm(x, gamma, beta, G, 1e-5)
    close(out, want, dtype)
    dx, dgamma, dbeta = layers.spatial_groupnorm_backward(dout, cache)
    dxhat = (dout * gamma).reshape(N, G, -1)
    close(dx, normalize_backward(dxhat, xhat, var, 2, 1e-5).reshape(x.shape), dtype)
    assert dgamma.shape == gamma.shape and dbeta.shape == beta.shape
    close(dgamma, (dout * xhat.reshape(x.shape)).sum(axis=(0, 2, 3), keepdims=True), dtype)
    close(dbeta, dout.sum(axis=(0, 2, 3), keepdims=True), dtype)


@pytest.mark.parametrize('dtype', DTYPES)
def test_dropout(rng, dtype):
    x = randn(rng, dtype, 50, 40) + 10
    p = 0.3
    dp = {'mode': 'train', 'p': p, 'seed': 123}
    out, cache = layers.dropout_forward(x, dp)
    keep = dropout_uniform(123, x.size).reshape(x.shape) < p
    close(out, np.where(keep, x / p, 0), dtype)
    assert abs(keep.mean() - p) < 0.05
    dout = randn(rng, dtype, 50, 40)
    close(layers.dropout_backward(dout, cache), np.where(keep, dout / p, 0), dtype)
    # the same seed gives the same mask; no seed draws one from np.random
    again, _ = layers.dropout_forward(x, dp)
    np.testing.assert_array_equal(out, again)
    np.random.seed(1)
    a, _ = layers.dropout_forward(x, {'mode': 'train', 'p': p})
    np.random.seed(1)
    b, _ = layers.dropout_forward(x, {'mode': 'train', 'p': p})
    c, _ = layers.dropout_forward(x, {'mode': 'train', 'p': p})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    test_dp = {'mode': 'test', 'p': p}
    out, cache = layers.dropout_forward(x, test_dp)
    close(out, x, dtype)
    close(layers.dropout_backward(dout, cache), dout, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('loss,ref', [(layers.softmax_loss, ref_softmax_loss),
                                      (layers.svm_loss, ref_svm_loss)])
@pytest.mark.parametrize('ydtype', [np.int64, np.int32, np.uint8])
def test_losses(rng, dtype, loss, ref, ydtype):
    x = randn(rng, dtype, 9, 6)
    y = rng.integers(0, 6, size=9).astype(ydtype)
    got_loss, got_dx = loss(x, y)
    want_loss, want_dx = ref(x.astype(np.float64), y)
    assert abs(got_loss - want_loss) <= TOL_LOSS[dtype] * max(1, abs(want_loss))
    close(got_dx, want_dx, dtype)


TOL_LOSS = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.mark.parametrize('dtype', DTYPES)
def test_sandwiches(rng, dtype):
    x, w, b = randn(rng, dtype, 3, 2, 8, 8), randn(rng, dtype, 4, 2, 3, 3), randn(rng, dtype, 4)
    cp, pp = {'stride': 1, 'pad': 1}, {'pool_height': 2, 'pool_width': 2, 'stride': 2}
    conv = ref_conv(x, w, b, 1, 1)
    relu = np.maximum(conv, 0)

    out, cache = layer_utils.conv_relu_pool_forward(x, w, b, cp, pp)
    close(out, ref_pool(relu, 2, 2, 2), dtype)
    dout = randn(rng, dtype, *out.shape)
    dconv = ref_pool_backward(dout, relu, 2, 2, 2) * (conv > 0)
    for g, e in zip(layer_utils.conv_relu_pool_backward(dout, cache),
                    ref_conv_backward(dconv, x, w, 1, 1)):
        close(g, e, dtype)

    out, cache = layer_utils.conv_relu_forward(x, w, b, cp)
    close(out, relu, dtype)
    dout = randn(rng, dtype, *out.shape)
    for g, e in zip(layer_utils.conv_relu_backward(dout, cache),
                    ref_conv_backward(dout * (conv > 0), x, w, 1, 1)):
        close(g, e, dtype)

    gamma, beta = randn(rng, dtype, 4), randn(rng, dtype, 4)
    bn_param = {'mode': 'train'}
    out, cache = layer_utils.conv_bn_relu_forward(x, w, b, gamma, beta, cp, bn_param)
    c2 = conv.transpose(0, 2, 3, 1).reshape(-1, 4)
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, 4)
    bn, _, _, _ = bn_reference(c2, gamma, beta, 1e-5, d2)
    bn4 = bn.reshape(3, 8, 8, 4).transpose(0, 3, 1, 2)
    close(out, np.maximum(bn4, 0), dtype)
    mask = (bn4 > 0).transpose(0, 2, 3, 1).reshape(-1, 4)
    _, dbn, dgamma, dbeta = bn_reference(c2, gamma, beta, 1e-5, d2 * mask)
    dx, dw, db = ref_conv_backward(dbn.reshape(3, 8, 8, 4).transpose(0, 3, 1, 2), x, w, 1, 1)
    for g, e in zip(layer_utils.conv_bn_relu_backward(dout, cache), (dx, dw, db, dgamma, dbeta)):
        close(g, e, dtype)

    xa, wa, ba = randn(rng, dtype, 5, 2, 3), randn(rng, dtype, 6, 4), randn(rng, dtype, 4)
    out, cache = layer_utils.affine_relu_forward(xa, wa, ba)
    a = xa.reshape(5, -1) @ wa + ba
    close(out, np.maximum(a, 0), dtype)
    dout = randn(rng, dtype, 5, 4)
    da = dout * (a > 0)
    for g, e in zip(layer_utils.affine_relu_backward(dout, cache),
                    ((da @ wa.T).reshape(xa.shape), xa.reshape(5, -1).T @ da, da.sum(0))):
        close(g, e, dtype)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('backend', BACKENDS)
def test_generic_ops_every_backend(rng, dtype, backend):
    """op_forward/op_backward on each backend against the references."""
    x, w, b = randn(rng, dtype, 2, 3, 6, 6), randn(rng, dtype, 4, 3, 3, 3), randn(rng, dtype, 4)
    out = dasecv.op_forward('conv', x, w, b, stride=1, pad=1, backend=backend)
    close(out, ref_conv(x, w, b, 1, 1), dtype)
    dout = randn(rng, dtype, *out.shape)
    for g, e in zip(dasecv.op_backward('conv', dout, x, w, b, stride=1, pad=1, backend=backend),
                    ref_conv_backward(dout, x, w, 1, 1)):
        close(g, e, dtype)
    out = dasecv.op_forward('max_pool', x, stride=2, backend=backend)
    close(out, ref_pool(x, 2, 2, 2), dtype)
    x2 = randn(rng, dtype, *x.shape)
    close(dasecv.op_forward('add', x, x2=x2, backend=backend), x + x2, dtype)
    dsum = randn(rng, dtype, *x.shape)
    dx, dx2 = dasecv.op_backward('add', dsum, x, x2=x2, backend=backend)
    close(dx, dsum, dtype)
    close(dx2, dsum, dtype)
    a, aw, ab = randn(rng, dtype, 5, 6), randn(rng, dtype, 6, 3), randn(rng, dtype, 3)
    close(dasecv.op_forward('affine', a, aw, ab, backend=backend), a @ aw + ab, dtype)
    close(dasecv.op_forward('relu', a, backend=backend), np.maximum(a, 0), dtype)
    g, bt = randn(rng, dtype, 6), randn(rng, dtype, 6)
    xhat, _ = normalize(a, 0, 1e-5)
    close(dasecv.op_forward('batchnorm', a, g, bt, backend=backend), g * xhat + bt, dtype)
    xhat, _ = normalize(a, 1, 1e-5)
    close(dasecv.op_forward('layernorm', a, g, bt, backend=backend), g * xhat + bt, dtype)


def test_backward_gradients_not_wanted(rng):
    x, w, b = randn(rng, np.float64, 2, 3, 5, 5), randn(rng, np.float64, 2, 3, 3, 3), np.zeros(2)
    dout = randn(rng, np.float64, 2, 2, 3, 3)
    dx, dw, db = dasecv.op_backward('conv', dout, x, w, b, want_dx=False)
    assert dx is None and dw.shape == w.shape and db.shape == b.shape
    loss, dx = dasecv.op_forward('softmax_loss', randn(rng, np.float64, 3, 4),
                                 y=np.array([0, 1, 3]), want_dx=False)
    assert dx is None and loss > 0
