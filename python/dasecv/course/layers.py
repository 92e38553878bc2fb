"""The course's layers.py on the engine.

Forward functions return ``(out, cache)``; the cache holds the forward inputs
and parameters, and backward hands them to the engine's backward op, which
recomputes what it needs (batch statistics, argmax, the dropout mask). The
``*_naive`` functions run the naive reference backend, the others the fastest
one (``auto``). Arrays compute in x's dtype (see ``help(dasecv)`` for how other
dtypes convert).
"""
import numpy as np

from .. import op_backward, op_forward

__all__ = [
    'affine_forward', 'affine_backward', 'relu_forward', 'relu_backward',
    'batchnorm_forward', 'batchnorm_backward', 'batchnorm_backward_alt',
    'layernorm_forward', 'layernorm_backward', 'dropout_forward',
    'dropout_backward', 'conv_forward_naive', 'conv_backward_naive',
    'max_pool_forward_naive', 'max_pool_backward_naive',
    'spatial_batchnorm_forward', 'spatial_batchnorm_backward',
    'spatial_groupnorm_forward', 'spatial_groupnorm_backward', 'svm_loss',
    'softmax_loss',
]

AUTO = 'auto'
NAIVE = 'naive'


def _call_dtype(x):
    """The dtype the engine computes a call on x in (see dasecv's docstring)."""
    dt = np.asarray(x).dtype
    if dt == np.float32 or dt == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _elementwise_view(x):
    """x with 1 to 4 dimensions, as the engine takes them; elementwise ops do
    not care about the shape, so others are flattened (a view when possible)."""
    x = np.asarray(x)
    if 1 <= x.ndim <= 4:
        return x
    return x.reshape(x.shape[0] if x.ndim else 1, -1)


def _train(mode, what):
    if mode == 'train':
        return True
    if mode == 'test':
        return False
    raise ValueError("%s: mode must be 'train' or 'test', got %r" % (what, mode))


# ---- affine and relu ------------------------------------------------------

def affine_forward(x, w, b, backend=AUTO):
    """out = x.reshape(N, D) @ w + b; x (N, d_1, ..., d_k), w (D, M), b (M,).
    Returns (out (N, M), cache (x, w, b))."""
    x2 = np.asarray(x)
    x2 = x2.reshape(x2.shape[0], -1) if x2.ndim > 0 else x2
    out = op_forward('affine', x2, w, b, backend=backend)
    return out, (x, w, b)


def affine_backward(dout, cache, backend=AUTO):
    """Returns (dx shaped like x, dw (D, M), db (M,))."""
    x, w, b = cache
    x = np.asarray(x)
    dx, dw, db = op_backward('affine', dout, x.reshape(x.shape[0], -1), w, b,
                             backend=backend)
    return dx.reshape(x.shape), dw, db


def relu_forward(x, backend=AUTO):
    """max(x, 0) of any shape. Returns (out, cache x)."""
    xv = _elementwise_view(x)
    out = op_forward('relu', xv, backend=backend)
    return out.reshape(np.shape(x)), x


def relu_backward(dout, cache, backend=AUTO):
    """dx = dout where x > 0, else 0."""
    x = np.asarray(cache)
    dx = op_backward('relu', _elementwise_view(dout), _elementwise_view(x),
                     backend=backend)
    return dx.reshape(x.shape)


# ---- batch, layer and group norms -----------------------------------------

def _running(bn_param, key, n, dtype):
    """bn_param[key] as a C-contiguous array of the call's dtype that the
    engine updates in place; made (zeros) or converted (exactly) and stored
    back in bn_param when it is not one already."""
    r = bn_param.get(key)
    if r is None:
        r = np.zeros(n, dtype=dtype)
    elif not (isinstance(r, np.ndarray) and r.dtype == dtype and
              r.flags.c_contiguous and r.flags.writeable and r.flags.aligned):
        r = np.asarray(r)
        if not np.can_cast(r.dtype, dtype, 'safe'):
            raise TypeError("bn_param['%s'] is %s, which does not convert exactly "
                            "to %s" % (key, r.dtype, dtype))
        r = np.array(r, dtype=dtype, order='C')
    bn_param[key] = r
    return r


