"""The course's ThreeLayerConvNet (classifiers/cnn.py) as an engine model.

As the course's module, it imports layers, fast_layers and layer_utils with a
star, so ``from ...classifiers.cnn import *`` brings every layer too."""
import numpy as np

from ..fast_layers import *  # noqa: F401,F403
from ..layer_utils import *  # noqa: F401,F403
from ..layers import *  # noqa: F401,F403
from ._engine_net import EngineNet


class ThreeLayerConvNet(EngineNet):
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax, on
    (N, C, H, W) minibatches. The convolution keeps the size (stride 1, pad
    (filter_size - 1) // 2). Parameters W1, b1 (conv), W2, b2 (hidden affine),
    W3, b3 (output affine): Gaussian weights of std weight_scale, zero biases.
    ``params`` are views of the engine's parameters; the loss is softmax plus
    0.5 * reg * the sum of the squared weights. ``seed`` (not the course's):
    None draws the weights from np.random as the course does (np.random.seed
    gives the course's weights), a number has the engine draw them from it."""

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7,
                 hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0,
                 dtype=np.float32, seed=None):
        self.dtype = dtype
        self._build('threelayer', tuple(input_dim), num_classes, reg, dtype, seed,
                    num_filters=num_filters, filter_size=filter_size,
                    hidden_dim=hidden_dim, weight_scale=weight_scale)
