"""Small rendered scenes with known poses, for the demo, the benchmarks and the tests."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import intrinsics, make_pose
from ockd_ros.meshes import ObjectMesh
from ockd_ros.render import RenderedView, Renderer

# Real photos shipped with scikit-image: backgrounds with natural texture statistics.
BACKGROUND_PHOTOS = ("coffee", "chelsea", "rocket", "astronaut", "brick", "gravel", "grass")


@dataclass
class SampleScene:
    """A rendered scene: the image, its camera and the objects' poses (T_cam_obj, metres)."""

    rgb: np.ndarray
    K: np.ndarray
    poses: list[np.ndarray]
    view: RenderedView


def photo_background(size: tuple[int, int], name: str = "coffee") -> np.ndarray:
    """A real photo from scikit-image resized to `size` (width, height), as H×W×3 uint8 RGB."""
    import skimage.data

    if name not in BACKGROUND_PHOTOS:
        raise ValueError(f"unknown background {name!r}; choose from {BACKGROUND_PHOTOS}")
    photo = getattr(skimage.data, name)()
    if photo.ndim == 2:
        photo = np.repeat(photo[..., None], 3, axis=2)
    return cv2.resize(photo[..., :3], size, interpolation=cv2.INTER_AREA)


def default_camera(size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A pinhole K like a typical RGB-D camera's (about 58° horizontal field of view at 640 px)."""
    width, height = size
    focal = 572.0 * width / 640.0
    return intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def object_row_poses(objects: list[ObjectMesh], distance: float, seed: int) -> list[np.ndarray]:
    """Poses placing the objects side by side in front of the camera, randomly turned by up to
    35° from a view of their largest face with their longest side upright."""
    rng = np.random.default_rng(seed)
    widths = np.array([obj.diameter for obj in objects])
    centres = np.cumsum(widths) - widths / 2 - widths.sum() / 2
    poses = []
    for obj, centre in zip(objects, centres, strict=True):
        turn = Rotation.from_euler("xyz", rng.uniform(-35, 35, 3), degrees=True).as_matrix()
        offset = obj.mesh.bounds.mean(axis=0)  # put the box centre, not the origin, on the row
        R = turn @ _facing_camera(obj.mesh.extents)
        poses.append(make_pose(R, np.array([centre, 0.0, distance]) - R @ offset))
    return poses


def _facing_camera(extents: np.ndarray) -> np.ndarray:
    """R_cam_obj turning the shortest object axis towards the camera and the longest upwards."""
    shortest, middle, longest = np.argsort(extents)
    R = np.zeros((3, 3))
    R[:, longest] = (0.0, -1.0, 0.0)  # −y is up in the optical frame
    R[:, shortest] = (0.0, 0.0, -1.0)  # towards the camera
    R[:, middle] = (1.0, 0.0, 0.0)
    if np.linalg.det(R) < 0:
        R[:, middle] *= -1
    return R


def render_sample_scene(
    renderer: Renderer,
    objects: list[ObjectMesh],
    size: tuple[int, int] = (640, 480),
    background: str = "coffee",
    distance: float = 0.5,
    seed: int = 0,
) -> SampleScene:
    """Render `objects` in a row at `distance` metres over a real photo."""
    K = default_camera(size)
    poses = object_row_poses(objects, distance, seed)
    view = renderer.render(objects, poses, K, size)
    rgb = np.where(view.labels[..., None] > 0, view.rgb, photo_background(size, background))
    return SampleScene(rgb, K, poses, view)


def render_moving_scene(
    renderer: Renderer,
    objects: list[ObjectMesh],
    frame: int,
    size: tuple[int, int] = (640, 480),
    distance: float = 0.5,
    seed: int = 0,
    degrees_per_frame: float = 1.5,
    metres_per_frame: float = 0.004,
) -> SampleScene:
    """Frame `frame` of a camera circling `render_sample_scene`'s row of objects: each frame the
    row turns by `degrees_per_frame` about its vertical axis and slides sideways."""
    K = default_camera(size)
    row_centre = np.array([0.0, 0.0, distance])
    turn = Rotation.from_euler("y", degrees_per_frame * frame, degrees=True).as_matrix()
    motion = make_pose(turn, row_centre - turn @ row_centre + [metres_per_frame * frame, 0, 0])
    poses = [motion @ pose for pose in object_row_poses(objects, distance, seed)]
    view = renderer.render(objects, poses, K, size)
    rgb = np.where(view.labels[..., None] > 0, view.rgb, photo_background(size))
    return SampleScene(rgb, K, poses, view)
