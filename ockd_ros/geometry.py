"""Poses, pinhole projections and units.

Conventions used across the package:
- poses are 4×4 float64 matrices `T_a_b` mapping points in frame b to frame a;
- cameras use the OpenCV optical frame (x right, y down, z forward);
- lengths are metres.
"""

from __future__ import annotations

import numpy as np

UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001}


def unit_scale(units: str) -> float:
    """Factor that converts a length in `units` ('m', 'cm' or 'mm') to metres."""
    if units not in UNIT_SCALE:
        raise ValueError(f"unknown length unit {units!r}; expected one of {sorted(UNIT_SCALE)}")
    return UNIT_SCALE[units]


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4×4 pose from a 3×3 rotation and a 3-vector translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4×4 pose."""
    R, t = T[:3, :3], T[:3, 3]
    return make_pose(R.T, -R.T @ t)


def same_pose(R1, t1, R2, t2, degrees: float, metres: float) -> bool:
    """Whether two poses (R 3×3, t 3) lie within `degrees` of rotation and `metres` of
    translation of each other."""
    cosine = (np.trace(np.asarray(R1).T @ np.asarray(R2)) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    return bool(angle <= degrees and np.linalg.norm(np.asarray(t1) - np.asarray(t2)) <= metres)


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply the 4×4 pose `T` to N×3 points."""
    return points @ T[:3, :3].T + T[:3, 3]


def box_corners(bounds: np.ndarray) -> np.ndarray:
    """The 8×3 corners of an axis-aligned box given as 2×3 [min, max]."""
    bounds = np.asarray(bounds)
    return np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]]
                     for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # fmt: skip


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3×3 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def check_intrinsics(K: np.ndarray) -> np.ndarray:
    """Return `K` as a float64 3×3 array, or raise `ValueError` if it cannot be a pinhole matrix."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be 3×3, got shape {K.shape}")
    if not np.all(np.isfinite(K)):
        raise ValueError(f"K has non-finite entries: {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K needs positive focal lengths, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def project(K: np.ndarray, points_cam: np.ndarray) -> np.ndarray:
    """Project N×3 camera-frame points to N×2 pixel coordinates."""
    uvw = points_cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def backproject(K: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Lift N×2 pixel coordinates with N depths (metres, along z) to N×3 camera-frame points."""
    uv1 = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
    rays = uv1 @ np.linalg.inv(K).T
    return rays * np.asarray(depth).reshape(-1, 1)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Pose `T_world_cam` of an optical-frame camera at `eye` looking at `target`.

    `up` is the world direction that should appear upwards in the image; when the viewing
    direction is parallel to it, another axis is used so the pose is always well defined.
    """
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    if np.linalg.norm(z) < 1e-9:
        raise ValueError("look_at: eye and target coincide")
    z /= np.linalg.norm(z)
    up = np.asarray(up, float)
    if abs(np.dot(z, up) / np.linalg.norm(up)) > 0.999:
        up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=1), eye)
