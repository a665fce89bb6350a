from dataclasses import dataclass, field

import pytest

from ockd_ros.config import load_config, merge_config
from ockd_ros.pose import default_config


@dataclass(frozen=True)
class Inner:
    size: int = 3


@dataclass(frozen=True)
class Outer:
    name: str = "a"
    channels: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)
    settings: dict = field(default_factory=lambda: {"stride": 4, "device": "auto"})


def test_merge_overrides_nested_and_converts_lists():
    conf = merge_config(Outer(), {"name": "b", "channels": [4, 5], "inner": {"size": 7}})
    assert conf == Outer("b", (4, 5), Inner(7))


def test_dict_fields_are_updated_not_replaced():
    # A YAML `features: {device: cpu}` must not drop a backend's other feature defaults.
    conf = merge_config(Outer(), {"settings": {"device": "cpu", "extra": 1}})
    assert conf.settings == {"stride": 4, "device": "cpu", "extra": 1}
    assert Outer().settings == {"stride": 4, "device": "auto"}  # the default is not mutated


def test_estimator_yaml_keeps_the_backend_defaults(tmp_path):
    path = tmp_path / "estimator.yaml"
    path.write_text("features:\n  device: cpu\ntemplates:\n  views: 24\n")
    defaults = default_config("ockd")
    conf = load_config(defaults, path)
    assert conf.features == {**defaults.features, "device": "cpu"}
    assert conf.templates.views == 24 and conf.templates.inplane == defaults.templates.inplane


def test_unknown_keys_are_an_error():
    with pytest.raises(ValueError, match="unknown Outer keys \\['nmae'\\]"):
        merge_config(Outer(), {"nmae": "typo"})
    with pytest.raises(ValueError, match="unknown Inner keys"):
        merge_config(Outer(), {"inner": {"sise": 1}})


def test_load_config_reads_yaml(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("name: from_yaml\n")
    assert load_config(Outer(), path).name == "from_yaml"
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config(Outer(), path)
