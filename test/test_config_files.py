"""The shipped config files: the parameter file the node accepts, the RViz file and the launch
file that must agree on names (`launch` itself is not installable here: its file is parsed)."""

import ast
from pathlib import Path

import rclpy
import yaml
from rclpy.node import Node

from ockd_ros.ros.parameters import PARAMETERS_BY_NAME, declare_parameters

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "pose.yaml"
RVIZ = REPO / "config" / "ockd.rviz"
LAUNCH = REPO / "launch" / "pose.launch.py"
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


def _rviz_topics(config) -> set[str]:
    """Every display's topic in an RViz config (`Topic: {Value: name, ...}`), at any depth."""
    if isinstance(config, list):
        return set().union(*map(_rviz_topics, config))
    if not isinstance(config, dict):
        return set()
    topic = config.get("Topic")
    own = {topic["Value"]} if isinstance(topic, dict) else set()
    return own.union(*map(_rviz_topics, config.values()))


def test_rviz_topics_are_relative_so_they_follow_the_namespace():
    # RViz resolves a relative name in its own namespace, which the launch file sets to the
    # node's (below); an absolute name would stay outside it.
    topics = _rviz_topics(yaml.safe_load(RVIZ.read_text()))
    assert topics == {"debug_image", "object_markers"}
    assert not any(topic.startswith(("/", "~")) for topic in topics)


def _namespace_by_executable() -> dict[str, str]:
    """The launch argument each launched Node's namespace comes from, by executable."""
    namespaces = {}
    for call in ast.walk(ast.parse(LAUNCH.read_text())):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Node"):
            continue
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        namespace = keywords.get("namespace")
        is_argument = isinstance(namespace, ast.Call) and namespace.func.id == "LaunchConfiguration"
        namespaces[keywords["executable"].value] = namespace.args[0].value if is_argument else None
    return namespaces


def test_launch_file_starts_rviz_in_the_namespace_of_the_node():
    assert _namespace_by_executable() == {"pose_node": "namespace", "rviz2": "namespace"}
