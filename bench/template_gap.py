"""How far from its own templates can a backend still find an object? `ockd` against SIFT.

The frame is one of the object's upright templates re-rendered (256², the templates' K; both
backends' banks hold these views), then moved away from the bank step by step: the template
view itself on black, turned in-plane, over a photo background, both, and a viewpoint halfway to
the neighbouring template. Each condition runs over several templates; the table gives how many
gave a pose within 1 cm and 5° and the median PnP inliers (0 when no pose). It locates the
template-to-scene gap: where `ockd` stops and SIFT does not.

    python bench/template_gap.py [--object macaroni_and_cheese] [--templates 8] [--checkpoint PT]
                                 [--max-ratio R]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.config import merge_config
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator, TemplateConfig, default_config
from ockd_ros.pose.templates import template_poses
from ockd_ros.render import Renderer
from ockd_ros.samples import default_camera, photo_background

BACKENDS = ("ockd", "sift")
FRAME_SIZE = 256  # the side of both backends' templates


@dataclass(frozen=True)
class Condition:
    name: str
    spin_deg: float = 0.0  # in-plane turn about the optical axis
    tilt_deg: float = 0.0  # viewpoint change about the camera's x axis (through the object)
    photo: bool = False  # a photo behind the object instead of the templates' black


CONDITIONS = (
    Condition("template view"),
    Condition("turned 10°", spin_deg=10),
    Condition("turned 30°", spin_deg=30),
    Condition("photo background", photo=True),
    Condition("photo, turned 10°", spin_deg=10, photo=True),
    Condition("viewpoint 10° off", tilt_deg=10),
    Condition("photo, viewpoint 10° off", tilt_deg=10, photo=True),
)


def moved(T_cam_obj: np.ndarray, condition: Condition) -> np.ndarray:
    """The template pose turned about the optical axis and tilted about the object's centre."""
    spin = Rotation.from_euler("z", condition.spin_deg, degrees=True).as_matrix()
    tilt = Rotation.from_euler("x", condition.tilt_deg, degrees=True).as_matrix()
    centre = T_cam_obj[:3, 3]
    R = spin @ tilt @ T_cam_obj[:3, :3]
    return make_pose(R, spin @ centre)


def frame_of(renderer, obj, T_cam_obj, K, size, photo: bool) -> np.ndarray:
    view = renderer.render([obj], [T_cam_obj], K, size)
    background = photo_background(size) if photo else np.zeros_like(view.rgb)
    return np.where(view.labels[..., None] > 0, view.rgb, background).astype(np.uint8)


def pose_error(pose, T_true: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation (degrees) error of a found pose."""
    angle = Rotation.from_matrix(pose.R.T @ T_true[:3, :3]).magnitude()
    return float(np.linalg.norm(pose.t - T_true[:3, 3])), float(np.degrees(angle))


def run_condition(
    estimator: Estimator, renderer, obj, views: np.ndarray, condition
) -> tuple[int, float]:
    """Poses within 1 cm / 5° over the template `views` (V×4×4), and the median inliers (0 for
    no pose)."""
    size = (FRAME_SIZE, FRAME_SIZE)
    K = default_camera(size)
    good, inliers = 0, []
    for view in views:
        T_true = moved(view, condition)
        rgb = frame_of(renderer, obj, T_true, K, size, condition.photo)
        poses = estimator.estimate(rgb, K)
        if not poses:
            inliers.append(0)
            continue
        translation, angle = pose_error(poses[0], T_true)
        good += translation < 0.01 and angle < 5.0
        inliers.append(poses[0].inliers)
    return good, float(np.median(inliers))


def main(args: argparse.Namespace) -> None:
    obj = load_object(args.object)
    # The same upright views for both backends: the columns compare the same frames.
    upright = TemplateConfig(size=FRAME_SIZE)
    all_views = template_poses(obj, upright, default_camera((FRAME_SIZE, FRAME_SIZE)))
    chosen = np.random.default_rng(0).choice(len(all_views), args.templates, replace=False)
    views = all_views[chosen]
    results = {}
    with Renderer() as renderer, tempfile.TemporaryDirectory() as cache:
        for backend in BACKENDS:
            overrides: dict = {"cache_dir": cache}
            if backend == "ockd" and args.checkpoint:
                overrides["features"] = {"checkpoint": args.checkpoint}
            if args.max_ratio is not None:
                overrides["matching"] = {"max_ratio": args.max_ratio}
            conf = merge_config(default_config(backend), overrides)
            estimator = Estimator(conf, [obj], renderer=renderer)
            for condition in CONDITIONS:
                results[backend, condition.name] = run_condition(
                    estimator, renderer, obj, views, condition
                )
    n = len(views)
    print(f"\n{obj.name}: {n} templates per condition, frames 256×256 with the templates' K\n")
    print("| condition | ockd within 1 cm/5° | ockd median inliers | sift within 1 cm/5° "
          "| sift median inliers |")  # fmt: skip
    print("|---|---|---|---|---|")
    for condition in CONDITIONS:
        (og, oi), (sg, si) = (results[b, condition.name] for b in BACKENDS)
        print(f"| {condition.name} | {og}/{n} | {oi:.0f} | {sg}/{n} | {si:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", default="macaroni_and_cheese")
    parser.add_argument("--templates", type=int, default=8)
    parser.add_argument("--checkpoint", help="ockd weights (default: the shipped ones)")
    parser.add_argument("--max-ratio", type=float, help="ratio test of both backends")
    main(parser.parse_args())
