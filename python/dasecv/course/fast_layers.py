"""The course's fast_layers.py on the engine.

The course chooses between im2col, stride tricks, reshapes and PyTorch; here
every name runs the engine's fastest backend for the call (``auto``), so the
variants are the same function under the names the notebooks call. Caches
are the forward inputs and parameters, as in layers.
"""
from .layers import AUTO, conv_backward, conv_forward, max_pool_backward, \
    max_pool_forward

__all__ = [
    'conv_forward_fast', 'conv_backward_fast', 'conv_forward_im2col',
    'conv_backward_im2col', 'conv_forward_strides', 'conv_backward_strides',
    'conv_forward_pytorch', 'conv_backward_pytorch', 'max_pool_forward_fast',
    'max_pool_backward_fast', 'max_pool_forward_reshape',
    'max_pool_backward_reshape', 'max_pool_forward_im2col',
    'max_pool_backward_im2col',
]


def conv_forward_fast(x, w, b, conv_param):
    """Convolution on the fastest backend; returns (out, cache)."""
    return conv_forward(x, w, b, conv_param, backend=AUTO)


def conv_backward_fast(dout, cache):
    """Returns (dx, dw, db) from a conv_forward_* cache."""
    return conv_backward(dout, cache, backend=AUTO)


def max_pool_forward_fast(x, pool_param):
    """Max pooling on the fastest backend, for any window and stride;
    returns (out, cache)."""
    return max_pool_forward(x, pool_param, backend=AUTO)


def max_pool_backward_fast(dout, cache):
    """Returns dx from a max_pool_forward_* cache."""
    return max_pool_backward(dout, cache, backend=AUTO)


conv_forward_im2col = conv_forward_strides = conv_forward_pytorch = conv_forward_fast
conv_backward_im2col = conv_backward_strides = conv_backward_pytorch = conv_backward_fast
max_pool_forward_reshape = max_pool_forward_im2col = max_pool_forward_fast
max_pool_backward_reshape = max_pool_backward_im2col = max_pool_backward_fast
