"""The shipped parameter file matches the node's declared parameters and passes validation."""

from pathlib import Path

import yaml

from ockd_ros.ros.parameters import PARAMETERS_BY_NAME, validate

CONFIG = Path(__file__).resolve().parent.parent / "config" / "pose.yaml"


def test_pose_yaml_sets_every_parameter_with_a_valid_value():
    values = yaml.safe_load(CONFIG.read_text())["ockd_pose_node"]["ros__parameters"]
    assert set(values) == set(PARAMETERS_BY_NAME)
    for name, value in values.items():
        assert validate(name, value) is None, name
