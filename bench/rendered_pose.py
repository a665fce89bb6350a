"""Pose of default objects in rendered scenes, `ockd` against SIFT in one run.

Two rows of objects (macaroni_and_cheese + orange_juice; cream_cheese + ketchup + milk) rendered
over a photo at 0.5 and 0.8 m, one random turn per seed (`ockd_ros.samples.render_sample_scene`):
with the default seeds 0 and 1, 20 object instances at known poses. Each backend runs with its
defaults (`default_config`).
Prints found / within 1 cm and 5° / within 2 cm and 10°, and the median time per frame.

    python bench/rendered_pose.py [--seeds 0 1 2 3] [--checkpoint PT [PT ...]] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from backend_runs import BackendRun, add_arguments, backend_runs
from scipy.spatial.transform import Rotation
from tables import emit_table

from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene

GROUPS = (("macaroni_and_cheese", "orange_juice"), ("cream_cheese", "ketchup", "milk"))
DISTANCES = (0.5, 0.8)


def pose_errors(pose, truth: np.ndarray) -> tuple[float, float]:
    """Translation error (m) and rotation error (degrees)."""
    angle = Rotation.from_matrix(pose.R.T @ truth[:3, :3]).magnitude()
    return float(np.linalg.norm(pose.t - truth[:3, 3])), float(np.degrees(angle))


def run_backend(run: BackendRun, renderer: Renderer, seeds: list[int]) -> dict[str, float]:
    conf = run.config()
    counts = {"instances": 0, "found": 0, "1 cm / 5°": 0, "2 cm / 10°": 0}
    seconds = []
    for names in GROUPS:
        objects = [load_object(name) for name in names]
        estimator = Estimator(conf, objects, renderer=renderer, progress=True)
        for distance in DISTANCES:
            for seed in seeds:
                scene = render_sample_scene(renderer, objects, distance=distance, seed=seed)
                start = time.perf_counter()
                found = {p.name: p for p in estimator.estimate(scene.rgb, scene.K)}
                seconds.append(time.perf_counter() - start)
                for name, truth in zip(names, scene.poses, strict=True):
                    counts["instances"] += 1
                    if name not in found:
                        continue
                    translation, angle = pose_errors(found[name], truth)
                    counts["found"] += 1
                    counts["1 cm / 5°"] += translation < 0.01 and angle < 5
                    counts["2 cm / 10°"] += translation < 0.02 and angle < 10
    return {**counts, "ms per frame": 1000 * float(np.median(seconds))}


def main(args: argparse.Namespace) -> str:
    with Renderer() as renderer:
        results = {run.label: run_backend(run, renderer, args.seeds) for run in backend_runs(args)}
    lines = [
        "| backend | found | within 1 cm / 5° | within 2 cm / 10° | median ms per frame |",
        "|---|---|---|---|---|",
    ]
    for backend, r in results.items():
        n = r["instances"]
        lines.append(
            f"| {backend} | {r['found']}/{n} | {r['1 cm / 5°']}/{n} | {r['2 cm / 10°']}/{n} | "
            f"{r['ms per frame']:.0f} |"
        )
    return emit_table(lines, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="scene seeds")
    add_arguments(parser)
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    main(parser.parse_args())
