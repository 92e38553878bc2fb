"""The daseCV course's layer modules (CS231n assignment 2), run by the engine.

``layers``, ``fast_layers``, ``layer_utils`` and ``gradient_check`` keep the
course's names, signatures and conventions: ``(out, cache)`` pairs,
``conv_param``/``pool_param``/``bn_param``/``gn_param``/``dropout_param``
dicts, running statistics kept in ``bn_param``, dropout's ``p`` the
probability of keeping a unit, ``mode`` 'train' or 'test'. A notebook switches
with ``from dasecv.course.layers import *`` in place of the course's imports.

``optim`` (sgd, sgd_momentum, rmsprop, adam in numpy), ``solver.Solver``
(the course's; the loop runs in C when the model is dasecv's),
``classifiers`` (ThreeLayerConvNet, TwoLayerNet, FullyConnectedNet as engine
models whose ``params`` W1, b1, ... are views of the engine's), ``data_utils``
(get_CIFAR10_data from $DASECV_CIFAR10_DIR) and ``vis_utils``
(visualize_grid) complete the course's package.
"""