def _bn_forward(op, x, gamma, beta, bn_param, channels, backend):
    train = _train(bn_param['mode'], op)
    eps = bn_param.get('eps', 1e-5)
    momentum = bn_param.get('momentum', 0.9)
    dt = _call_dtype(x)
    rm = _running(bn_param, 'running_mean', channels, dt)
    rv = _running(bn_param, 'running_var', channels, dt)
    out = op_forward(op, x, gamma, beta, running_mean=rm, running_var=rv,
                     eps=eps, momentum=momentum, train=train, backend=backend)
    # Train-mode backward recomputes the batch statistics from x; test mode
    # needs the running statistics (which a later train step may change).
    stats = None if train else (rm.copy(), rv.copy())
    return out, (op, x, gamma, beta, eps, momentum, train, stats)


def _bn_backward(dout, cache, backend):
    op, x, gamma, beta, eps, momentum, train, stats = cache
    rm, rv = stats if stats is not None else (None, None)
    return op_backward(op, dout, x, gamma, beta, running_mean=rm,
                       running_var=rv, eps=eps, momentum=momentum, train=train,
                       backend=backend)


def batchnorm_forward(x, gamma, beta, bn_param, backend=AUTO):
    """Batch norm of x (N, D) with gamma, beta (D,). bn_param: 'mode'
    ('train'/'test'), optional 'eps' (1e-5), 'momentum' (0.9), 'running_mean',
    'running_var' (made as zeros when absent, updated in place in train mode:
    running = momentum * running + (1 - momentum) * batch statistic, the
    variance biased as np.var). Returns (out, cache)."""
    return _bn_forward('batchnorm', x, gamma, beta, bn_param, np.shape(x)[1],
                       backend)


def batchnorm_backward(dout, cache, backend=AUTO):
    """Returns (dx (N, D), dgamma (D,), dbeta (D,))."""
    return _bn_backward(dout, cache, backend)


def batchnorm_backward_alt(dout, cache, backend=AUTO):
    """The course's simplified-formula variant; the engine has one backward."""
    return _bn_backward(dout, cache, backend)


def spatial_batchnorm_forward(x, gamma, beta, bn_param, backend=AUTO):
    """Batch norm per channel of x (N, C, H, W); gamma, beta (C,); bn_param as
    for batchnorm_forward. Returns (out, cache)."""
    return _bn_forward('spatial_batchnorm', x, gamma, beta, bn_param,
                       np.shape(x)[1], backend)


def spatial_batchnorm_backward(dout, cache, backend=AUTO):
    """Returns (dx (N, C, H, W), dgamma (C,), dbeta (C,))."""
    return _bn_backward(dout, cache, backend)


def layernorm_forward(x, gamma, beta, ln_param, backend=AUTO):
    """Layer norm of each row of x (N, D); gamma, beta (D,); ln_param: optional
    'eps' (1e-5). Returns (out, cache)."""
    eps = ln_param.get('eps', 1e-5)
    out = op_forward('layernorm', x, gamma, beta, eps=eps, backend=backend)
    return out, (x, gamma, beta, eps)


def layernorm_backward(dout, cache, backend=AUTO):
    """Returns (dx (N, D), dgamma (D,), dbeta (D,))."""
    x, gamma, beta, eps = cache
    return op_backward('layernorm', dout, x, gamma, beta, eps=eps,
                       backend=backend)


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param, backend=AUTO):
    """Group norm of x (N, C, H, W) over G groups of C // G channels; gamma,
    beta hold C values, shaped (1, C, 1, 1) as in the course or (C,);
    gn_param: optional 'eps' (1e-5). Returns (out, cache)."""
    eps = gn_param.get('eps', 1e-5)
    out = op_forward('spatial_groupnorm', x, gamma, beta, groups=G, eps=eps,
                     backend=backend)
    return out, (x, gamma, beta, G, eps)


def spatial_groupnorm_backward(dout, cache, backend=AUTO):
    """Returns (dx, dgamma, dbeta), the gradients shaped like gamma and beta."""
    x, gamma, beta, G, eps = cache
    return op_backward('spatial_groupnorm', dout, x, gamma, beta, groups=G,
                       eps=eps, backend=backend)


# ---- dropout ---------------------------------------------------------------

