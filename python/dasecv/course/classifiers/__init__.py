"""The course's classifiers (classifiers/cnn.py, classifiers/fc_net.py) as
engine models: ``ThreeLayerConvNet``, ``TwoLayerNet``, ``FullyConnectedNet``."""
from .cnn import ThreeLayerConvNet
from .fc_net import FullyConnectedNet, TwoLayerNet

__all__ = ['FullyConnectedNet', 'ThreeLayerConvNet', 'TwoLayerNet']
