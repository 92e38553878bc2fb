"""dasecv.Model: an engine model (a graph of layer nodes) seen from numpy.

    m = dasecv.Model('threelayer', input_dim=(3, 32, 32), num_classes=10)
    m = dasecv.Model('my-net.cfg')              # a model file
    m = dasecv.Model('run.ckpt')                # a checkpoint's model
    m = dasecv.Model.from_text(text)            # model-file text
    m = dasecv.Model.from_config('fc', hidden_dims=[100, 50],
                                 normalization='batchnorm', input_dim=(3, 32, 32))

    scores = m.loss(X)                 # test mode: (N, classes)
    loss, grads = m.loss(X, y)         # train mode: grads name -> array (copies)
    m.params['conv1.w'] *= 0.5         # a view of the engine's block: the next
                                       # loss() sees it

Parameters are named NODE.w, NODE.b, NODE.gamma, NODE.beta
(docs/model-files.md). ``params`` values are views of the engine's one
parameter block whose base is the model, so they stay valid as long as they
are referenced. Assigning ``m.params[name] = array`` copies the values into
the block (the shape must match); so does ``m.params = other_dict``.

X is converted to the model's dtype (as the course's models do) and may be
(N, C, H, W) or (N, C*H*W). Labels are any integers in [0, classes).
"""
from collections.abc import Mapping, MutableMapping
import os

import numpy as np

from . import _dasecv

_CKPT_MAGIC = b'DSVCKPT\x1a'


def _dtype_name(dtype):
    if dtype is None:
        return None
    d = np.dtype(dtype)
    if d not in (np.float32, np.float64):
        raise TypeError('dtype must be float32 or float64, not %s' % d)
    return d.name


def is_checkpoint(path):
    """Whether path is a file that starts like a dasecv checkpoint."""
    try:
        with open(path, 'rb') as f:
            return f.read(8) == _CKPT_MAGIC
    except (OSError, TypeError):
        return False


class ParamDict(MutableMapping):
    """Names -> views of a model's block. Setting an entry copies into the view;
    entries cannot be added or removed (the network's shape is fixed)."""

    def __init__(self, views):
        self._views = dict(views)

    def __getitem__(self, k):
        return self._views[k]

    def __setitem__(self, k, v):
        if k not in self._views:
            raise KeyError('%r is not a parameter of this model (it has %s)'
                           % (k, ', '.join(self._views)))
        view = self._views[k]
        v = np.asarray(v)
        if v.shape != view.shape:
            raise ValueError('%s has shape %s; got %s' % (k, view.shape, v.shape))
        if v is not view:
            view[...] = v

    def __delitem__(self, k):
        raise TypeError("a model's parameters cannot be removed")

    def __iter__(self):
        return iter(self._views)

    def __len__(self):
        return len(self._views)

    def __repr__(self):
        return 'ParamDict({%s})' % ', '.join('%r: %s %s' % (k, v.dtype, v.shape)
                                              for k, v in self._views.items())


