"""The course's first-order update rules, in numpy.

Each rule is ``next_w, config = rule(w, dw, config=None)``: config holds the
hyperparameters (defaults filled in on first use) and the rule's state
(velocity, cache, m, v, t), which the caller passes back on the next step.
The engine's Solver runs the same rules in C (solver.h); these serve the
Python loop of dasecv.course.solver.Solver for models of any kind.
"""
import numpy as np

__all__ = ['sgd', 'sgd_momentum', 'rmsprop', 'adam']


def sgd(w, dw, config=None):
    """Vanilla SGD: w -= learning_rate * dw (learning_rate 1e-2). Updates w in
    place, as the course does."""
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-2)
    w -= config['learning_rate'] * dw
    return w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: v = momentum * v - learning_rate * dw; w + v
    (learning_rate 1e-2, momentum 0.9, velocity zeros)."""
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-2)
    config.setdefault('momentum', 0.9)
    v = config.get('velocity')
    if v is None:
        v = np.zeros_like(w)
    v = config['momentum'] * v - config['learning_rate'] * dw
    config['velocity'] = v
    return w + v, config


def rmsprop(w, dw, config=None):
    """RMSProp: a moving average of squared gradients scales the step
    (learning_rate 1e-2, decay_rate 0.99, epsilon 1e-8, cache zeros)."""
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-2)
    config.setdefault('decay_rate', 0.99)
    config.setdefault('epsilon', 1e-8)
    config.setdefault('cache', np.zeros_like(w))
    d = config['decay_rate']
    cache = d * config['cache'] + (1 - d) * dw * dw
    config['cache'] = cache
    return w - config['learning_rate'] * dw / (np.sqrt(cache) + config['epsilon']), config


def adam(w, dw, config=None):
    """Adam with bias correction; t counts the steps from 0, incremented before
    use (learning_rate 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8)."""
    config = {} if config is None else config
    config.setdefault('learning_rate', 1e-3)
    config.setdefault('beta1', 0.9)
    config.setdefault('beta2', 0.999)
    config.setdefault('epsilon', 1e-8)
    config.setdefault('m', np.zeros_like(w))
    config.setdefault('v', np.zeros_like(w))
    config.setdefault('t', 0)
    b1, b2 = config['beta1'], config['beta2']
    t = config['t'] + 1
    m = b1 * config['m'] + (1 - b1) * dw
    v = b2 * config['v'] + (1 - b2) * dw * dw
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    config.update(m=m, v=v, t=t)
    return w - config['learning_rate'] * mhat / (np.sqrt(vhat) + config['epsilon']), config
