"""The main demo: render default objects at known poses over a real photo, estimate their poses
with the `ockd` pipeline and the SIFT baseline (or any `--backends`), print per-object errors and
timings, and write an overlay PNG (keypoints, estimated boxes and axes).

    python -m ockd_ros.demo --out outputs/demo [--backends ockd sift xfeat]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ockd_ros.command_line import one_line_errors
from ockd_ros.config import merge_config
from ockd_ros.eval.metrics import add_error, adds_error
from ockd_ros.features import BACKENDS, takes_device
from ockd_ros.meshes import ObjectMesh, load_object
from ockd_ros.pose import Estimator, ObjectPose, default_config
from ockd_ros.render import Renderer
from ockd_ros.samples import SampleScene, render_sample_scene
from ockd_ros.visualize import caption, draw_pose, object_color, side_by_side, write_rgb


@dataclass(frozen=True)
class DemoConfig:
    objects: tuple[str, ...] = ("cream_cheese", "ketchup", "macaroni_and_cheese")
    size: tuple[int, int] = (640, 480)
    distance: float = 0.5  # metres from the camera to the row of objects
    backends: tuple[str, ...] = ("ockd", "sift")  # one panel each, in this order
    device: str = "auto"
    templates: int = 96
    seed: int = 0


@dataclass
class BackendResult:
    name: str
    poses: dict[str, ObjectPose]
    seconds: float
    keypoints: int


def main(conf: DemoConfig, out_dir: Path) -> Path:
    """Run the demo; returns the path of the overlay PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = [load_object(name) for name in conf.objects]
    results = []
    with Renderer() as renderer:
        scene = render_sample_scene(renderer, objects, conf.size, distance=conf.distance,
                                    seed=conf.seed)  # fmt: skip
        for backend in conf.backends:
            results.append(_run_backend(backend, objects, scene, renderer, conf))
    overlay = out_dir / "poses.png"
    write_rgb(overlay, side_by_side([_panel(scene, objects, result) for result in results]))
    _print_table(objects, scene, results)
    print(f"overlay: {overlay}")
    return overlay


def _run_backend(backend, objects, scene: SampleScene, renderer, conf) -> BackendResult:
    device = {"device": conf.device} if takes_device(backend) else {}
    estimator_conf = merge_config(
        default_config(backend), {"features": device, "templates": {"views": conf.templates}}
    )
    start = time.perf_counter()
    estimator = Estimator(estimator_conf, objects, renderer=renderer, progress=True)
    if estimator.built:
        print(f"{backend}: built template banks in {time.perf_counter() - start:.1f} s")
    estimator.estimate(scene.rgb, scene.K)  # warm-up: the first call allocates
    start = time.perf_counter()
    poses = estimator.estimate(scene.rgb, scene.K)
    seconds = time.perf_counter() - start
    keypoints = len(estimator.extractor.extract(scene.rgb))
    return BackendResult(backend, {p.name: p for p in poses}, seconds, keypoints)


def _panel(scene: SampleScene, objects: list[ObjectMesh], result: BackendResult) -> np.ndarray:
    canvas = scene.rgb.copy()
    for index, obj in enumerate(objects):
        pose = result.poses.get(obj.name)
        if pose is not None:
            label = f"{obj.name} ({pose.inliers})"
            draw_pose(canvas, scene.K, pose.matrix, obj.mesh.bounds, object_color(index), label,
                      pose.keypoints)  # fmt: skip
    found = f"{len(result.poses)}/{len(objects)} found"
    return caption(canvas, f"{result.name}: {found}, {1000 * result.seconds:.0f} ms")


def _print_table(objects, scene: SampleScene, results: list[BackendResult]) -> None:
    print(f"{'object':<22}" + "".join(f"{r.name + ' ADD-S (mm)':>18}" for r in results))
    for obj, T_true in zip(objects, scene.poses, strict=True):
        points = obj.sample_points(500)
        row = f"{obj.name:<22}"
        for result in results:
            pose = result.poses.get(obj.name)
            if pose is None:
                row += f"{'not found':>18}"
                continue
            error = adds_error(pose.R, pose.t, T_true[:3, :3], T_true[:3, 3], points)
            add = add_error(pose.R, pose.t, T_true[:3, :3], T_true[:3, 3], points)
            row += f"{1000 * error:>9.1f} (ADD {1000 * add:.0f})"
        print(row)
    print(f"{'time per frame (ms)':<22}" + "".join(f"{1000 * r.seconds:>18.0f}" for r in results))
    print(f"{'keypoints per frame':<22}" + "".join(f"{r.keypoints:>18}" for r in results))


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--backends", nargs="+", default=list(DemoConfig.backends),
                        choices=sorted(BACKENDS))  # fmt: skip
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1")
    parser.add_argument("--objects", nargs="+", default=list(DemoConfig.objects))
    args = parser.parse_args(argv)
    conf = DemoConfig(
        objects=tuple(args.objects), backends=tuple(args.backends), device=args.device
    )
    with one_line_errors("ockd-demo"):
        main(conf, args.out)


if __name__ == "__main__":
    cli()
