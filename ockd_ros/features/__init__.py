"""Feature backends with one output type: `ockd` (the network) and `sift` (the baseline)."""

from __future__ import annotations

from typing import Any

from ockd_ros.config import merge_config
from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.features.sift import SiftConfig, SiftExtractor
from ockd_ros.features.types import FeatureExtractor, Features

BACKENDS = {"ockd": (OckdExtractor, OckdConfig), "sift": (SiftExtractor, SiftConfig)}


def create_extractor(name: str, conf: dict[str, Any] | None = None) -> FeatureExtractor:
    """A feature backend by name with config overrides (unknown keys are an error)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown feature backend {name!r}; available: {sorted(BACKENDS)}")
    extractor_cls, config_cls = BACKENDS[name]
    return extractor_cls(merge_config(config_cls(), conf))


__all__ = ["BACKENDS", "FeatureExtractor", "Features", "create_extractor"]
