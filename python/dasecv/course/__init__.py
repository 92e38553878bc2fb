"""The daseCV course's layer modules (CS231n assignment 2), run by the engine.

``layers``, ``fast_layers``, ``layer_utils`` and ``gradient_check`` keep the
course's names, signatures and conventions: ``(out, cache)`` pairs,
``conv_param``/``pool_param``/``bn_param``/``gn_param``/``dropout_param``
dicts, running statistics kept in ``bn_param``, dropout's ``p`` the
probability of keeping a unit, ``mode`` 'train' or 'test'. A notebook switches
with ``from dasecv.course.layers import *`` in place of the course's imports.
"""
