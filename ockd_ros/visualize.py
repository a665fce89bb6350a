"""Overlay pictures: keypoints on images, side-by-side panels with captions."""

from __future__ import annotations

import cv2
import numpy as np

from ockd_ros.features.types import Features


def object_color(index: int) -> tuple[int, int, int]:
    """A distinct, bright RGB colour per object index (golden-ratio hue steps)."""
    hue = int((index * 0.618034 % 1.0) * 180)
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_keypoints(
    rgb: np.ndarray, features: Features, color: tuple[int, int, int] = (0, 255, 0), radius: int = 3
) -> np.ndarray:
    """A copy of the H×W×3 RGB image with `features.keypoints` drawn as circles."""
    canvas = rgb.copy()
    for x, y in np.round(features.keypoints).astype(int):
        cv2.circle(canvas, (int(x), int(y)), radius, color, 1, cv2.LINE_AA)
    return canvas


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
