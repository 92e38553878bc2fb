"""What the course's classifiers share: an engine model built from the
course's options, its parameters under the course's names (W1, b1, gamma1,
beta1, ...) as views of the engine's block, and loss(X, y=None)."""
from collections.abc import Mapping

import numpy as np

from ...model import Model, ParamDict


def course_names(engine_names):
    """Engine parameter names (NODE.w, NODE.b, NODE.gamma, NODE.beta) in the
    model's order -> the course's: the k-th weight layer's are Wk and bk, the
    k-th norm layer's gammak and betak."""
    out, layer, norm = {}, 0, 0
    for name in engine_names:
        node, _, kind = name.rpartition('.')
        if kind == 'w':
            layer += 1
            out[name] = 'W%d' % layer
        elif kind == 'b':
            out[name] = 'b%d' % layer
        elif kind == 'gamma':
            norm += 1
            out[name] = 'gamma%d' % norm
        elif kind == 'beta':
            out[name] = 'beta%d' % norm
        else:
            raise ValueError('parameter %s has no course name' % name)
    return out


class EngineNet:
    """Base of the course's classifiers; ``engine_model`` is the dasecv.Model."""

    def _build(self, kind, input_dim, num_classes, reg, dtype, seed, **config):
        """The engine's model. With seed None its weights are the course's
        draws (see _draw_weights); with a seed, the engine's own from it."""
        if seed is None:
            # The engine's seed (its dropout masks start from it) is read from
            # np.random without consuming the stream, which the weights use.
            state = np.random.get_state()
            engine_seed = int(np.random.randint(0, 2**62))
            np.random.set_state(state)
        else:
            engine_seed = int(seed)
        self.engine_model = Model.from_config(
            kind, dtype=dtype, input_dim=input_dim, num_classes=num_classes,
            seed=engine_seed, reg=reg, **config)
        names = course_names(self.engine_model.params)
        self._engine_names = {c: e for e, c in names.items()}
        self._params = ParamDict((c, self.engine_model.params[e]) for e, c in names.items())
        if seed is None:
            self._draw_weights(config['weight_scale'])

    def _draw_weights(self, weight_scale):
        """W1, W2, ... = weight_scale * np.random.randn(*shape) in layer order,
        in float64 as the course's classifiers draw them (biases stay zero,
        gammas one): after np.random.seed(s) a notebook gets the course's
        weights, and the checks on them (TwoLayerNet's std within a tenth of
        weight_scale) see the course's numbers, as do the draws after."""
        layers = sorted((int(c[1:]), c) for c in self._params if c[0] == 'W')
        for _, c in layers:
            self._params[c] = weight_scale * np.random.randn(*self._params[c].shape)

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
    def reg(self):
        return self.engine_model.reg

    @reg.setter
    def reg(self, value):
        self.engine_model.reg = value

    def _fixed_masks(self):
        """Whether every train-mode call draws the same dropout masks."""
        return False

    def loss(self, X, y=None):
        """Scores (N, C) for y None, else (loss, grads) under the course's names."""
        if y is None:
            return self.engine_model.loss(X)
        if self._fixed_masks():
            self.engine_model.train_steps = 0
        loss, grads = self.engine_model.loss(X, y)
        return loss, {c: grads[e] for c, e in self._engine_names.items()}
