"""Shared fixtures. ROS tests get a private DDS domain on loopback, set before rclpy is imported."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ockd_ros.ros.domain import private_domain

# A domain of our own per test run (held until pytest exits), discovery kept on this machine:
# parallel runs never cross-talk. The node subprocesses inherit both.
os.environ["ROS_DOMAIN_ID"] = str(private_domain("test"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(scope="session")
def renderer():
    from ockd_ros.render import Renderer

    with Renderer() as shared_renderer:
        yield shared_renderer


@pytest.fixture(scope="session")
def ketchup():
    from ockd_ros.meshes import load_object

    return load_object("ketchup")


@pytest.fixture(scope="session")
def milk():
    from ockd_ros.meshes import load_object

    return load_object("milk")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
