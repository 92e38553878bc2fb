"""dasecv.Solver: the course's Solver with the whole training loop in C.

    solver = dasecv.Solver(model, data, update_rule='adam',
                           optim_config={'learning_rate': 1e-3},
                           lr_decay=0.95, batch_size=50, num_epochs=1,
                           print_every=20)
    solver.train()
    solver.loss_history, solver.train_acc_history, solver.val_acc_history

model is a dasecv.Model (or a course classifier of dasecv.course, which holds
one); data is the course's dict of X_train, y_train, X_val, y_val. Float32 and
float64 arrays are read in place (no copy; a batch is converted to the
model's dtype); other dtypes are converted once.

The engine's Solver samples each epoch as a permutation (the course draws
batches with replacement), checks accuracy on num_train_samples training and
num_val_samples validation images after the first iteration and at each
epoch end, keeps the best-validation parameters and puts them into the model
when training ends. The GIL is released while it trains; the course's
progress lines are printed from a hook that takes the GIL between steps,
which also lets Ctrl-C (KeyboardInterrupt) and ``callback`` stop training
(callback(progress_dict) returning False stops it; an exception it raises
comes out of train()). ``save(path)`` writes a checkpoint;
``Solver.load(path, data, num_epochs=...)`` continues one bit for bit.
"""
import numpy as np

from . import _dasecv
from .model import Model

_OPTIM_KEYS = ('learning_rate', 'momentum', 'decay_rate', 'beta1', 'beta2', 'epsilon')
_RULES = ('sgd', 'sgd_momentum', 'rmsprop', 'adam')


def engine_model(model):
    """The dasecv.Model behind model (itself or a course classifier's), or None."""
    if isinstance(model, Model):
        return model
    inner = getattr(model, 'engine_model', None)
    return inner if isinstance(inner, Model) else None


def _data(data):
    try:
        return [data[k] for k in ('X_train', 'y_train', 'X_val', 'y_val')]
    except (KeyError, TypeError):
        raise ValueError("data must be a dict with 'X_train', 'y_train', 'X_val' and "
                         "'y_val'") from None


class Solver:
    """The course's Solver on an engine model; see the module's help."""

    def __init__(self, model, data, *, update_rule='sgd', optim_config=None,
                 lr_decay=1.0, batch_size=100, num_epochs=10, num_train_samples=1000,
                 num_val_samples=None, print_every=10, verbose=True, seed=0,
                 checkpoint_name=None, callback=None, _solver=None):
        self.model = model
        self._model = engine_model(model)
        if self._model is None:
            raise TypeError('dasecv.Solver trains a dasecv.Model or a dasecv.course '
                            'classifier; use dasecv.course.solver.Solver for others')
        self.X_train, self.y_train, self.X_val, self.y_val = _data(data)
        self.update_rule = update_rule
        self.optim_config = dict(optim_config or {})
        unknown = set(self.optim_config) - set(_OPTIM_KEYS)
        if unknown:
            raise ValueError('unknown optim_config keys: %s' % ', '.join(sorted(unknown)))
        if callback is not None and not callable(callback):
            raise TypeError('callback must be callable or None')
        if update_rule not in _RULES:
            raise ValueError('Invalid update_rule "%s" (one of %s)' % (update_rule,
                                                                      ', '.join(_RULES)))
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.num_epochs = num_epochs
        self.num_train_samples = num_train_samples
        self.num_val_samples = num_val_samples
        self.print_every = print_every
        self.verbose = verbose
        self.seed = seed
        self.checkpoint_name = checkpoint_name
        self.callback = callback
        self._first = None     # the accuracies after the first iteration
        if _solver is not None:
            self._s = _solver
        else:
            self._s = _dasecv.solver_create(
                self._model._m, *_data(data), update_rule=update_rule,
                lr_decay=float(lr_decay), batch_size=int(batch_size),
                num_epochs=int(num_epochs),
                num_train_samples=int(num_train_samples or 0),
                num_val_samples=int(num_val_samples or 0), seed=int(seed),
                callback=self._hook,
                **{k: float(v) for k, v in self.optim_config.items()})
        self._collect()

    @classmethod
    def load(cls, path, data, *, num_epochs=10, print_every=10, verbose=True,
             checkpoint_name=None, callback=None):
        """A Solver from a checkpoint (its model is .model), to train on to
        num_epochs; the other settings are the checkpoint's. data must be the
        data it was trained on."""
        self = cls.__new__(cls)
        self.print_every, self.verbose = print_every, verbose
        self.checkpoint_name, self.callback = checkpoint_name, callback
        s = _dasecv.solver_load(path, *_data(data), num_epochs=int(num_epochs),
                                callback=self._hook)
        model = Model(s.model)
        cls.__init__(self, model, data, num_epochs=num_epochs, print_every=print_every,
                     verbose=verbose, checkpoint_name=checkpoint_name, callback=callback,
                     _solver=s)
        self._first = ()       # a resumed run has no first-iteration check
        return self

    # ---- training -------------------------------------------------------------

    def train(self):
        """Trains to num_epochs; returns True when done, False when stopped."""
        try:
            done = self._s.train()
        finally:
            self._collect()
        return done

    def _hook(self, p):
        it = p['iteration']
        if self.verbose and self.print_every and (it - 1) % self.print_every == 0:
            print('(Iteration %d / %d) loss: %f' % (it, p['num_iterations'], p['loss']))
        if it == 1 and self._first is None and not p['epoch_end']:
            tr = self.check_accuracy(self.X_train, self.y_train,
                                     num_samples=self.num_train_samples)
            va = self.check_accuracy(self.X_val, self.y_val,
                                     num_samples=self.num_val_samples)
            self._first = (tr, va)
            if self.verbose:
                print('(Epoch %d / %d) train acc: %f; val_acc: %f' % (
                    0, p['num_epochs'], tr, va))
        if p['epoch_end']:
            if self.verbose:
                print('(Epoch %d / %d) train acc: %f; val_acc: %f' % (
                    p['epoch'], p['num_epochs'], p['train_acc'], p['val_acc']))
            if self.checkpoint_name is not None:
                self.save('%s_epoch_%d.ckpt' % (self.checkpoint_name, p['epoch']))
        if self.callback is not None:
            return self.callback(p)
        return True

    def _collect(self):
        loss, tr, va = self._s.history()
        first = list(self._first) if self._first else []
        self.loss_history = loss
        self.train_acc_history = first[:1] + tr
        self.val_acc_history = first[1:] + va
        st = self._s.state()
        self.epoch = st['epoch']
        self.iteration = st['iteration']
        self.best_val_acc = st['best_val_acc']
        if st['done']:
            self.best_params = {k: v.copy() for k, v in self._model.params.items()}
        else:
            self.best_params = {}

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Accuracy on num_samples rows (None: all) drawn without repetition."""
        seed = int(np.random.randint(0, 2**31 - 1))
        return _dasecv.check_accuracy(self._model._m, X, y, int(num_samples or 0),
                                      int(batch_size), seed)

    def save(self, path):
        """Writes a checkpoint of the model, optimizer and histories."""
        self._s.save(path)
