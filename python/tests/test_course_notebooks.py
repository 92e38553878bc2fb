"""What the course's notebooks expect of dasecv.course beyond each layer's
numbers: the names a star import brings, weights drawn from np.random as the
course draws them, and CIFAR-shaped images fed to a fully-connected net."""
import numpy as np



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
