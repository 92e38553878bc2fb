"""dasecv: the numpy binding of the dasecv engine.

Every layer op of the engine runs through two functions:

    out = dasecv.op_forward('conv', x, w, b, stride=2, pad=1, backend='fast')
    dx, dw, db = dasecv.op_backward('conv', dout, x, w, b, stride=2, pad=1)

``op_names()`` lists the ops; ``backend`` is 'naive', 'fast', 'onednn' or
'auto' (per op the fastest backend that supports the call; a named backend
that cannot run a call falls back to naive). Losses return ``(loss, dx)``
from op_forward and have no backward. Outputs are new numpy arrays; the
batch-norm running statistics passed as ``running_mean``/``running_var`` are
updated in place in train mode.

Dtypes. A call computes in x's dtype when x is float32 or float64 (float16:
float32; anything else: float64). C-contiguous, aligned arrays of that dtype
are used as they are, without a copy; other layouts are copied. Other dtypes
are converted only when the conversion is exact: float16/float32 into either
float dtype, integers whose values are exact in the target (below 2**24 for
float32, 2**53 for float64). A float64 array in a float32 call is a
TypeError: convert it yourself. Labels (``y``) may be any integer dtype whose
values fit in int32. The engine takes arrays of 1 to 4 dimensions.

Errors carry the engine's own message: ValueError for bad shapes and
parameters, TypeError for bad dtypes and non-arrays.

Threads: ``set_num_threads(n)`` / ``get_num_threads()`` set the engine's
OpenMP and oneDNN threads (initially DASECV_NUM_THREADS or OpenMP's default).
The GIL is released while an op runs.

Models and training. ``Model`` is a whole network (a model file, a built-in
such as 'threelayer', or a checkpoint) with the course's ``loss(X, y=None)``
and ``params`` as views of the engine's parameters; ``Solver`` trains one
with the whole loop in C (the course's keyword arguments and histories);
``load_cifar10`` and ``load_fashion_mnist`` read the datasets into numpy.
``python3 -m dasecv.plot`` and ``python3 -m dasecv.filters`` draw training
curves and first-layer filters.

``dasecv.course`` holds the daseCV course's modules on top of this: layers,
optim, the Solver, the classifiers, data_utils and vis_utils.
"""
from ._dasecv import (backend_available, builtin_models, get_num_threads,
                      op_backward, op_forward, op_names, set_num_threads)
from .data import load_cifar10, load_fashion_mnist
from .model import Model
from .solver import Solver

__all__ = ['BACKENDS', 'Model', 'Solver', 'backend_available', 'backends',
           'builtin_models', 'get_num_threads', 'load_cifar10', 'load_fashion_mnist',
           'op_backward', 'op_forward', 'op_names', 'set_num_threads']

BACKENDS = ('naive', 'fast', 'onednn', 'auto')


def backends():
    """The backends built into this engine, e.g. ('naive', 'fast', 'onednn', 'auto')."""
    return tuple(b for b in BACKENDS if backend_available(b))
