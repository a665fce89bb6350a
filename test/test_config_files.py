"""The shipped parameter file sets every parameter the node declares, and the node accepts it."""

from pathlib import Path

import rclpy
import yaml
from rclpy.node import Node

from ockd_ros.ros.parameters import PARAMETERS_BY_NAME, declare_parameters

CONFIG = Path(__file__).resolve().parent.parent / "config" / "pose.yaml"
NODE_NAME = "ockd_pose_node"


def test_pose_yaml_sets_every_parameter_with_a_valid_value():
    values = yaml.safe_load(CONFIG.read_text())[NODE_NAME]["ros__parameters"]
    assert set(values) == set(PARAMETERS_BY_NAME)
    # Read as the node reads it: rclpy parses the file, the declarations check types and ranges.
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(CONFIG)], context=context)
    try:
        node = Node(NODE_NAME, context=context)
        assert declare_parameters(node) == []
        assert {name: node.get_parameter(name).value for name in values} == values
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
