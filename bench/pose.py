"""Pose estimation speed on this machine: `ockd` against the SIFT pipeline, same scene, same run.

Renders eight default objects in a 4×2 grid 0.8 m from the camera at 640×480 over a photo, builds
their template banks from scratch with each backend's defaults (`default_config`; 96 views each,
× 4 in-plane turns for `ockd`; build time per object is reported), then times `Estimator.estimate`
for 1, 4 and 8 objects, split into extraction, per-object selection, matching and PnP (medians
after a warm-up). A second table times batched matching alone against 12..96 templates of one
bank, to show how its cost grows with the number of templates.

    python bench/pose.py [--size 640 480] [--views 96] [--repeats 5] [--device cpu] [--threads 1]
        [--checkpoint PT [PT ...]] [--baselines sift xfeat]

`--threads` sets torch's thread count:
when another process keeps a core busy, two OpenMP threads wait on each other and one is faster.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch
from backend_runs import BackendRun, add_arguments, backend_runs
from timing import median_seconds

from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator
from ockd_ros.pose.matching import BankDescriptors, match_templates, select_object
from ockd_ros.render import Renderer
from ockd_ros.samples import default_camera, object_row_poses, photo_background

OBJECTS = (
    "macaroni_and_cheese",
    "orange_juice",
    "milk",
    "butter",
    "ketchup",
    "cream_cheese",
    "tomato_sauce",
    "bbq_sauce",
)
OBJECT_COUNTS = (1, 4, 8)
TEMPLATE_COUNTS = (12, 24, 48, 96)
STEPS = ("extract", "select", "match", "pnp", "total")


def grid_scene(renderer: Renderer, objects, size: tuple[int, int]):
    """RGB (objects over a photo) and K of the objects in a 4×2 grid, randomly turned."""
    K = default_camera(size)
    poses = object_row_poses(objects, 0.8, seed=0)
    for index, pose in enumerate(poses):
        pose[:2, 3] = [(index % 4 - 1.5) * 0.17, (index // 4 - 0.5) * 0.2]
    view = renderer.render(objects, poses, K, size)
    return np.where(view.labels[..., None] > 0, view.rgb, photo_background(size)), K


def time_estimates(estimator: Estimator, rgb, K, names, repeats: int) -> dict[str, float]:
    """Median seconds per step of `estimate` for `names`, and the number of objects found."""
    estimator.estimate(rgb, K, objects=names)  # warm-up: allocation and kernel selection
    runs, found = [], 0
    for _ in range(repeats):
        found = len(estimator.estimate(rgb, K, objects=names))
        runs.append(estimator.last_timing)
    medians = {step: float(np.median([getattr(t, step) for t in runs])) for step in STEPS}
    return {**medians, "found": found}


def time_matching(
    estimator: Estimator, rgb, name: str, repeats: int
) -> list[tuple[int, float, float]]:
    """Median seconds of matching the frame's keypoints on `name` against the first 12, 24, ...
    templates of its bank: batched, and in a Python loop over templates for comparison."""
    features = estimator.extractor.extract(rgb)
    bank = estimator.banks[name]
    threshold = getattr(estimator.extractor.conf, "mask_threshold", 0.5)
    selected = select_object(features, bank.inter_mean, threshold)
    desc, keypoints = features.desc_intra[selected], features.keypoints[selected]
    conf = estimator.conf.matching
    rows = []
    for count in (c for c in TEMPLATE_COUNTS if c <= bank.num_templates):
        subset = bank.subset(range(count))
        bank_desc = BankDescriptors(subset.descriptors, subset.template_ids, count)
        singles = [
            BankDescriptors(one.descriptors, one.template_ids, 1)
            for one in (subset.subset([t]) for t in range(count))
        ]
        batched = median_seconds(
            lambda p=bank_desc: match_templates(desc, p, conf, keypoints), repeats
        )
        looped = median_seconds(
            lambda s=singles: [match_templates(desc, p, conf, keypoints) for p in s], repeats
        )
        rows.append((count, batched, looped))
    return rows


def build(run: BackendRun, objects, renderer, views: int) -> Estimator:
    with tempfile.TemporaryDirectory() as cache_dir:  # a fresh cache: every bank is built
        conf = run.config({"templates": {"views": views}, "cache_dir": cache_dir})
        return Estimator(conf, objects, renderer=renderer, progress=True)


def main(runs: list[BackendRun], size: tuple[int, int], views: int, repeats: int):
    objects = [load_object(name) for name in OBJECTS]
    runs = sorted(runs, key=lambda run: run.backend != "sift")  # the baseline row first
    with Renderer() as renderer:
        rgb, K = grid_scene(renderer, objects, size)
        estimators = {run.label: build(run, objects, renderer, views) for run in runs}
    print(
        f"image {size[0]}×{size[1]}, {views} templates per object, torch threads "
        f"{torch.get_num_threads()}"
    )
    width = max(8, *(len(name) + 1 for name in estimators))
    print("\nbank build per object (s): backend  mean  max  (keypoints per bank, mean)")
    for name, estimator in estimators.items():
        seconds = [bank.build_seconds for bank in estimator.banks.values()]
        rows = np.mean([len(bank.template_ids) for bank in estimator.banks.values()])
        print(f"  {name:<{width}} {np.mean(seconds):6.1f} {np.max(seconds):6.1f}  ({rows:.0f})")
    print(
        f"\n{'backend':<{width}} {'objects':>7} {'extract':>8} {'select':>7} {'match':>7} "
        f"{'pnp':>7} {'total ms':>9} {'found':>5} {'× sift':>7}"
    )
    baseline = {}
    for name, estimator in estimators.items():
        for count in OBJECT_COUNTS:
            row = time_estimates(estimator, rgb, K, list(OBJECTS[:count]), repeats)
            baseline.setdefault(count, row["total"])
            ms = {step: 1000 * row[step] for step in STEPS}
            print(
                f"{name:<{width}} {count:>7} {ms['extract']:>8.0f} {ms['select']:>7.1f} "
                f"{ms['match']:>7.0f} {ms['pnp']:>7.0f} {ms['total']:>9.0f} {row['found']:>5} "
                f"{row['total'] / baseline[count]:>7.2f}"
            )
    print(f"\nbatched matching against n templates of {OBJECTS[0]} (median ms):")
    print(
        f"{'backend':<{width}} {'templates':>9} {'batched':>8} {'ms / template':>14} "
        f"{'vs linear':>10} {'loop':>8}"
    )
    for name, estimator in estimators.items():
        rows = time_matching(estimator, rgb, OBJECTS[0], repeats)
        first_count, first_seconds, _ = rows[0]
        for count, seconds, looped in rows:
            linear = first_seconds * count / first_count
            print(
                f"{name:<{width}} {count:>9} {1000 * seconds:>8.1f} "
                f"{1000 * seconds / count:>14.3f} {seconds / linear:>10.2f} {1000 * looped:>8.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--views", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    main(backend_runs(args, args.device), tuple(args.size), args.views, args.repeats)
