"""The course's Solver (solver.py): Solver(model, data, **kwargs).train().

Keyword arguments, attributes and printed lines are the course's:
update_rule ('sgd', 'sgd_momentum', 'rmsprop', 'adam'), optim_config,
lr_decay, batch_size, num_epochs, num_train_samples (1000; None: all),
num_val_samples (None: all), checkpoint_name, print_every, verbose;
loss_history, train_acc_history, val_acc_history, best_val_acc,
best_params, epoch, check_accuracy(X, y, num_samples=None, batch_size=100).

When the model is one of dasecv's (a dasecv.Model or a classifier of
dasecv.course.classifiers), the whole loop runs in C (dasecv.Solver: each
epoch a permutation of the training set rather than the course's draws with
replacement; checkpoints are dasecv checkpoints, NAME_epoch_E.ckpt). Any
other object with ``params`` (a dict of arrays) and the course's
``loss(X, y=None)`` trains here in numpy as the course's Solver does
(checkpoints are pickles, NAME_epoch_E.pkl).
"""
import pickle

import numpy as np

from . import optim
from ..solver import Solver as EngineSolver, engine_model

__all__ = ['Solver']


class Solver:
    """The course's Solver; see the module's help."""

    def __init__(self, model, data, **kwargs):
        self.model = model
        self.X_train = data['X_train']
        self.y_train = data['y_train']
        self.X_val = data['X_val']
        self.y_val = data['y_val']
        self.update_rule = kwargs.pop('update_rule', 'sgd')
        self.optim_config = kwargs.pop('optim_config', {})
        self.lr_decay = kwargs.pop('lr_decay', 1.0)
        self.batch_size = kwargs.pop('batch_size', 100)
        self.num_epochs = kwargs.pop('num_epochs', 10)
        self.num_train_samples = kwargs.pop('num_train_samples', 1000)
        self.num_val_samples = kwargs.pop('num_val_samples', None)
        self.checkpoint_name = kwargs.pop('checkpoint_name', None)
        self.print_every = kwargs.pop('print_every', 10)
        self.verbose = kwargs.pop('verbose', True)
        if kwargs:
            raise ValueError('Unrecognized arguments %s'
                             % ', '.join('"%s"' % k for k in kwargs))
        if self.update_rule not in optim.__all__:
            raise ValueError('Invalid update_rule "%s"' % self.update_rule)
        self._engine = None
        if engine_model(model) is not None:
            self._engine = EngineSolver(
                model, data, update_rule=self.update_rule,
                optim_config=self.optim_config, lr_decay=self.lr_decay,
                batch_size=self.batch_size, num_epochs=self.num_epochs,
                num_train_samples=self.num_train_samples,
                num_val_samples=self.num_val_samples, print_every=self.print_every,
                verbose=self.verbose, checkpoint_name=self.checkpoint_name,
                seed=int(np.random.randint(0, 2**62)))
        self.update_rule = getattr(optim, self.update_rule)
        self._reset()

    def _reset(self):
        self.epoch = 0
        self.best_val_acc = 0
        self.best_params = {}
        self.loss_history = []
        self.train_acc_history = []
        self.val_acc_history = []
        self.optim_configs = {p: dict(self.optim_config) for p in self.model.params}

    # ---- the numpy loop, for models that are not the engine's --------------

    def _step(self):
        idx = np.random.choice(self.X_train.shape[0], self.batch_size)
        loss, grads = self.model.loss(self.X_train[idx], self.y_train[idx])
        self.loss_history.append(loss)
        for p, w in self.model.params.items():
            next_w, self.optim_configs[p] = self.update_rule(w, grads[p],
                                                             self.optim_configs[p])
            self.model.params[p] = next_w

    def _save_checkpoint(self):
        if self.checkpoint_name is None:
            return
        checkpoint = {
            'model': self.model, 'update_rule': self.update_rule,
            'lr_decay': self.lr_decay, 'optim_config': self.optim_config,
            'batch_size': self.batch_size, 'num_train_samples': self.num_train_samples,
            'num_val_samples': self.num_val_samples, 'epoch': self.epoch,
            'loss_history': self.loss_history,
            'train_acc_history': self.train_acc_history,
            'val_acc_history': self.val_acc_history,
        }
        filename = '%s_epoch_%d.pkl' % (self.checkpoint_name, self.epoch)
        if self.verbose:
            print('Saving checkpoint to "%s"' % filename)
        with open(filename, 'wb') as f:
            pickle.dump(checkpoint, f)

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of X (num_samples of it drawn at random; None: all) that
        the model classifies as y, scored in batches of batch_size."""
        if self._engine is not None:
            return self._engine.check_accuracy(X, y, num_samples, batch_size)
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            idx = np.random.choice(N, num_samples)
            X, y, N = X[idx], y[idx], num_samples
        pred = [np.argmax(self.model.loss(X[i:i + batch_size]), axis=1)
                for i in range(0, N, batch_size)]
        return float(np.mean(np.hstack(pred) == y))

    def train(self):
        """Runs the optimisation; the best-validation parameters end in the model."""
        if self._engine is not None:
            e = self._engine
            try:
                e.train()
            finally:
                self.loss_history = e.loss_history
                self.train_acc_history = e.train_acc_history
                self.val_acc_history = e.val_acc_history
                self.epoch = e.epoch
                self.best_val_acc = e.best_val_acc
                if e.best_params:
                    self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            return
        num_train = self.X_train.shape[0]
        per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * per_epoch
        for t in range(num_iterations):
            self._step()
            if self.verbose and t % self.print_every == 0:
                print('(Iteration %d / %d) loss: %f'
                      % (t + 1, num_iterations, self.loss_history[-1]))
            epoch_end = (t + 1) % per_epoch == 0
            if epoch_end:
                self.epoch += 1
                for c in self.optim_configs.values():
                    c['learning_rate'] *= self.lr_decay
            if t == 0 or t == num_iterations - 1 or epoch_end:
                train_acc = self.check_accuracy(self.X_train, self.y_train,
                                                num_samples=self.num_train_samples)
                val_acc = self.check_accuracy(self.X_val, self.y_val,
                                              num_samples=self.num_val_samples)
                self.train_acc_history.append(train_acc)
                self.val_acc_history.append(val_acc)
                self._save_checkpoint()
                if self.verbose:
                    print('(Epoch %d / %d) train acc: %f; val_acc: %f'
                          % (self.epoch, self.num_epochs, train_acc, val_acc))
                if val_acc > self.best_val_acc:
                    self.best_val_acc = val_acc
                    self.best_params = {k: v.copy() for k, v in self.model.params.items()}
        self.model.params = self.best_params
