"""Look-alike faces: a pose found on the wrong one of two similar faces, put right by colour.

Boxes and bottles show faces that the descriptors confuse. A pose turned 90° or 180° about one
of the object's axes then gathers as many PnP inliers as the right one: most wrong `ockd` poses
on rendered scenes are such turns about the centre of the bounding box, within a centimetre
and a few degrees of a true pose once turned back. The candidates are the turns that map the
bounding box onto itself (`box_turns`: 4 for a box with three different sides, 8 with a square
section, 24 for a cube). Each is scored by how well the colours of the template seen from the
nearest direction, projected with it, correlate with the image (`colour_agreement`, normalised
cross-correlation of grey values); the best replaces the PnP pose when it scores `margin`
higher. Pure NumPy/OpenCV, no rendering: the colours are stored in the template bank.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from ockd_ros.pose.templates import TemplateBank

GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as cv2.COLOR_RGB2GRAY


@dataclass(frozen=True)
class FlipConfig:
    enabled: bool = False
    # A turn is a candidate when it maps every side of the bounding box onto a side within
    # this fraction of its length.
    extent_tolerance: float = 0.15
    margin: float = 0.05  # correlation a turn must gain over the PnP pose to replace it
    min_points: int = 30  # projected template points needed to score a pose
    min_contrast: float = 4.0  # grey-level spread below which colours cannot tell faces apart

    def validate(self) -> None:
        if not 0.0 <= self.extent_tolerance < 1.0:
            raise ValueError(f"extent_tolerance must be in [0, 1), got {self.extent_tolerance}")
        if self.margin < 0 or self.min_points < 3 or self.min_contrast < 0:
            raise ValueError("margin and min_contrast must be ≥ 0, min_points ≥ 3")


def box_turns(extents: np.ndarray, tolerance: float) -> np.ndarray:
    """T×3×3 rotations of the cube group (axis permutations with signs, determinant +1) that
    map a box of side lengths `extents` (3, along the object axes) onto itself within
    `tolerance` of each side; the identity first."""
    extents = np.asarray(extents, dtype=np.float64)
    turns = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            turn = np.zeros((3, 3))
            turn[range(3), order] = signs
            fits = np.all(np.abs(extents[list(order)] - extents) <= tolerance * extents)
            if np.linalg.det(turn) > 0 and fits:
                turns.append(turn)
    turns.sort(key=lambda turn: not np.allclose(turn, np.eye(3)))
    return np.stack(turns)


@dataclass(frozen=True)
class GreyFrame:
    """The image poses are checked against: H×W uint8 grey values, its 3×3 K and distortion."""

    grey: np.ndarray
    K: np.ndarray
    D: np.ndarray | None = None


def turned_pose(
    R: np.ndarray, t: np.ndarray, turn: np.ndarray, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The pose (R, t) of the object turned by `turn` about its point `centre` (object frame):
    a point X is seen where the unturned pose sees turn·(X − centre) + centre."""
    return R @ turn, t + R @ (centre - turn @ centre)


def colour_agreement(
    bank: TemplateBank, R: np.ndarray, t: np.ndarray, frame: GreyFrame, conf: FlipConfig
) -> float | None:
    """Correlation of the grey values of the template nearest in viewing direction to pose
    (R, t) with those of `frame` where its keypoints project; None when fewer than
    `min_points` land in the image or either side lacks contrast."""
    template = _nearest_view(bank, R, t)
    # Rows are sorted by template: the template's rows are one run.
    rows = np.arange(*np.searchsorted(bank.template_ids, [template, template + 1]))
    rvec = cv2.Rodrigues(np.asarray(R, np.float64))[0]
    points = np.asarray(bank.points[rows], np.float64)
    tvec = np.asarray(t, np.float64)
    pixels = cv2.projectPoints(points, rvec, tvec, frame.K, frame.D)[0].reshape(-1, 2)
    column, row = np.round(pixels).astype(int).T
    height, width = frame.grey.shape
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    if inside.sum() < conf.min_points:
        return None
    seen = frame.grey[row[inside], column[inside]].astype(np.float64)
    expected = bank.colors[rows[inside]] @ GREY_WEIGHTS
    if seen.std() < conf.min_contrast or expected.std() < conf.min_contrast:
        return None
    return float(np.corrcoef(seen, expected)[0, 1])


def best_turn(
    bank: TemplateBank,
    turns: np.ndarray,
    centre: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    frame: GreyFrame,
    conf: FlipConfig,
) -> int:
    """Index into the T×3×3 `turns` (identity first) of the turn about `centre` to apply to
    pose (R, t): the one whose colours agree best with `frame`, if it beats the untouched pose
    by `margin`; else 0."""
    scores = [
        colour_agreement(bank, *turned_pose(R, t, turn, centre), frame, conf) for turn in turns
    ]
    if scores[0] is None:
        return 0
    candidates = [(score, index) for index, score in enumerate(scores) if score is not None]
    score, index = max(candidates)
    return index if score >= scores[0] + conf.margin else 0


def _nearest_view(bank: TemplateBank, R: np.ndarray, t: np.ndarray) -> int:
    """The template whose camera sees the object from the direction closest to pose (R, t)'s.
    Directions are taken from the object origin; in-plane turns of a view share its points."""
    eye = -R.T @ t
    template_eyes = -np.einsum("vji,vj->vi", bank.poses[:, :3, :3], bank.poses[:, :3, 3])
    cosines = template_eyes @ eye / np.linalg.norm(template_eyes, axis=1)
    return int(np.argmax(cosines))
