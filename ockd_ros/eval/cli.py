"""Command-line entry points: `ockd-eval bop` (pose accuracy on a BOP dataset) and
`ockd-templates build` (template banks into the cache).

    ockd-eval bop --dataset ../shared/data/lmo --split test --backend sift --out outputs/lmo_sift
    ockd-templates build --objects ketchup milk --backend sift
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ockd_ros.command_line import one_line_errors
from ockd_ros.config import load_config, merge_config
from ockd_ros.eval.bop_eval import BopEvalConfig, evaluate_bop
from ockd_ros.features import BACKENDS, takes_device
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.pose.estimator import Estimator, EstimatorConfig, default_config
from ockd_ros.pose.templates import cache_path, default_cache_dir


@dataclass(frozen=True)
class TemplatesBuildConfig:
    objects: tuple[str, ...] = ()  # default object names or mesh paths
    units: str = "mm"  # units of mesh paths
    symmetric: bool = False  # for mesh paths
    estimator: EstimatorConfig = field(default_factory=lambda: default_config("ockd"))


def build_templates(conf: TemplatesBuildConfig) -> Path:
    """Build (or find cached) template banks for `conf.objects`; returns the cache folder."""
    if not conf.objects:
        raise ValueError("no objects given")
    if conf.estimator.cache_dir == "":
        raise ValueError("building templates needs a cache folder (cache_dir is '')")
    objects = [
        load_object(resolve_object(name, units=conf.units, symmetric=conf.symmetric))
        for name in conf.objects
    ]
    estimator = Estimator(conf.estimator, objects, progress=True)
    cache_dir = Path(conf.estimator.cache_dir or default_cache_dir())
    print(f"{'object':<24} {'templates':>9} {'keypoints':>9} {'build s':>8}  file")
    for name, bank in estimator.banks.items():
        state = f"{bank.build_seconds:8.1f}" if name in estimator.built else f"{'cached':>8}"
        path = cache_path(cache_dir, name, bank.backend, bank.key)
        print(f"{name:<24} {bank.num_templates:>9} {len(bank.template_ids):>9} {state}  {path}")
    return cache_dir


def _config_backend(path: str) -> str:
    with open(path) as stream:
        raw = yaml.safe_load(stream) or {}
    return raw.get("backend", "ockd") if isinstance(raw, dict) else "ockd"


def estimator_config_from_args(args: argparse.Namespace) -> EstimatorConfig:
    # The backend picks the defaults (`default_config`) that the YAML file then overrides.
    backend = args.backend or (_config_backend(args.config) if args.config else "ockd")
    conf = default_config(backend)
    if args.config:
        conf = load_config(conf, args.config)
    overrides: dict = {"backend": backend, "features": {}, "templates": {}}
    if args.device and takes_device(backend):
        overrides["features"]["device"] = args.device
    if args.views is not None:
        overrides["templates"]["views"] = args.views
    if args.hemisphere:
        overrides["templates"]["hemisphere"] = True
    if args.cache_dir is not None:
        overrides["cache_dir"] = args.cache_dir
    return merge_config(conf, overrides)


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="default: ockd")
    parser.add_argument("--config", type=Path, help="YAML overrides of EstimatorConfig")
    parser.add_argument("--views", type=int, help="viewpoints per object (default 96)")
    parser.add_argument("--hemisphere", action="store_true", help="views from above only")
    parser.add_argument("--cache-dir", help=f"template cache (default {default_cache_dir()})")
    parser.add_argument("--device", help="torch device for ockd and xfeat: auto, cpu, cuda")


def eval_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ockd-eval", description="Evaluate pose estimation.")
    commands = parser.add_subparsers(dest="command", required=True)
    bop = commands.add_parser("bop", help="ADD / ADD-S on a BOP-format dataset")
    bop.add_argument("--dataset", type=Path, required=True)
    bop.add_argument("--split", default="test")
    bop.add_argument("--out", type=Path, required=True)
    bop.add_argument("--objects", type=int, nargs="+", default=[], help="object ids (default all)")
    bop.add_argument("--max-frames", type=int)
    bop.add_argument("--overlays", type=int, default=BopEvalConfig.overlays)
    add_estimator_arguments(bop)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with one_line_errors("ockd-eval"):
        conf = BopEvalConfig(
            dataset=str(args.dataset),
            split=args.split,
            objects=tuple(args.objects),
            max_frames=args.max_frames,
            overlays=args.overlays,
            estimator=estimator_config_from_args(args),
        )
        evaluate_bop(
            conf, args.out, shlex.join(["ockd-eval", *(sys.argv[1:] if argv is None else argv)])
        )


def templates_cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ockd-templates", description="Template banks.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the template banks of objects into the cache")
    build.add_argument("--objects", nargs="+", required=True, help="default names or mesh paths")
    build.add_argument("--units", default="mm", help="units of mesh paths: m, cm or mm")
    build.add_argument("--symmetric", action="store_true", help="mesh paths are symmetric objects")
    add_estimator_arguments(build)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with one_line_errors("ockd-templates"):
        conf = TemplatesBuildConfig(
            objects=tuple(args.objects),
            units=args.units,
            symmetric=args.symmetric,
            estimator=estimator_config_from_args(args),
        )
        build_templates(conf)


if __name__ == "__main__":
    (templates_cli if sys.argv[1:2] == ["build"] else eval_cli)()
