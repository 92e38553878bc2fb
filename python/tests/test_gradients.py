"""Backward of every course layer against dasecv.course.gradient_check's
finite differences, in float64, at the error levels the course's notebooks
expect (rel_error as they print it)."""
import numpy as np
import pytest

from dasecv.course import fast_layers, gradient_check as gc, layer_utils, layers
from conftest import rel_error

num = gc.eval_numerical_gradient_array
BACKENDS = ['naive', 'auto']


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize('backend', BACKENDS)
def test_affine(rng, backend):
    x, w, b = rng.standard_normal((4, 2, 3)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    _, cache = layers.affine_forward(x, w, b, backend=backend)
    dx, dw, db = layers.affine_backward(dout, cache, backend=backend)

    def f(_):
        return layers.affine_forward(x, w, b, backend=backend)[0]
    assert rel_error(dx, num(f, x, dout)) <= 1e-8
    assert rel_error(dw, num(f, w, dout)) <= 1e-8
    assert rel_error(db, num(f, b, dout)) <= 1e-8


@pytest.mark.parametrize('backend', BACKENDS)
def test_relu(rng, backend):
    x = rng.standard_normal((5, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    dout = rng.standard_normal((5, 6))
    _, cache = layers.relu_forward(x, backend=backend)
    dx = layers.relu_backward(dout, cache, backend=backend)
    assert rel_error(dx, num(lambda _: layers.relu_forward(x, backend=backend)[0], x, dout)) <= 1e-8


@pytest.mark.parametrize('forward,backward', [
    (layers.conv_forward_naive, layers.conv_backward_naive),
    (fast_layers.conv_forward_fast, fast_layers.conv_backward_fast)])
def test_conv(rng, forward, backward):
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    cp = {'stride': 2, 'pad': 1}
    out, cache = forward(x, w, b, cp)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = backward(dout, cache)

    def f(_):
        return forward(x, w, b, cp)[0]
    assert rel_error(dx, num(f, x, dout)) <= 1e-8
    assert rel_error(dw, num(f, w, dout)) <= 1e-8
    assert rel_error(db, num(f, b, dout)) <= 1e-8


@pytest.mark.parametrize('forward,backward', [
    (layers.max_pool_forward_naive, layers.max_pool_backward_naive),
    (fast_layers.max_pool_forward_fast, fast_layers.max_pool_backward_fast)])
def test_max_pool(rng, forward, backward):
    x = rng.standard_normal((2, 2, 6, 6))
    pp = {'pool_height': 2, 'pool_width': 2, 'stride': 2}
    out, cache = forward(x, pp)
    dout = rng.standard_normal(out.shape)
    dx = backward(dout, cache)
    assert rel_error(dx, num(lambda _: forward(x, pp)[0], x, dout)) <= 1e-8


def norm_case(rng, forward, backward, shape, gshape, param, extra=()):
    x = 4 * rng.standard_normal(shape) + 3
    gamma, beta = rng.standard_normal(gshape), rng.standard_normal(gshape)
    dout = rng.standard_normal(shape)

    def f(_):
        return forward(x, gamma, beta, *extra, dict(param))[0]
    _, cache = forward(x, gamma, beta, *extra, dict(param))
    dx, dgamma, dbeta = backward(dout, cache)
    # dx through the normalisation: finite differences of a sum of
    # cancelling terms, the course's notebooks print about 1e-7 to 1e-9
    assert rel_error(dx, num(f, x, dout)) <= 5e-7
    assert rel_error(dgamma, num(f, gamma, dout)) <= 1e-8
    assert rel_error(dbeta, num(f, beta, dout)) <= 1e-8


def test_batchnorm(rng):
    norm_case(rng, layers.batchnorm_forward, layers.batchnorm_backward, (6, 5), (5,),
              {'mode': 'train'})
    norm_case(rng, layers.batchnorm_forward, layers.batchnorm_backward_alt, (6, 5), (5,),
              {'mode': 'train'})


def test_spatial_batchnorm(rng):
    norm_case(rng, layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward,
              (2, 3, 4, 5), (3,), {'mode': 'train'})


def test_layernorm(rng):
    norm_case(rng, layers.layernorm_forward, layers.layernorm_backward, (4, 5), (5,), {})


def test_spatial_groupnorm(rng):
    norm_case(rng, layers.spatial_groupnorm_forward, layers.spatial_groupnorm_backward,
              (2, 6, 4, 5), (1, 6, 1, 1), {}, extra=(2,))


def test_dropout(rng):
    x = rng.standard_normal((10, 10)) + 10
    dout = rng.standard_normal((10, 10))
    dp = {'mode': 'train', 'p': 0.2, 'seed': 123}
    _, cache = layers.dropout_forward(x, dp)
    dx = layers.dropout_backward(dout, cache)
    assert rel_error(dx, num(lambda _: layers.dropout_forward(x, dp)[0], x, dout)) <= 1e-10


@pytest.mark.parametrize('loss,level', [(layers.softmax_loss, 1e-7), (layers.svm_loss, 1e-8)])
def test_losses(rng, loss, level):
    x = 0.001 * rng.standard_normal((50, 10))
    y = rng.integers(10, size=50)
    _, dx = loss(x, y)
    dnum = gc.eval_numerical_gradient(lambda _: loss(x, y)[0], x, verbose=False)
    assert rel_error(dx, dnum) <= level


def test_sandwiches(rng):
    x, w, b = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    cp, pp = {'stride': 1, 'pad': 1}, {'pool_height': 2, 'pool_width': 2, 'stride': 2}
    out, cache = layer_utils.conv_relu_pool_forward(x, w, b, cp, pp)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = layer_utils.conv_relu_pool_backward(dout, cache)

    def f(_):
        return layer_utils.conv_relu_pool_forward(x, w, b, cp, pp)[0]
    assert rel_error(dx, num(f, x, dout)) <= 1e-7
    assert rel_error(dw, num(f, w, dout)) <= 1e-7
    assert rel_error(db, num(f, b, dout)) <= 1e-7

    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    bn = {'mode': 'train'}
    out, cache = layer_utils.conv_bn_relu_forward(x, w, b, gamma, beta, cp, bn)
    dout = rng.standard_normal(out.shape)
    grads = list(layer_utils.conv_bn_relu_backward(dout, cache))

    def g(_):
        return layer_utils.conv_bn_relu_forward(x, w, b, gamma, beta, cp, dict(bn))[0]
    for got, arr in zip(grads[:2] + grads[3:], (x, w, gamma, beta)):
        assert rel_error(got, num(g, arr, dout)) <= 1e-6
    # the conv bias cancels in the batch norm: db is zero up to rounding
    assert np.max(np.abs(grads[2])) <= 1e-9
    assert np.max(np.abs(num(g, b, dout))) <= 1e-8

    xa, wa, ba = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    out, cache = layer_utils.affine_relu_forward(xa, wa, ba)
    dout = rng.standard_normal(out.shape)
    dxa, dwa, dba = layer_utils.affine_relu_backward(dout, cache)

    def h(_):
        return layer_utils.affine_relu_forward(xa, wa, ba)[0]
    assert rel_error(dxa, num(h, xa, dout)) <= 1e-8
    assert rel_error(dwa, num(h, wa, dout)) <= 1e-8


def test_gradient_check_functions(rng, capsys):
    """The checker itself: exact on a quadratic, and it notices a wrong gradient."""
    x = rng.standard_normal((3, 4))
    assert rel_error(gc.eval_numerical_gradient(lambda a: np.sum(a ** 2), x, verbose=False),
                     2 * x) <= 1e-8
    errs = gc.grad_check_sparse(lambda a: np.sum(a ** 2), x, 2 * x, num_checks=5)
    assert len(errs) == 5 and max(errs) <= 1e-8
    errs = gc.grad_check_sparse(lambda a: np.sum(a ** 2), x, 2.1 * x, num_checks=5)
    assert min(errs) > 1e-3
    assert 'relative error' in capsys.readouterr().out
    df = rng.standard_normal((3, 4))
    assert rel_error(num(lambda a: a ** 2, x, df), 2 * x * df) <= 1e-8


def test_numerical_gradient_blobs(rng):
    class Blob:
        def __init__(self, vals):
            self.vals, self.diffs = vals, np.zeros_like(vals)

    a, out = Blob(rng.standard_normal((2, 3))), Blob(np.zeros((2, 3)))
    out.diffs = rng.standard_normal((2, 3))

    def f(inp, o):
        o.vals[...] = inp.vals * 3
    (ga,) = gc.eval_numerical_gradient_blobs(f, (a,), out)
    assert rel_error(ga, 3 * out.diffs) <= 1e-8