def dropout_forward(x, dropout_param, backend=AUTO):
    """Inverted dropout: keeps each unit with probability dropout_param['p']
    and scales kept units by 1 / p in 'train' mode; 'test' mode passes x
    through. With dropout_param['seed'] the mask is a pure function of
    (seed, element index); without it the seed is drawn from np.random, so
    np.random.seed makes runs repeatable. Returns (out, cache), the cache
    (dropout_param with the seed used, x)."""
    p = dropout_param['p']
    train = _train(dropout_param['mode'], 'dropout')
    if 'seed' in dropout_param:
        seed = int(dropout_param['seed']) & (2**64 - 1)
    else:
        seed = int(np.random.randint(0, 2**63 - 1, dtype=np.int64))
    xv = _elementwise_view(x)
    out = op_forward('dropout', xv, p=p, seed=seed, train=train,
                     backend=backend)
    used = dict(dropout_param, seed=seed)
    return out.reshape(np.shape(x)), (used, x)


def dropout_backward(dout, cache, backend=AUTO):
    """dx = dout * mask / p in train mode (the forward's mask), dout in test."""
    used, x = cache
    train = _train(used['mode'], 'dropout')
    dx = op_backward('dropout', _elementwise_view(dout), _elementwise_view(x),
                     p=used['p'], seed=used['seed'], train=train,
                     backend=backend)
    return dx.reshape(np.shape(x))


# ---- convolution and pooling ----------------------------------------------

def conv_forward(x, w, b, conv_param, backend=AUTO):
    """Convolution of x (N, C, H, W) with w (F, C, HH, WW) plus b (F,);
    conv_param: 'stride', 'pad' (zeros on every side). (H + 2 pad - HH) and
    (W + 2 pad - WW) must be divisible by stride. Returns (out (N, F, H', W'),
    cache (x, w, b, conv_param))."""
    out = op_forward('conv', x, w, b, stride=conv_param['stride'],
                     pad=conv_param['pad'], backend=backend)
    return out, (x, w, b, conv_param)


def conv_backward(dout, cache, backend=AUTO):
    """Returns (dx, dw, db)."""
    x, w, b, conv_param = cache
    return op_backward('conv', dout, x, w, b, stride=conv_param['stride'],
                       pad=conv_param['pad'], backend=backend)


def max_pool_forward(x, pool_param, backend=AUTO):
    """Max pooling of x (N, C, H, W); pool_param: 'pool_height', 'pool_width',
    'stride'. Returns (out (N, C, H', W'), cache (x, pool_param))."""
    out = op_forward('max_pool', x, pool_height=pool_param['pool_height'],
                     pool_width=pool_param['pool_width'],
                     stride=pool_param['stride'], backend=backend)
    return out, (x, pool_param)


def max_pool_backward(dout, cache, backend=AUTO):
    """Returns dx: dout routed to each window's (first) maximum."""
    x, pool_param = cache
    return op_backward('max_pool', dout, x,
                       pool_height=pool_param['pool_height'],
                       pool_width=pool_param['pool_width'],
                       stride=pool_param['stride'], backend=backend)


def conv_forward_naive(x, w, b, conv_param):
    """conv_forward on the naive reference backend."""
    return conv_forward(x, w, b, conv_param, backend=NAIVE)


def conv_backward_naive(dout, cache):
    """conv_backward on the naive reference backend."""
    return conv_backward(dout, cache, backend=NAIVE)


def max_pool_forward_naive(x, pool_param):
    """max_pool_forward on the naive reference backend."""
    return max_pool_forward(x, pool_param, backend=NAIVE)


def max_pool_backward_naive(dout, cache):
    """max_pool_backward on the naive reference backend."""
    return max_pool_backward(dout, cache, backend=NAIVE)


# ---- losses ----------------------------------------------------------------

def svm_loss(x, y, backend=AUTO):
    """Multiclass SVM (hinge, margin 1) loss averaged over the N rows of
    scores x (N, C) with labels y (N,). Returns (loss, dx)."""
    return op_forward('svm_loss', x, y=y, backend=backend)


def softmax_loss(x, y, backend=AUTO):
    """Softmax cross-entropy loss averaged over the N rows of scores x (N, C)
    with labels y (N,). Returns (loss, dx)."""
    return op_forward('softmax_loss', x, y=y, backend=backend)
