"""dasecv.Model and the course's classifiers: gradient checks through the
course's gradient_check in float64, parameter views, bad inputs, memory."""
import gc
import os

import numpy as np
import pytest

import dasecv
from dasecv.course.classifiers import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet
from dasecv.course.gradient_check import eval_numerical_gradient, rel_error


def grad_errors(model, X, y, h=1e-6):
    """name -> the course's rel_error of the numerical against the analytic
    gradient, the numerical one perturbing model.params[name] in place."""
    loss, grads = model.loss(X, y)
    f = lambda _: model.loss(X, y)[0]
    return {n: rel_error(eval_numerical_gradient(f, model.params[n], verbose=False, h=h),
                         grads[n]) for n in model.params}


def test_threelayer_gradcheck():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 3, 16, 16))
    y = np.array([1, 7])
    model = ThreeLayerConvNet(input_dim=(3, 16, 16), num_filters=3, filter_size=3,
                              hidden_dim=7, weight_scale=0.1, reg=0.1,
                              dtype=np.float64, seed=3)
    assert sorted(model.params) == ['W1', 'W2', 'W3', 'b1', 'b2', 'b3']
    assert model.params['W1'].shape == (3, 3, 3, 3)
    assert model.params['W2'].shape == (3 * 8 * 8, 7)
    errs = grad_errors(model, X, y)
    assert max(errs.values()) < 1e-5, errs


@pytest.mark.parametrize('norm', [None, 'batchnorm', 'layernorm'])
@pytest.mark.parametrize('dropout', [1, 0.75])
def test_fc_gradcheck(norm, dropout):
    rng = np.random.default_rng(231)
    N, D, H1, H2, C = 4, 15, 20, 30, 10
    X = rng.standard_normal((N, D))
    y = rng.integers(C, size=N)
    model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, normalization=norm,
                              dropout=dropout, reg=0.1, weight_scale=5e-2,
                              dtype=np.float64, seed=123)
    names = {'W1', 'b1', 'W2', 'b2', 'W3', 'b3'}
    if norm:
        names |= {'gamma1', 'beta1', 'gamma2', 'beta2'}
    assert set(model.params) == names
    errs = grad_errors(model, X, y, h=1e-5)
    assert max(errs.values()) < 1e-5, errs


def test_fc_dropout_masks():
    X = np.random.default_rng(0).standard_normal((8, 12))
    y = np.arange(8) % 10
    # a seed: the same masks at every call; none: new masks per step
    fixed = FullyConnectedNet([40], input_dim=12, dropout=0.5, dtype=np.float64, seed=5)
    assert fixed.loss(X, y)[0] == fixed.loss(X, y)[0]
    free = FullyConnectedNet([40], input_dim=12, dropout=0.5, dtype=np.float64)
    assert free.loss(X, y)[0] != free.loss(X, y)[0]
    # test mode has no dropout
    np.testing.assert_array_equal(free.loss(X), free.loss(X))


def test_twolayer_course_check():
    """The course's TwoLayerNet check: fixed weights give fixed scores."""
    N, D, H, C = 3, 5, 50, 7
    X = np.random.default_rng(0).standard_normal((N, D))
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3)
    assert model.params['W1'].dtype == np.float64
    assert np.all(model.params['b1'] == 0)
    assert 1e-4 < model.params['W1'].std() < 2e-3
    model.params['W1'] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params['b1'] = np.linspace(-0.1, 0.9, num=H)
    model.params['W2'] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params['b2'] = np.linspace(-0.9, 0.1, num=C)
    Xl = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    W1, b1, W2, b2 = (model.params[k] for k in ('W1', 'b1', 'W2', 'b2'))
    want = np.maximum(Xl @ W1 + b1, 0) @ W2 + b2
    assert rel_error(model.loss(Xl), want) < 1e-10
    y = np.array([0, 5, 1])
    model.reg = 1.0
    loss, _ = model.loss(Xl, y)
    s = want - want.max(axis=1, keepdims=True)
    data_loss = -np.mean(s[np.arange(N), y] - np.log(np.exp(s).sum(axis=1)))
    assert abs(loss - data_loss - 0.5 * ((W1**2).sum() + (W2**2).sum())) < 1e-10


def test_params_are_views():
    model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=2, filter_size=3,
                              hidden_dim=5, dtype=np.float64, seed=1)
    X = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    base = model.loss(X)
    w3 = model.params['W3']
    w3 *= 0                          # in place: the engine sees it
    model.params['b3'][:] = np.arange(10)
    np.testing.assert_array_equal(model.loss(X), np.tile(np.arange(10.0), (3, 1)))
    model.params['b3'] = np.zeros(10)  # assignment copies into the view
    assert w3 is model.params['W3'] or np.shares_memory(w3, model.params['W3'])
    em = model.engine_model
    assert np.shares_memory(em.params['affine3.b'], model.params['b3'])
    np.testing.assert_array_equal(model.loss(X), 0 * base)
    # views keep the model alive
    w1 = model.params['W1']
    del model, em
    gc.collect()
    assert np.isfinite(w1.sum()) and w1.base is not None
    # gradients are copies
    m = dasecv.Model.from_config('threelayer', input_dim=(3, 8, 8), num_filters=2,
                                 filter_size=3, hidden_dim=5, seed=2)
    y = np.arange(3)
    _, g1 = m.loss(X, y)
    _, g2 = m.loss(2 * X, y)
    assert not np.shares_memory(g1['conv1.w'], g2['conv1.w'])
    assert not np.array_equal(g1['conv1.w'], g2['conv1.w'])


