"""The Solvers: the engine's loop (dasecv.Solver, and the course's Solver on
our models) and the course's numpy loop for any other model."""
import sys
import threading

import numpy as np
import pytest

import dasecv
from dasecv.course import optim
from dasecv.course.classifiers import FullyConnectedNet, ThreeLayerConvNet
from dasecv.course.solver import Solver


def toy_data(n_train=200, n_val=50, seed=0, shape=(3, 8, 8), classes=4):
    """Images whose class is the brightest of `classes` fixed patterns."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((classes,) + shape)
    n = n_train + n_val
    y = rng.integers(classes, size=n)
    X = 0.5 * rng.standard_normal((n,) + shape) + 2 * patterns[y]
    return {'X_train': X[:n_train], 'y_train': y[:n_train],
            'X_val': X[n_train:], 'y_val': y[n_train:]}


def small_cnn(seed=1, **kw):
    return ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3,
                             hidden_dim=20, num_classes=4, weight_scale=1e-2, seed=seed, **kw)


def test_engine_loop_histories(capsys):
    data = toy_data()
    np.random.seed(0)
    model = small_cnn()
    solver = Solver(model, data, update_rule='adam', optim_config={'learning_rate': 1e-2},
                    lr_decay=0.9, batch_size=20, num_epochs=3, print_every=5)
    assert solver._engine is not None
    solver.train()
    out = capsys.readouterr().out
    assert '(Iteration 1 / 30) loss: ' in out and '(Iteration 26 / 30) loss: ' in out
    assert '(Epoch 0 / 3) train acc: ' in out and '(Epoch 3 / 3) train acc: ' in out
    assert len(solver.loss_history) == 30
    # the first iteration's check, then one per epoch, as the course's
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 4
    assert solver.loss_history[-1] < solver.loss_history[0]
    assert solver.train_acc_history[-1] > 0.8 and solver.best_val_acc > 0.8
    assert solver.best_val_acc == max(solver.val_acc_history[1:])
    assert sorted(solver.best_params) == sorted(model.params)
    # the best parameters are in the model
    for k, v in solver.best_params.items():
        np.testing.assert_array_equal(v, model.params[k])
    assert solver.check_accuracy(data['X_val'], data['y_val']) == solver.best_val_acc


def test_python_loop_histories(capsys):
    class Softmax:
        """A model that is not dasecv's: the course's loop in numpy."""
        def __init__(self, D, C):
            self.params = {'W': 1e-3 * np.random.default_rng(0).standard_normal((D, C)),
                           'b': np.zeros(C)}

        def loss(self, X, y=None):
            X = X.reshape(X.shape[0], -1)
            s = X @ self.params['W'] + self.params['b']
            if y is None:
                return s
            s = s - s.max(axis=1, keepdims=True)
            p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
            loss = -np.log(p[np.arange(len(y)), y]).mean()
            p[np.arange(len(y)), y] -= 1
            return loss, {'W': X.T @ p / len(y), 'b': p.mean(axis=0)}

    data = toy_data()
    model = Softmax(3 * 8 * 8, 4)
    np.random.seed(1)
    solver = Solver(model, data, update_rule='sgd_momentum',
                    optim_config={'learning_rate': 1e-2}, batch_size=20, num_epochs=2,
                    print_every=100)
    assert solver._engine is None
    solver.train()
    out = capsys.readouterr().out
    assert out.count('(Iteration') == 1 and out.count('(Epoch') == 3
    assert len(solver.loss_history) == 20 and len(solver.train_acc_history) == 3
    assert solver.loss_history[-1] < solver.loss_history[0]
    assert solver.best_val_acc > 0.8


def test_optim_rules():
    w, dw = np.linspace(-1, 1, 6), np.linspace(0.5, -0.5, 6)
    nw, c = optim.sgd(w.copy(), dw)
    np.testing.assert_allclose(nw, w - 1e-2 * dw)
    nw, c = optim.sgd_momentum(w, dw, {'learning_rate': 0.1, 'velocity': np.ones(6)})
    np.testing.assert_allclose(nw, w + 0.9 - 0.1 * dw)
    nw, c = optim.rmsprop(w, dw, {'learning_rate': 0.1})
    np.testing.assert_allclose(c['cache'], 0.01 * dw * dw)
    np.testing.assert_allclose(nw, w - 0.1 * dw / (np.sqrt(0.01 * dw * dw) + 1e-8))
    nw, c = optim.adam(w, dw, {'learning_rate': 0.1})
    assert c['t'] == 1
    # the first bias-corrected step is lr * sign(dw) (for |dw| >> epsilon)
    np.testing.assert_allclose(nw, w - 0.1 * np.sign(dw), rtol=1e-6)


def test_engine_and_numpy_adam_agree():
    """One full-batch Adam step in C and in numpy from the same parameters."""
    data = toy_data(n_train=20, n_val=10)
    a = small_cnn(seed=4, dtype=np.float64)
    before = {k: v.copy() for k, v in a.params.items()}
    loss, grads = a.loss(data['X_train'], data['y_train'])
    s = dasecv.Solver(a, data, update_rule='adam', optim_config={'learning_rate': 1e-3},
                      batch_size=20, num_epochs=1, verbose=False)
    s.train()
    assert len(s.loss_history) == 1 and abs(s.loss_history[0] - loss) < 1e-12
    # one step of one epoch: the permutation does not change a full batch; the
    # best parameters (the model's at the end) are those after the step
    assert s.best_val_acc > 0
    for k in before:
        want, _ = optim.adam(before[k], grads[k], {'learning_rate': 1e-3})
        np.testing.assert_allclose(a.params[k], want, rtol=1e-9, atol=1e-12)


def test_checkpoint_resume_bit_for_bit(tmp_path):
    data = toy_data()
    kw = dict(update_rule='rmsprop', optim_config={'learning_rate': 1e-3}, batch_size=25,
              verbose=False, seed=9)
    straight = dasecv.Solver(small_cnn(seed=2), data, num_epochs=3, **kw)
    straight.train()
    first = dasecv.Solver(small_cnn(seed=2), data, num_epochs=1, **kw)
    first.train()
    path = str(tmp_path / 'run.ckpt')
    first.save(path)
    resumed = dasecv.Solver.load(path, data, num_epochs=3, verbose=False)
    assert resumed.iteration == 8
    assert resumed.train()
    assert resumed.loss_history == straight.loss_history
    assert resumed.val_acc_history == straight.val_acc_history[1:]
    for k, v in straight.model.engine_model.params.items():
        np.testing.assert_array_equal(resumed.model.params[k], v)
    # the checkpoint's model alone
    m = dasecv.Model(path)
    assert m.loss(data['X_val'][:3]).shape == (3, 4)
    with pytest.raises(ValueError, match='trained on 200 images'):
        dasecv.Solver.load(path, toy_data(n_train=100))


def test_callback_stops_and_raises():
    data = toy_data()
    seen = []

    def stop_at_3(p):
        seen.append(p['iteration'])
        return p['iteration'] < 3

    s = dasecv.Solver(small_cnn(), data, batch_size=20, num_epochs=2, verbose=False,
                      callback=stop_at_3)
    assert s.train() is False
    assert seen == [1, 2, 3] and s.iteration == 3 and len(s.loss_history) == 3
    s.callback = None
    assert s.train() is True and s.iteration == 20

    def boom(p):
        raise KeyError('from the callback')

    s = dasecv.Solver(small_cnn(), data, batch_size=20, num_epochs=1, verbose=False,
                      callback=boom)
    with pytest.raises(KeyError, match='from the callback'):
        s.train()
    assert s.iteration == 1


def test_gil_released_while_training():
    # enough steps (600) that a thread ticking every millisecond gets many
    # ticks in if, and only if, the GIL is released while they run
    data = toy_data(n_train=2000)
    s = dasecv.Solver(small_cnn(), data, batch_size=10, num_epochs=3, verbose=False)
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    # With a switch interval of seconds, the interpreter never takes the GIL
    # from a thread that holds it: the ticker runs during training only if
    # the C loop lets go of it (the progress callbacks run Python code, and
    # at the default 5 ms interval they would hand the ticker turns anyway).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    t = threading.Thread(target=count)
    t.start()
    try:
        s.train()
    finally:
        done.set()
        t.join()
        sys.setswitchinterval(interval)
    assert len(ticks) > 5


def test_float32_data_and_flat_rows():
    data = toy_data()
    data32 = {k: v.astype(np.float32) if k.startswith('X') else v for k, v in data.items()}
    flat = {k: v.reshape(v.shape[0], -1) if k.startswith('X') else v
            for k, v in data32.items()}
    model = FullyConnectedNet([30], input_dim=3 * 8 * 8, num_classes=4, seed=0)
    s = Solver(model, flat, update_rule='adam', optim_config={'learning_rate': 1e-3},
               batch_size=20, num_epochs=2, verbose=False)
    s.train()
    assert s.best_val_acc > 0.8


def test_solver_bad_inputs():
    data = toy_data()
    m = small_cnn()
    with pytest.raises(ValueError, match='Unrecognized arguments "lr"'):
        Solver(m, data, lr=1)
    with pytest.raises(ValueError, match='update_rule'):
        Solver(m, data, update_rule='lbfgs')
    with pytest.raises(ValueError, match='optim_config'):
        dasecv.Solver(m, data, optim_config={'learningrate': 1})
    with pytest.raises(ValueError, match='X_train'):
        dasecv.Solver(m, {'X_train': data['X_train']})
    bad = dict(data, X_train=data['X_train'][:, :, :4])
    with pytest.raises(ValueError, match=r'X_train must be \(N, 3, 8, 8\)'):
        dasecv.Solver(m, bad)
    bad = dict(data, y_val=data['y_val'] + 4)
    with pytest.raises(ValueError, match='y_val'):
        dasecv.Solver(m, bad)
    bad = dict(data, y_train=data['y_train'][:10])
    with pytest.raises(ValueError, match='200 labels'):
        dasecv.Solver(m, bad)
    with pytest.raises(ValueError, match='batch_size'):
        dasecv.Solver(m, data, batch_size=0)
    with pytest.raises(ValueError, match='learning_rate'):
        dasecv.Solver(m, data, optim_config={'learning_rate': -1})
    with pytest.raises(TypeError, match='callable'):
        dasecv.Solver(m, data, callback=3)
    with pytest.raises(TypeError, match='dasecv.Model'):
        dasecv.Solver(object(), data)
    # divergence is an error naming the cause, the model left finite
    s = dasecv.Solver(small_cnn(), data, update_rule='sgd', verbose=False,
                      optim_config={'learning_rate': 1e30}, batch_size=20, num_epochs=1)
    with pytest.raises(ValueError, match='diverged'):
        s.train()
    assert all(np.isfinite(v).all() for v in s.model.params.values())
