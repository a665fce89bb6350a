"""The one mapping of flat settings (node parameters, `--config` keys) onto EstimatorConfig."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import rclpy
import yaml
from rclpy.node import Node

from ockd_ros.eval.cli import add_estimator_arguments, estimator_config_from_args
from ockd_ros.features import BACKENDS
from ockd_ros.pose.estimator import EstimatorConfig, default_config
from ockd_ros.ros.parameters import declare_parameters, estimator_settings
from ockd_ros.settings import (
    DEFAULTS,
    SETTINGS,
    estimator_config,
    split_config,
)

# A value other than the default for settings of every kind: top level, nested sections, a
# feature of one backend, a feature of every backend, a vector, a "keep the backend's" value.
CHANGED = {
    "frame_scale": 2.0,
    "min_inliers": 20,
    "max_ratio": 0.7,
    "templates_per_object": 24,
    "templates_hemisphere": True,
    "templates_up": [0.0, 1.0, 0.0],
    "templates_scales": [1.0, 0.5, 0.25],
    "max_keypoints": 800,
    "r_thr": 2.0,
    "reprojection_error": 6.0,
    "bank_precision": "float16",
}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_the_defaults_keep_each_backends_own_config(backend):
    """The node passes every setting, at its default unless set; a CLI passes only those given.
    Both must give the backend's defaults."""
    assert estimator_config({"backend": backend}) == default_config(backend)
    assert estimator_config(DEFAULTS | {"backend": backend}) == default_config(backend)


def _field_exists(field: str) -> bool:
    section, _, key = field.partition(".")
    if section == "features":
        return any(key in {f.name for f in dataclasses.fields(cls)} for _, cls in BACKENDS.values())
    value = EstimatorConfig()
    for part in field.split("."):
        if not hasattr(value, part):
            return False
        value = getattr(value, part)
    return True


def test_every_setting_names_a_field_of_the_config():
    assert [s.name for s in SETTINGS if not _field_exists(s.field)] == []


def test_settings_reach_their_fields_for_the_backends_that_have_them():
    sift = estimator_config(CHANGED | {"backend": "sift"})
    assert sift.frame_scale == 2.0
    assert sift.pnp.min_inliers == 20 and sift.pnp.reprojection_error == 6.0
    assert sift.matching.max_ratio == 0.7 and sift.matching.bank_precision == "float16"
    assert sift.templates.views == 24 and sift.templates.hemisphere
    assert sift.templates.up == (0.0, 1.0, 0.0)
    assert sift.templates.scales == (1.0, 0.5, 0.25)
    assert sift.features == {"max_keypoints": 800}  # r_thr is ockd's: SIFT has none
    ockd = estimator_config(CHANGED | {"backend": "ockd"})
    assert ockd.features == default_config("ockd").features | {"max_keypoints": 800, "r_thr": 2.0}
    # 0 keeps the backend's own
    kept = estimator_config({"backend": "ockd", "min_inliers": 0}).pnp.min_inliers
    assert kept == default_config("ockd").pnp.min_inliers
    kept = estimator_config({"backend": "ockd", "templates_scales": [0.0]}).templates.scales
    assert kept == default_config("ockd").templates.scales
    one = estimator_config({"backend": "ockd", "templates_scales": [1.0]}).templates.scales
    assert one == (1.0,)


def test_invalid_settings_are_refused_with_every_reason():
    with pytest.raises(ValueError) as refused:
        estimator_config(
            {
                "frame_scale": 5.0,
                "min_inliers": 3,
                "templates_per_object": "many",
                "templates_scales": [1.0, 2.0],
                "backend": "orb",
                "bank_precision": "int8",
            }
        )
    message = str(refused.value)
    assert "frame_scale=5.0 must be in [0.25, 4]" in message
    assert "min_inliers=3 must be 0 or ≥ 4" in message
    assert "templates_per_object='many' must be an integer" in message
    assert "backend='orb' must be one of" in message
    assert "bank_precision='int8' must be one of" in message
    assert "templates_scales=[1.0, 2.0] must be scales in [0.1, 1]" in message
    with pytest.raises(ValueError, match="templates_scales=\\[\\] must be a list of numbers"):
        estimator_config({"templates_scales": []})
    # what the config's own validation refuses, beyond any one setting
    with pytest.raises(ValueError, match="up must be a finite non-zero vector"):
        estimator_config({"templates_up": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match=r"unknown settings \['frame_scal'\]"):
        estimator_config({"frame_scal": 2.0})


def test_a_config_file_takes_flat_names_and_sections():
    flat, sections = split_config({"frame_scale": 2.0, "pnp": {"method": "epnp"}})
    assert (flat, sections) == ({"frame_scale": 2.0}, {"pnp": {"method": "epnp"}})
    conf = estimator_config(flat, sections)
    assert conf.frame_scale == 2.0 and conf.pnp.method == "epnp"
    with pytest.raises(ValueError, match=r"unknown settings \['pnp_method'\]"):
        split_config({"pnp_method": "epnp"})


def _cli_config(tmp_path, settings: dict, *options: str) -> EstimatorConfig:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    parser = argparse.ArgumentParser()
    add_estimator_arguments(parser)
    return estimator_config_from_args(parser.parse_args(["--config", str(path), *options]))


def _node_config(tmp_path, settings: dict) -> EstimatorConfig:
    """The config the node builds from a parameter file with `settings`: rclpy parses the file,
    the node's declarations read it, the node's settings go through the mapping."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"ockd_pose_node": {"ros__parameters": settings}}))
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(path)], context=context)
    try:
        node = Node("ockd_pose_node", context=context)
        assert declare_parameters(node) == []
        conf = estimator_config(estimator_settings(node))
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return conf


@pytest.mark.parametrize("backend", ["ockd", "sift"])
def test_the_node_and_the_cli_give_the_same_config_for_the_same_settings(tmp_path, backend):
    settings = CHANGED | {"backend": backend}
    from_cli = _cli_config(tmp_path, settings)
    assert from_cli == _node_config(tmp_path, settings)
    assert from_cli != default_config(backend)  # the settings were applied, not ignored
    # the CLI's own options are the same settings
    options = ["--views", "24", "--hemisphere", "--backend", backend]
    rest = {k: v for k, v in settings.items() if k not in ("templates_per_object", "backend")}
    assert _cli_config(tmp_path, rest | {"templates_hemisphere": False}, *options) == from_cli
