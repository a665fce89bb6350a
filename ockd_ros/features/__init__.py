"""Feature backends with one output type: `ockd` (the network), `sift` (the classical baseline)
and `xfeat` (a generic learned feature; optional, its package is imported only when selected)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ockd_ros.config import merge_config
from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.features.sift import SiftConfig, SiftExtractor
from ockd_ros.features.types import FeatureExtractor, Features
from ockd_ros.features.xfeat import XfeatConfig, XfeatExtractor

BACKENDS = {
    "ockd": (OckdExtractor, OckdConfig),
    "sift": (SiftExtractor, SiftConfig),
    "xfeat": (XfeatExtractor, XfeatConfig),
}


def create_extractor(name: str, conf: dict[str, Any] | None = None) -> FeatureExtractor:
    """A feature backend by name with config overrides (unknown keys are an error)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown feature backend {name!r}; available: {sorted(BACKENDS)}")
    extractor_cls, config_cls = BACKENDS[name]
    return extractor_cls(merge_config(config_cls(), conf))


def takes_device(name: str) -> bool:
    """Whether backend `name` runs a network, so has a torch `device` setting (ockd, xfeat)."""
    return any(field.name == "device" for field in dataclasses.fields(BACKENDS[name][1]))


__all__ = ["BACKENDS", "FeatureExtractor", "Features", "create_extractor", "takes_device"]
