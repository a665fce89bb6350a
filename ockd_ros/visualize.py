"""Overlay pictures: object poses on images, side-by-side panels with captions."""

from __future__ import annotations

import cv2
import numpy as np


def object_color(index: int) -> tuple[int, int, int]:
    """A distinct, bright RGB colour per object index (golden-ratio hue steps)."""
    hue = int((index * 0.618034 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """A copy of the image with `text` in a dark band across the top."""
    canvas = rgb.copy()
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(
        canvas, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return canvas


def side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of equal height placed left to right."""
    if len({panel.shape[0] for panel in panels}) != 1:
        raise ValueError("side_by_side needs panels of equal height")
    return np.concatenate(panels, axis=1)


def write_rgb(path, rgb: np.ndarray) -> None:
    """Write an RGB image (cv2 expects BGR); raises if the file cannot be written."""
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write image {path}")


BOX_EDGES = ((0, 1), (0, 2), (1, 3), (2, 3), (4, 5), (4, 6), (5, 7), (6, 7),
             (0, 4), (1, 5), (2, 6), (3, 7))  # fmt: skip


def draw_pose(
    rgb: np.ndarray,
    K: np.ndarray,
    T_cam_obj: np.ndarray,
    bounds: np.ndarray,
    color: tuple[int, int, int],
    label: str = "",
    keypoints: np.ndarray | None = None,
) -> np.ndarray:
    """Draw an object's pose in place: its bounding box, axes, matched keypoints and a label.

    bounds: 2×3 object-frame box (metres); keypoints: N×2 pixels.
    """
    from ockd_ros.geometry import box_corners, project, transform_points

    corners = transform_points(T_cam_obj, box_corners(bounds))
    if np.any(corners[:, 2] <= 1e-3):
        return rgb  # behind the camera: nothing sensible to draw
    pixels = np.round(project(K, corners)).astype(int)
    for a, b in BOX_EDGES:
        cv2.line(rgb, tuple(map(int, pixels[a])), tuple(map(int, pixels[b])), color, 1, cv2.LINE_AA)
    length = 0.5 * float(np.min(bounds[1] - bounds[0]))
    axes = transform_points(T_cam_obj, np.vstack([np.zeros(3), np.eye(3) * length]))
    origin, *tips = np.round(project(K, axes)).astype(int)
    for tip, axis_color in zip(tips, ((255, 0, 0), (0, 255, 0), (0, 0, 255)), strict=True):
        cv2.line(rgb, tuple(map(int, origin)), tuple(map(int, tip)), axis_color, 2, cv2.LINE_AA)
    for x, y in np.round(keypoints if keypoints is not None else []).astype(int):
        cv2.circle(rgb, (int(x), int(y)), 2, color, -1, cv2.LINE_AA)
    if label:
        anchor = tuple(map(int, pixels.min(axis=0) - [0, 4]))
        cv2.putText(rgb, label, anchor, cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return rgb
