"""Sim2real training: synthetic scene generation, pair loading, losses and the training loop.

Installed as `ockd_ros.training` (see setup.py); it imports no ROS.
"""