def test_model_sources(tmp_path):
    text = """[net]
channels=1
height=6
width=6
classes=3
dtype=float64
[conv]
name=c1
filters=2
size=3
[relu]
[affine]
outputs=classes
[softmax_loss]
"""
    m = dasecv.Model.from_text(text)
    assert m.dtype == np.float64 and m.input_dim == (1, 6, 6) and m.num_classes == 3
    assert list(m.params) == ['c1.w', 'c1.b', 'affine3.w', 'affine3.b']
    p = tmp_path / 'net.cfg'
    p.write_text(text)
    m2 = dasecv.Model(str(p), seed=0)
    m3 = dasecv.Model.from_text(text, seed=0)
    np.testing.assert_array_equal(m2.params['c1.w'], m3.params['c1.w'])
    m4 = dasecv.Model('lenet', input_dim=(1, 28, 28), num_classes=10, dtype=np.float32)
    assert m4.dtype == np.float32 and 'lenet' in dasecv.builtin_models()
    m4.set_exec(backend='naive', schedule='layer', threads=1)
    assert (m4.backend, m4.schedule, m4.threads) == ('naive', 'layer', 1)
    assert m4.loss(np.zeros((2, 1, 28, 28), np.uint8)).shape == (2, 10)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match='nosuch'):
        dasecv.Model('nosuch-model')
    with pytest.raises(ValueError, match='filters'):
        dasecv.Model.from_text('[net]\nclasses=2\n[conv]\nsize=3\n[softmax_loss]\n',
                               input_dim=(1, 4, 4))
    with pytest.raises(TypeError, match='dtype'):
        dasecv.Model('threelayer', dtype=np.int32)
    with pytest.raises(ValueError, match='normalization'):
        FullyConnectedNet([5], normalization='groupnorm')
    with pytest.raises(ValueError, match='dropout'):
        FullyConnectedNet([5], dropout=0)
    m = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=2, filter_size=3, hidden_dim=4)
    with pytest.raises(ValueError, match='shape'):
        m.loss(np.zeros((2, 3, 9, 9)))
    with pytest.raises(ValueError, match='outside'):
        m.loss(np.zeros((2, 3, 8, 8)), np.array([0, 10]))
    with pytest.raises(ValueError, match='entries'):
        m.loss(np.zeros((2, 3, 8, 8)), np.array([0, 1, 2]))
    with pytest.raises(TypeError):
        m.loss(np.zeros((2, 3, 8, 8)), np.array([0.5, 1.0]))
    with pytest.raises(TypeError):
        m.loss(np.array([['a']]))
    with pytest.raises(ValueError, match='reg'):
        m.reg = -1
    with pytest.raises(ValueError, match='shape'):
        m.params['W1'] = np.zeros(3)
    with pytest.raises(KeyError):
        m.params['W9'] = np.zeros(3)
    with pytest.raises(ValueError):
        m.engine_model.set_exec(backend='gpu')
    bad = tmp_path / 'bad.ckpt'
    bad.write_bytes(b'DSVCKPT\x1a' + b'\0' * 40)
    with pytest.raises(Exception, match='bad.ckpt'):
        dasecv.Model(str(bad))


def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


# AddressSanitizer keeps freed memory in its quarantine, so RSS grows there
# without a leak; its own leak checks cover that build.
@pytest.mark.skipif('asan' in os.environ.get('LD_PRELOAD', ''),
                    reason='RSS is not flat under AddressSanitizer')
@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='needs /proc')
def test_rss_flat_over_many_calls():
    m = FullyConnectedNet([64, 64], input_dim=48, normalization='batchnorm',
                          dropout=0.9, dtype=np.float32)
    # 256 rows: an array leaked per call (even the int32 copy of the labels)
    # would add at least 1 KiB per call
    X = np.random.default_rng(0).standard_normal((256, 48)).astype(np.float32)
    y = np.arange(256) % 10
    for _ in range(200):             # warm up: allocator pools, plans
        m.loss(X, y)
        m.loss(X)
    before = rss_kib()
    for _ in range(3000):
        loss, grads = m.loss(X, y)
        m.loss(X)
        m.params['W1']
    grown = rss_kib() - before
    assert grown < 2048, 'RSS grew by %d KiB over 3000 calls' % grown
