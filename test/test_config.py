from dataclasses import dataclass, field

import pytest

from ockd_ros.config import load_config, merge_config


@dataclass(frozen=True)
class Inner:
    size: int = 3


@dataclass(frozen=True)
class Outer:
    name: str = "a"
    channels: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_merge_overrides_nested_and_converts_lists():
    conf = merge_config(Outer(), {"name": "b", "channels": [4, 5], "inner": {"size": 7}})
    assert conf == Outer("b", (4, 5), Inner(7))


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
