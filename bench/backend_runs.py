"""Which backends a bench compares in one run: `ockd` once per checkpoint, then the baselines.

    --checkpoint ockd_ros/weights/ockd_default.pt runs/imagenet/final.pt --baselines sift

gives the rows `ockd weights/ockd_default`, `ockd imagenet/final` and `sift`, each with its
backend's defaults (`default_config`) and only the checkpoint changed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ockd_ros.config import merge_config
from ockd_ros.pose import EstimatorConfig, default_config


@dataclass(frozen=True)
class BackendRun:
    label: str  # the row name in the tables
    backend: str
    features: dict = field(default_factory=dict)  # overrides of the backend's feature config
    settings: dict = field(default_factory=dict)  # further EstimatorConfig overrides (--config)

    def config(self, overrides: dict | None = None) -> EstimatorConfig:
        """The backend's default estimator config with this run's features and settings, then
        `overrides`."""
        conf = merge_config(default_config(self.backend), {"features": self.features})
        for extra in (self.settings, overrides):
            if extra:
                conf = merge_config(conf, extra)
        return conf


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        default=None,
        help="ockd weights, one row each (default: the shipped ones)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML overrides of EstimatorConfig for the ockd rows (templates: {size: 160}, ...)",
    )
    parser.add_argument(
        "--baselines", nargs="*", default=["sift"], help="other backends to run (sift, xfeat)"
    )


def backend_runs(args: argparse.Namespace, device: str | None = None) -> list[BackendRun]:
    """The runs `add_arguments`' options ask for; `device` goes to every learned backend."""
    checkpoints = args.checkpoint or [None]
    placement = {"device": device} if device else {}
    settings = yaml.safe_load(args.config.read_text()) if args.config else {}
    runs = [
        BackendRun(
            _label(checkpoint) if len(checkpoints) > 1 else "ockd",
            "ockd",
            {**placement, **({"checkpoint": checkpoint} if checkpoint else {})},
            settings or {},
        )
        for checkpoint in checkpoints
    ]
    for backend in args.baselines:
        runs.append(BackendRun(backend, backend, placement if backend != "sift" else {}))
    return runs


def _label(checkpoint: str | None) -> str:
    if checkpoint is None:
        return "ockd shipped"
    return "ockd " + "/".join(Path(checkpoint).with_suffix("").parts[-2:])
