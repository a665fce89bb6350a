"""Dataclass configs with defaults, overridden from dicts or YAML; unknown keys are an error."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

ConfigT = TypeVar("ConfigT")


def merge_config(default: ConfigT, overrides: dict[str, Any] | None) -> ConfigT:
    """Return a copy of the dataclass `default` with `overrides` applied.

    Nested dataclass fields accept nested dicts; dict fields are updated key by key, so an
    override adds to defaults such as a backend's feature settings instead of dropping them.
    A key the dataclass does not declare raises
    `ValueError` naming the key and the valid ones, so a typo in a YAML file is never ignored.
    """
    if not overrides:
        return dataclasses.replace(default)
    fields = {f.name: f for f in dataclasses.fields(default)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown {type(default).__name__} keys {unknown}; valid keys: {sorted(fields)}"
        )
    changes = {}
    for key, value in overrides.items():
        current = getattr(default, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            value = merge_config(current, value)
        elif isinstance(current, dict) and isinstance(value, dict):
            value = {**current, **value}
        elif isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        changes[key] = value
    return dataclasses.replace(default, **changes)


def load_config(default: ConfigT, path: str | Path) -> ConfigT:
    """Merge the YAML mapping in `path` into the dataclass `default`."""
    path = Path(path)
    with path.open() as stream:
        overrides = yaml.safe_load(stream) or {}
    if not isinstance(overrides, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(overrides)}")
    return merge_config(default, overrides)
