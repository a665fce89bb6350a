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

from ockd_ros.command_line import one_line_errors
from ockd_ros.eval.bop_eval import BopEvalConfig, evaluate_bop
from ockd_ros.features import BACKENDS
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.pose.estimator import Estimator, EstimatorConfig, default_config
from ockd_ros.pose.templates import cache_path, default_cache_dir
from ockd_ros.settings import estimator_config, load_settings


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


def estimator_config_from_args(args: argparse.Namespace) -> EstimatorConfig:
    """The estimator config of `add_estimator_arguments`' options: the `--config` file's flat
    settings and sections, then the options, through the mapping the node uses too."""
    settings, sections = load_settings(args.config) if args.config else ({}, {})
    options = {
        "backend": args.backend,
        "device": args.device,
        "templates_per_object": args.views,
        "templates_hemisphere": args.hemisphere or None,
        "cache_dir": args.cache_dir,
    }
    settings |= {name: value for name, value in options.items() if value is not None}
    return estimator_config(settings, sections)


def add_estimator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="default: ockd")
    parser.add_argument(
        "--config",
        type=Path,
        help="YAML: the node's estimator parameters (frame_scale: 2.0, min_inliers: 20, ...) "
        "and EstimatorConfig sections (pnp: {reprojection_error: 8.0}, ...)",
    )
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
