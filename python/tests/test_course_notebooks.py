"""What the course's notebooks expect of dasecv.course beyond each layer's
numbers: the names a star import brings, weights drawn from np.random as the
course draws them, and CIFAR-shaped images fed to a fully-connected net."""
import numpy as np
import pytest

from dasecv.course.classifiers import FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet
from dasecv.course.solver import Solver


def star(module):
    ns = {}
    exec('from %s import *' % module, ns)
    return ns


def test_star_imports_bring_the_layers():
    # FullyConnectedNets, BatchNormalization and Dropout reach every layer
    # through `from ...classifiers.fc_net import *`, as the course's fc_net
    # imports layers and layer_utils with a star.
    fc = star('dasecv.course.classifiers.fc_net')
    for name in ('affine_forward', 'affine_backward', 'relu_forward', 'relu_backward',
                 'svm_loss', 'softmax_loss', 'batchnorm_forward', 'batchnorm_backward',
                 'batchnorm_backward_alt', 'layernorm_forward', 'layernorm_backward',
                 'dropout_forward', 'dropout_backward', 'affine_relu_forward',
                 'affine_relu_backward', 'TwoLayerNet', 'FullyConnectedNet'):
        assert name in fc, name
    cnn = star('dasecv.course.classifiers.cnn')
    for name in ('ThreeLayerConvNet', 'conv_forward_naive', 'conv_forward_fast',
                 'max_pool_forward_fast', 'conv_relu_pool_forward', 'softmax_loss'):
        assert name in cnn, name
    # and what they bring computes: affine of a (N, 2, 3) input
    x = np.arange(12.0).reshape(2, 2, 3)
    w = np.linspace(-1, 1, 18).reshape(6, 3)
    out, _ = fc['affine_forward'](x, w, np.ones(3))
    np.testing.assert_allclose(out, x.reshape(2, 6) @ w + 1, rtol=1e-12)


def test_weights_drawn_from_np_random():
    # The course's classifiers draw weight_scale * randn in layer order with
    # zero biases and unit gammas: np.random.seed(s) gives the course's weights.
    np.random.seed(231)
    m = TwoLayerNet(input_dim=5, hidden_dim=50, num_classes=7, weight_scale=1e-3)
    np.random.seed(231)
    W1 = 1e-3 * np.random.randn(5, 50)
    W2 = 1e-3 * np.random.randn(50, 7)
    np.testing.assert_array_equal(m.params['W1'], W1)
    np.testing.assert_array_equal(m.params['W2'], W2)
    assert not m.params['b1'].any() and not m.params['b2'].any()

    np.random.seed(7)
    f = FullyConnectedNet([6, 4], input_dim=5, num_classes=3, weight_scale=0.1,
                          normalization='batchnorm', dtype=np.float64)
    np.random.seed(7)
    for k, shape in (('W1', (5, 6)), ('W2', (6, 4)), ('W3', (4, 3))):
        np.testing.assert_array_equal(f.params[k], 0.1 * np.random.randn(*shape))
    np.testing.assert_array_equal(f.params['gamma2'], np.ones(4))

    np.random.seed(3)
    c = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=2, filter_size=3,
                          hidden_dim=5, weight_scale=1e-2, dtype=np.float64)
    np.random.seed(3)
    for k, shape in (('W1', (2, 3, 3, 3)), ('W2', (2 * 4 * 4, 5)), ('W3', (5, 10))):
        np.testing.assert_array_equal(c.params[k], 1e-2 * np.random.randn(*shape))
    # float32 models hold the same draws rounded
    np.random.seed(3)
    c32 = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=2, filter_size=3,
                            hidden_dim=5, weight_scale=1e-2)
    np.testing.assert_array_equal(c32.params['W1'], c.params['W1'].astype(np.float32))


def test_solver_feeds_images_to_a_flat_net():
    # FullyConnectedNets trains a net of input_dim 3072 on X_train (N, 3, 32,
    # 32): every row is flattened, as the course's affine_forward does.
    rng = np.random.default_rng(0)
    pat = rng.standard_normal((4, 3, 4, 4))
    y = rng.integers(4, size=240)
    X = 0.5 * rng.standard_normal((240, 3, 4, 4)) + 2 * pat[y]
    data = {'X_train': X[:200], 'y_train': y[:200], 'X_val': X[200:], 'y_val': y[200:]}
    model = FullyConnectedNet([30], input_dim=3 * 4 * 4, num_classes=4, seed=0)
    s = Solver(model, data, update_rule='adam', optim_config={'learning_rate': 1e-3},
               batch_size=20, num_epochs=2, verbose=False)
    s.train()
    assert s.best_val_acc > 0.8
    # the accuracy of the images equals that of their flattened rows
    flat = X[200:].reshape(40, -1)
    want = np.mean(np.argmax(model.loss(flat), axis=1) == y[200:])
    assert s.check_accuracy(X[200:], y[200:]) == want
    # rows of another size are still refused
    with pytest.raises(ValueError, match=r'X_val must be \(N, 48, 1, 1\)'):
        Solver(model, dict(data, X_val=X[200:, :, :3]))


def central_difference(f, p, h=1e-5):
    """d f() / d p by central differences, p changed in place and restored."""
    g = np.zeros_like(p)
    for i in np.ndindex(p.shape):
        old = p[i]
        p[i] = old + h
        fp = f()
        p[i] = old - h
        fm = f()
        p[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


def test_bias_before_batchnorm_has_zero_gradient():
    # BatchNormalization's check bounds the biases' errors by 1e-8: a hidden
    # layer's bias feeds a train-mode batch norm, which removes it with the
    # mean, so its gradient is zero (the central difference is exactly 0.0)
    # and rounding noise of 1e-15 would print as 1e-7 (denominator 1e-8).
    np.random.seed(231)
    X = np.random.randn(2, 15)
    y = np.random.randint(10, size=2)
    for reg in (0.0, 3.14):
        m = FullyConnectedNet([20, 30], input_dim=15, num_classes=10, reg=reg,
                              weight_scale=5e-2, dtype=np.float64,
                              normalization='batchnorm')
        _, grads = m.loss(X, y)
        f = lambda: m.loss(X, y)[0]
        for k in ('b1', 'b2'):
            num = central_difference(f, m.params[k])
            assert np.max(np.abs(num)) < 1e-9, (k, num)
            np.testing.assert_array_equal(grads[k], 0.0)
        num = central_difference(f, m.params['b3'])
        np.testing.assert_allclose(grads['b3'], num, rtol=1e-7, atol=1e-10)
    # under a layer norm (per row) or none, the biases do have a gradient
    for norm in ('layernorm', None):
        m = FullyConnectedNet([20, 30], input_dim=15, num_classes=10,
                              weight_scale=5e-2, dtype=np.float64, normalization=norm)
        _, grads = m.loss(X, y)
        num = central_difference(lambda: m.loss(X, y)[0], m.params['b1'])
        np.testing.assert_allclose(grads['b1'], num, rtol=1e-6, atol=1e-10)
        assert np.abs(grads['b1']).max() > 1e-6
