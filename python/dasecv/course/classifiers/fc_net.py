"""The course's TwoLayerNet and FullyConnectedNet (classifiers/fc_net.py) as
engine models.

As the course's module, it imports layers and layer_utils with a star, so the
notebooks' ``from ...classifiers.fc_net import *`` brings every layer too."""
import numpy as np

from ..layer_utils import *  # noqa: F401,F403
from ..layers import *  # noqa: F401,F403
from ._engine_net import EngineNet


def _flat_dim(input_dim):
    if np.ndim(input_dim) == 0:
        return (int(input_dim), 1, 1)
    return tuple(int(v) for v in input_dim)


class FullyConnectedNet(EngineNet):
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine -
    softmax. Parameters W1..WL, b1..bL, and gamma1.., beta1.. of the norms.
    ``dropout`` is the probability of keeping a unit (1: no dropout);
    ``normalization`` None, 'batchnorm' or 'layernorm'. With ``seed`` set,
    every train-mode loss() draws the same dropout masks (the course's
    gradient checks need that); it also seeds the engine's initialisation;
    None draws the weights from np.random as the course does. input_dim is
    D (inputs are flattened) or (C, H, W)."""

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10,
                 dropout=1, normalization=None, reg=0.0, weight_scale=1e-2,
                 dtype=np.float32, seed=None):
        if normalization not in (None, 'batchnorm', 'layernorm'):
            raise ValueError('normalization must be None, "batchnorm" or "layernorm", '
                             'not %r' % (normalization,))
        if not 0 < dropout <= 1:
            raise ValueError('dropout (the probability of keeping a unit) must be in '
                             '(0, 1], got %r' % (dropout,))
        self.normalization = normalization
        self.use_dropout = dropout != 1
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.seed = seed
        self._build('fc', _flat_dim(input_dim), num_classes, reg, dtype, seed,
                    hidden_dims=[int(h) for h in hidden_dims],
                    normalization=normalization or 'none', dropout_keep=float(dropout),
                    weight_scale=weight_scale)

    def _fixed_masks(self):
        return self.use_dropout and self.seed is not None

    def loss(self, X, y=None):
        """Scores (N, C) for y None, else (loss, grads). With batchnorm, the
        hidden layers' biases get their exact gradient, zero: a train-mode
        batch norm removes a bias with the batch mean. The engine's sum over
        the batch leaves rounding noise (about 1e-15), which the course's
        relative error, over a denominator of 1e-8, would print as 1e-7."""
        out = super().loss(X, y)
        if y is None or self.normalization != 'batchnorm':
            return out
        loss, grads = out
        for k in range(1, self.num_layers):
            grads['b%d' % k] = np.zeros_like(grads['b%d' % k])
        return loss, grads


class TwoLayerNet(FullyConnectedNet):
    """affine - relu - affine - softmax: W1, b1, W2, b2 (float64, as the
    course's)."""

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float64, seed=None):
        super().__init__([hidden_dim], input_dim=input_dim, num_classes=num_classes,
                         reg=reg, weight_scale=weight_scale, dtype=dtype, seed=seed)
