"""Camera paths over a scene: a slow circle over the upper hemisphere, looking at the pile.

Consecutive frames differ by a few degrees of azimuth while elevation, distance, look-at point and
roll drift slowly, so adjacent frames show the same scene with small motion; `camera_problem`
rejects poses below the table, inside an object or not looking down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import look_at, make_pose
from ockd_ros.training.randomization import IntrinsicsConfig, uniform


@dataclass(frozen=True)
class CameraConfig:
    intrinsics: IntrinsicsConfig = field(default_factory=IntrinsicsConfig)
    elevation_deg: tuple[float, float] = (20.0, 80.0)  # above the table plane
    fill: tuple[float, float] = (0.6, 1.2)  # pile diameter / field of view at the pile
    step_deg: tuple[float, float] = (1.5, 4.0)  # azimuth change between consecutive frames
    wobble_deg: float = 6.0  # amplitude of the slow elevation change along the trajectory
    distance_wobble: float = 0.08  # relative amplitude of the slow distance change
    target_jitter: float = 0.3  # look-at point offset from the pile centre, × pile radius
    roll_deg: float = 15.0  # largest camera roll about the optical axis
    min_height: float = 0.05  # metres the camera stays above the table
    min_clearance: float = 0.03  # metres between the camera and any object's bounding sphere


def camera_trajectory(
    rng: np.random.Generator,
    center: np.ndarray,
    radius: float,
    K: np.ndarray,
    size: tuple[int, int],
    frames: int,
    conf: CameraConfig,
) -> list[np.ndarray]:
    """T_world_cam of `frames` cameras on a smooth path over the upper hemisphere.

    The camera circles the pile (`center`, bounding `radius`) by a few degrees per frame while
    its elevation, distance, look-at point and roll drift slowly, so adjacent frames show the same
    scene with small motion.
    """
    width, height = size
    half_fov = min(math.atan(width / 2 / K[0, 0]), math.atan(height / 2 / K[1, 1]))
    distance = radius / (uniform(rng, conf.fill) * math.tan(half_fov))
    low, high = (math.radians(v) for v in conf.elevation_deg)
    wobble = math.radians(conf.wobble_deg)
    elevation0 = rng.uniform(low + wobble, max(low + wobble, high - wobble))
    azimuth0 = rng.uniform(0, 2 * math.pi)
    step = math.radians(uniform(rng, conf.step_deg)) * rng.choice([-1.0, 1.0])
    # Slow drifts: one sinusoid each, with a random phase and at most one period per scene.
    phases = rng.uniform(0, 2 * math.pi, 4)
    periods = rng.uniform(1.0, 3.0, 4) * max(frames, 2)
    target_offset = rng.normal(size=3) * np.array([1.0, 1.0, 0.3])
    target_offset *= conf.target_jitter * radius / max(np.linalg.norm(target_offset), 1e-9)
    roll0 = math.radians(rng.uniform(-conf.roll_deg, conf.roll_deg))

    poses = []
    for i in range(frames):
        drift = np.sin(2 * math.pi * i / periods + phases)
        elevation = elevation0 + wobble * drift[0]
        azimuth = azimuth0 + step * i
        d = distance * (1 + conf.distance_wobble * drift[1])
        eye = center + d * np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        target = center + target_offset * (0.7 + 0.3 * drift[2])
        roll = roll0 + math.radians(conf.roll_deg) * 0.3 * drift[3]
        T_world_cam = look_at(eye, target) @ make_pose(
            Rotation.from_euler("z", roll).as_matrix(), np.zeros(3)
        )
        poses.append(T_world_cam)
    return poses


def camera_problem(
    T_world_cam: np.ndarray,
    spheres: Sequence[tuple[np.ndarray, float]],
    conf: CameraConfig,
) -> str | None:
    """Why a camera pose is unusable (below the table, inside an object, ...), or None."""
    if T_world_cam.shape != (4, 4) or not np.all(np.isfinite(T_world_cam)):
        return "camera pose is not a finite 4×4 matrix"
    R = T_world_cam[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0.5:
        return "camera rotation is not a rotation"
    eye = T_world_cam[:3, 3]
    if eye[2] < conf.min_height:
        return f"camera {eye[2]:.3f} m above the table, below the minimum {conf.min_height} m"
    for center, radius in spheres:
        if np.linalg.norm(eye - center) < radius + conf.min_clearance:
            return "camera inside or touching an object"
    if R[2, 2] > -0.05:
        return "camera does not look down at the table"
    return None