class Model:
    """An engine model; see the module's help."""

    def __init__(self, source, *, dtype=None, input_dim=None, num_classes=None,
                 seed=0, reg=0.0, backend=None, schedule=None, threads=None):
        if isinstance(source, _dasecv._Model):
            m = source
        elif is_checkpoint(source):
            m = _dasecv.model_from_checkpoint(source)
        else:
            m = _dasecv.model_from_file(os.fspath(source), **_options(
                dtype, input_dim, num_classes, seed, reg))
        self._attach(m)
        if reg and isinstance(source, _dasecv._Model):
            self.reg = reg
        if backend is not None or schedule is not None or threads is not None:
            self.set_exec(backend=backend, schedule=schedule, threads=threads)

    @classmethod
    def from_text(cls, text, *, source='<text>', **kw):
        """A model from model-file text (the keywords of Model())."""
        exec_kw = {k: kw.pop(k) for k in ('backend', 'schedule', 'threads') if k in kw}
        m = _dasecv.model_from_text(text, source, **_options(**kw))
        return cls(m, **exec_kw)

    @classmethod
    def from_config(cls, kind, *, dtype=None, input_dim=(3, 32, 32), num_classes=10,
                    seed=0, reg=0.0, backend=None, schedule=None, threads=None, **config):
        """A course network: kind 'threelayer', 'fc' or 'resnet' with the course's
        options (num_filters, filter_size, hidden_dim, hidden_dims,
        normalization, dropout_keep, weight_scale, res_channels, res_blocks)."""
        if config.get('normalization') is None:
            config.pop('normalization', None)
        text = _dasecv.config_text(kind, **config)
        return cls.from_text(text, source=kind, dtype=dtype, input_dim=input_dim,
                             num_classes=num_classes, seed=seed, reg=reg,
                             backend=backend, schedule=schedule, threads=threads)

    def _attach(self, m):
        self._m = m
        info = m.info
        self.dtype = np.dtype(info['dtype'])
        self.input_dim = info['input_dim']
        self.num_classes = info['num_classes']
        self.text = info['text']
        tensors = m.tensors()
        self._params = ParamDict((n, p) for n, p, g, w in tensors)
        self._grads = {n: g for n, p, g, w in tensors}
        self.weight_names = tuple(n for n, p, g, w in tensors if w)

    # ---- the course's interface -------------------------------------------

    def loss(self, X, y=None):
        """Scores (N, classes) when y is None, else (loss, grads) with grads a
        dict name -> array (a copy: later calls do not change it)."""
        X = self._input(X)
        if y is None:
            return self._m.scores(X)
        loss = self._m.loss(X, y)
        return loss, {k: g.copy() for k, g in self._grads.items()}

    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, values):
        if not isinstance(values, Mapping):
            raise TypeError('params must be a mapping of names to arrays')
        for k, v in values.items():
            self._params[k] = v

    @property
    def grads(self):
        """Views of the gradient block as the last loss(X, y) left it."""
        return dict(self._grads)

    @property
    def reg(self):
        return self._m.reg

    @reg.setter
    def reg(self, value):
        self._m.reg = float(value)

    @property
    def train_steps(self):
        """Training steps taken; dropout masks are drawn from it."""
        return self._m.train_steps

    @train_steps.setter
    def train_steps(self, n):
        self._m.train_steps = n

    @property
    def num_params(self):
        return self._m.info['num_params']

    def set_exec(self, backend=None, schedule=None, threads=None):
        """Backend ('naive', 'fast', 'onednn', 'auto'), schedule ('layer',
        'batch', 'auto') and threads (0: the engine's) of this model."""
        if threads is not None and int(threads) < 0:
            raise ValueError('threads must be >= 0, got %d' % threads)
        self._m.set_exec(backend=backend, schedule=schedule,
                         threads=-1 if threads is None else int(threads))

    @property
    def backend(self):
        return self._m.get_exec()[0]

    @property
    def schedule(self):
        return self._m.get_exec()[1]

    @property
    def threads(self):
        return self._m.get_exec()[2]

    def predict(self, X, batch_size=100):
        """Class indices for X, in batches."""
        X = self._input(X)
        return np.concatenate([np.argmax(self._m.scores(X[i:i + batch_size]), axis=1)
                               for i in range(0, X.shape[0], batch_size)])

    def _input(self, X):
        X = np.asarray(X)
        if X.dtype != self.dtype:
            if not (np.issubdtype(X.dtype, np.number) and np.isrealobj(X)):
                raise TypeError('X must hold real numbers, got %s' % X.dtype)
            X = X.astype(self.dtype)
        C, H, W = self.input_dim
        if X.ndim >= 2 and X.shape[1:] != (C, H, W) and \
                int(np.prod(X.shape[1:])) == C * H * W:
            X = X.reshape(X.shape[0], -1)
        return X

    def __repr__(self):
        return '<dasecv.Model %s, input %s, %d classes, %d parameters>' % (
            self.dtype, self.input_dim, self.num_classes, self.num_params)


def _options(dtype=None, input_dim=None, num_classes=None, seed=0, reg=0.0):
    return dict(dtype=_dtype_name(dtype),
                input_dim=None if input_dim is None else tuple(int(v) for v in input_dim),
                num_classes=0 if num_classes is None else int(num_classes),
                seed=int(seed), reg=float(reg))
