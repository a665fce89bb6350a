"""Pose hypotheses judged by dense descriptor agreement, and the winner refined on all the
template points near its view.

A PnP + RANSAC pose from one template's matches rests on its inliers, and among hundreds of
dense one-way matches a few dozen chance inliers are easy to find: a count threshold that
refuses the wrong poses of cluttered texture-poor scenes also refuses right poses of objects
with few distinctive points (a plain yellow bottle, a small shiny can). The verifier asks a
question chance cannot answer: projected with the hypothesised pose, do the template's points
land where the frame's descriptors agree with theirs, everywhere on the object, not only at the
matched pixels? A right pose makes most visible template points agree; a wrong one only its
inliers.

Points that an object already found nearer to the camera hides (`Occluders`) can agree with
nothing: a pose refused by its agreement is judged again on its unhidden points alone.

The refinement then matches every point of the templates near the winning view in a small
window around its projection (guided matching, no ratio test needed: the pose already says
where to look) and solves the pose on all of them, a few times with the window shrinking.
Dense matching lands on a 4-px grid, so the window's best cosine is refined to sub-cell
precision by a parabola through its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np
import torch
from scipy.ndimage import minimum_filter

from ockd_ros.features.types import Features

T = TypeVar("T")

# A sparse backend (SIFT) has no grid: its keypoints are binned into cells of this many pixels.
SPARSE_CELL = 4.0
# Template points compared at once by `FrameLookup.best_near`: each gathers the descriptors of
# every cell within reach (9 at a reach of one cell: 2048 points hold ~9 MB).
NEAR_CHUNK = 2048
# Cell offsets (rows, columns) of a keypoint's neighbours left, right, above and below, which
# `FrameLookup.subcell` fits its parabolas through: x from the first two, y from the last two.
NEIGHBOUR_ROWS = np.array([0, 0, -1, 1])
NEIGHBOUR_COLS = np.array([-1, 1, 0, 0])


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = False
    hypotheses: int = 4  # templates with the most matches that each give a PnP pose to judge
    pooled: bool = True  # and one more pose from their matches pooled
    # Pixels around a projected template point where frame descriptors are compared with its own.
    radius: float = 4.0
    agreement: float = 0.6  # cosine from which a frame descriptor agrees with a template point
    # A pose is accepted when at least `min_agreeing` template points agree, making up
    # `min_share` of the template's points that land among frame keypoints.
    min_agreeing: int = 24
    min_share: float = 0.25
    # ...and either some other template's own pose agrees with it (within `support_degrees` and
    # `support_diameters` of the object's diameter), or its share reaches `confident_share`.
    # Texture-poor clutter (LM-O) gives wrong poses as much agreement as right ones, but they
    # stand alone: neighbouring views of a right pose find it again.
    confident_share: float = 0.5
    support_degrees: float = 20.0
    support_diameters: float = 0.25
    # Refinement: guided matching of the templates whose views lie within `refine_degrees` of
    # the pose's, in windows of `refine_radius` pixels shrinking by half each iteration.
    refine_iterations: int = 3
    refine_degrees: float = 25.0
    refine_radius: float = 8.0
    refine_reprojection: float = 3.0  # pixels: refinement inliers
    # A pose refused by its agreement is judged again without the template points that lie more
    # than `occlusion_metres` behind the surface of an object found in the frame: hidden points
    # neither agree nor disagree. An object searched before the one hiding it is judged again
    # once that one is found.
    occlusion: bool = True
    occlusion_metres: float = 0.01

    def validate(self) -> None:
        if self.hypotheses < 1:
            raise ValueError(f"verify.hypotheses must be ≥ 1, got {self.hypotheses}")
        if self.radius < 0 or self.refine_radius < 0 or self.refine_reprojection <= 0:
            raise ValueError("verify radii must be ≥ 0 and refine_reprojection > 0")
        if not -1.0 <= self.agreement <= 1.0:
            raise ValueError(f"verify.agreement must be in [-1, 1], got {self.agreement}")
        if self.min_agreeing < 0 or not 0.0 <= self.min_share <= 1.0:
            raise ValueError("verify.min_agreeing must be ≥ 0 and min_share in [0, 1]")
        if not 0.0 <= self.confident_share <= 1.0 or self.support_degrees <= 0:
            raise ValueError("verify.confident_share must be in [0, 1], support_degrees > 0")
        if self.support_diameters <= 0:
            raise ValueError(f"verify.support_diameters must be > 0, got {self.support_diameters}")
        if self.refine_iterations < 0 or not 0.0 < self.refine_degrees <= 180.0:
            raise ValueError("verify.refine_iterations must be ≥ 0, refine_degrees in (0, 180]")
        if self.occlusion_metres < 0:
            raise ValueError(f"verify.occlusion_metres must be ≥ 0, got {self.occlusion_metres}")


@dataclass
class Agreement:
    """How a pose's projected template points agree with a frame.

    cosine: M float32, each point's best cosine with a frame descriptor within the radius
    (NaN where no frame keypoint is near: off the image, or outside the extracted window).
    frame_index: M int64, that frame keypoint (−1 where none).
    """

    cosine: np.ndarray
    frame_index: np.ndarray

    def agreeing(self, threshold: float) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return self.cosine >= threshold

    def count(self, threshold: float) -> int:
        return int(self.agreeing(threshold).sum())

    def share(self, threshold: float) -> float:
        """Agreeing points as a share of those that landed among frame keypoints."""
        seen = int(np.isfinite(self.cosine).sum())
        return self.count(threshold) / seen if seen else 0.0


class FrameLookup:
    """A frame's keypoints binned into square cells, to find those near any pixel at once.

    On the dense grids of the `ockd` backend a cell holds one keypoint (cell = grid spacing);
    for sparse keypoints the last one binned into a cell stands for it.
    """

    def __init__(self, features: Features, cell: float, origin: tuple[float, float] = (0, 0)):
        if cell <= 0:
            raise ValueError(f"cell must be positive, got {cell}")
        self.cell = float(cell)
        self.origin = np.asarray(origin, np.float64)  # a pixel at a cell's centre
        self.keypoints = features.keypoints
        self.desc = torch.from_numpy(np.ascontiguousarray(features.desc_intra, np.float32))
        width, height = features.image_size
        self.shape = (int(np.ceil(height / cell)) + 1, int(np.ceil(width / cell)) + 1)
        self.index = np.full(self.shape, -1, np.int64)
        if len(features):
            rows, cols = self._cells(features.keypoints)
            inside = self._inside(rows, cols)
            self.index[rows[inside], cols[inside]] = np.flatnonzero(inside)

    @classmethod
    def of(cls, features: Features, grid_spacing: float | None) -> FrameLookup:
        """The lookup for `features`: cells of `grid_spacing` pixels centred on the keypoints of
        a dense grid, else `SPARSE_CELL`."""
        if not grid_spacing or len(features) == 0:
            return cls(features, SPARSE_CELL)
        return cls(features, grid_spacing, tuple(features.keypoints[0] % grid_spacing))

    def _cells(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells = np.rint((np.asarray(pixels, np.float64) - self.origin) / self.cell)
        cells = np.nan_to_num(cells, nan=-1.0, posinf=-1.0, neginf=-1.0)
        cells = np.clip(cells, -1, max(self.shape) + 1).astype(np.int64)
        return cells[:, 1], cells[:, 0]

    def _inside(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return (rows >= 0) & (rows < self.shape[0]) & (cols >= 0) & (cols < self.shape[1])

    def best_near(self, pixels: np.ndarray, desc: np.ndarray, radius: float) -> Agreement:
        """For M pixels with M×D unit descriptors: the most similar frame keypoint within
        `radius` pixels (in whole cells) of each pixel, and its cosine."""
        rows, cols = self._cells(pixels)
        reach = int(np.ceil(radius / self.cell - 1e-9))
        steps = np.arange(-reach, reach + 1)
        offset_rows, offset_cols = (o.ravel() for o in np.meshgrid(steps, steps, indexing="ij"))
        desc = torch.from_numpy(np.ascontiguousarray(desc, np.float32))
        cosine = np.full(len(rows), np.nan, np.float32)
        best_index = np.full(len(rows), -1, np.int64)
        for start in range(0, len(rows), NEAR_CHUNK):
            chunk = slice(start, start + NEAR_CHUNK)
            near = self.at(
                self.index,
                (rows[chunk, None] + offset_rows).ravel(),
                (cols[chunk, None] + offset_cols).ravel(),
                -1,
            ).reshape(-1, len(offset_rows))  # m×C: the keypoint of each cell within reach
            near = torch.from_numpy(near)
            # Every cell is compared (an empty one with keypoint 0) and then ruled out: one
            # gather of m×C×D instead of picking the occupied cells first.
            cosines = (self.desc[near.clamp(min=0)] * desc[chunk, None, :]).sum(dim=2)
            cosines[near < 0] = -torch.inf
            best, choice = cosines.max(dim=1)  # the first of equal maxima, offsets row-major
            best = best.numpy()
            found = np.isfinite(best)
            cosine[chunk][found] = best[found]
            best_index[chunk][found] = near.gather(1, choice[:, None])[:, 0].numpy()[found]
        return Agreement(cosine, best_index)

    def subcell(self, index: np.ndarray, desc: np.ndarray) -> np.ndarray:
        """K×2 pixels: each frame keypoint `index` moved towards its more similar neighbours
        (a parabola through the cosines of the cells left/right and above/below), for the K×D
        unit template descriptors matched there. Keypoints without both neighbours stay put."""
        pixels = self.keypoints[index].astype(np.float64)
        rows, cols = self._cells(pixels)
        desc = torch.from_numpy(np.ascontiguousarray(desc, np.float32))
        centre = (desc * self.desc[index]).sum(dim=1).numpy()
        # K×4: the cosines at the cells left, right, above and below (NaN where none).
        near = self.at(
            self.index,
            (rows[:, None] + NEIGHBOUR_ROWS).ravel(),
            (cols[:, None] + NEIGHBOUR_COLS).ravel(),
            -1,
        ).reshape(-1, len(NEIGHBOUR_ROWS))
        near = torch.from_numpy(near)
        cosines = (self.desc[near.clamp(min=0)] * desc[:, None, :]).sum(dim=2).double().numpy()
        cosines[near.numpy() < 0] = np.nan
        for axis, (before, after) in enumerate((cosines[:, :2].T, cosines[:, 2:].T)):
            curvature = before + after - 2.0 * centre
            with np.errstate(invalid="ignore", divide="ignore"):
                shift = 0.5 * (before - after) / curvature
            usable = np.isfinite(shift) & (curvature < 0)
            pixels[usable, axis] += np.clip(shift[usable], -0.5, 0.5) * self.cell
        return pixels

    def at(self, grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, outside) -> np.ndarray:
        """The values of a per-cell `grid` (of this lookup's shape) at cells (rows, cols), and
        `outside` for cells off the grid."""
        inside = self._inside(rows, cols)
        values = np.full(len(rows), outside, grid.dtype)
        values[inside] = grid[rows[inside], cols[inside]]
        return values


class Occluders:
    """The nearest depth of the objects found in a frame, per cell of its `FrameLookup`.

    An object is drawn as points sampled on its surface; each cell keeps the smallest depth
    that falls in it, and then in its 3×3 neighbourhood, which closes the gaps between samples
    (and grows an outline by one cell, where a point is ambiguous anyway).
    """

    def __init__(self, lookup: FrameLookup):
        self.lookup = lookup
        self.depth = np.full(lookup.shape, np.inf)

    @property
    def empty(self) -> bool:
        """Nothing drawn yet: no point is hidden."""
        return not np.isfinite(self.depth).any()

    def add(self, surface: np.ndarray, R, t, K, D) -> None:
        """Draw an object: S×3 surface points (object frame, metres) at pose (R, t)."""
        pixels, in_front = project_points(surface, R, t, K, D)
        depth = _depths(surface, R, t)
        rows, cols = self.lookup._cells(pixels)
        drawn = self.lookup._inside(rows, cols) & in_front
        nearest = np.full(self.lookup.shape, np.inf)
        np.minimum.at(nearest, (rows[drawn], cols[drawn]), depth[drawn])
        self.depth = np.minimum(self.depth, minimum_filter(nearest, size=3, mode="nearest"))

    def hidden(self, pixels: np.ndarray, depth: np.ndarray, margin: float) -> np.ndarray:
        """M bool: the points at M×2 `pixels` and M `depth`s lie more than `margin` metres
        behind a drawn object."""
        front = self.lookup.at(self.depth, *self.lookup._cells(pixels), np.inf)
        return depth > front + margin


def _depths(points: np.ndarray, R, t) -> np.ndarray:
    """M depths (camera z, metres) of M×3 object points at pose (R, t)."""
    return np.asarray(points, np.float64) @ np.asarray(R)[2] + float(np.asarray(t).ravel()[2])


def project_points(points: np.ndarray, R, t, K, D) -> tuple[np.ndarray, np.ndarray]:
    """M×2 pixels of M×3 object points at pose (R, t), and M bool: in front of the camera."""
    points = np.asarray(points, np.float64)
    in_front = _depths(points, R, t) > 1e-6
    rvec = cv2.Rodrigues(np.asarray(R, np.float64))[0]
    tvec = np.asarray(t, np.float64).reshape(3, 1)
    pixels = cv2.projectPoints(points, rvec, tvec, np.asarray(K, np.float64), D)[0].reshape(-1, 2)
    return pixels, in_front


def agreement(
    lookup: FrameLookup,
    points: np.ndarray,
    desc: np.ndarray,
    R,
    t,
    K,
    D,
    radius: float,
    occluders: Occluders | None = None,
    occlusion_metres: float = 0.0,
) -> Agreement:
    """How M template points (M×3 object frame, M×D unit descriptors) agree with the frame
    when projected at pose (R, t); points behind the camera, or more than `occlusion_metres`
    behind one of the `occluders`, count as unseen."""
    pixels, in_front = project_points(points, R, t, K, D)
    found = lookup.best_near(pixels, desc, radius)
    unseen = ~in_front
    if occluders is not None:
        unseen |= occluders.hidden(pixels, _depths(points, R, t), occlusion_metres)
    found.cosine[unseen] = np.nan
    found.frame_index[unseen] = -1
    return found


def strongest(
    judged: list[tuple[Agreement, T]], conf: VerifyConfig, same: Callable[[T, T], bool]
) -> tuple[Agreement, T]:
    """The hypothesis to verify and refine, of (agreement, hypothesis) pairs.

    The largest agreeing share, among hypotheses with `min_agreeing` agreeing points (among
    all, when none has), says which pose; of the hypotheses whose pose is the `same` as that
    one's, the one with most agreeing points stands for it. A count alone favours templates with
    more points: those of the larger scale hold about twice as many, and on the demo bag a pose
    half a metre off with 219 of 447 points agreeing beat the right one with 204 of 227. A share
    alone picks the right pose there but often from a smaller template, a less precise start for
    the refinement (rendered scenes: 24 of 40 within 1 cm / 5° against 28).
    """
    if not judged:
        raise ValueError("no hypotheses to choose from")
    _, chosen = max(
        judged,
        key=lambda pair: (
            pair[0].count(conf.agreement) >= conf.min_agreeing,
            pair[0].share(conf.agreement),
        ),
    )
    alike = [pair for pair in judged if pair[1] is chosen or same(chosen, pair[1])]
    return max(alike, key=lambda pair: pair[0].count(conf.agreement))


def verified(found: Agreement, supported: bool, conf: VerifyConfig) -> bool:
    """Whether an agreement is evidence enough for a pose; `supported`: another template's
    pose agrees with it."""
    share = found.share(conf.agreement)
    if found.count(conf.agreement) < conf.min_agreeing or share < conf.min_share:
        return False
    return supported or share >= conf.confident_share


@dataclass
class Refined:
    """A refined pose and the correspondences it rests on: N×3 object points, N×2 pixels."""

    R: np.ndarray
    t: np.ndarray
    points: np.ndarray
    pixels: np.ndarray


def refine(
    lookup: FrameLookup,
    points: np.ndarray,
    desc: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    K: np.ndarray,
    D: np.ndarray | None,
    conf: VerifyConfig,
) -> Refined | None:
    """(R, t) refined on M template points (M×3, M×D): each iteration matches every point in
    a window around its projection (`refine_radius`, halved each time), keeps those whose best
    cosine agrees, moves them to sub-cell precision and solves Levenberg-Marquardt on those
    within `refine_reprojection` pixels. None when an iteration keeps fewer than
    `min_agreeing` points (never fewer than PnP's 4)."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3)
    radius = conf.refine_radius
    kept_points, kept_pixels = points[:0], np.zeros((0, 2))
    for _ in range(conf.refine_iterations):
        found = agreement(lookup, points, desc, R, t, K, D, max(radius, lookup.cell))
        agreeing = np.flatnonzero(found.agreeing(conf.agreement))
        if len(agreeing) < max(conf.min_agreeing, 4):
            return None
        pixels = lookup.subcell(found.frame_index[agreeing], desc[agreeing])
        solved = _refine_lm(points[agreeing], pixels, K, D, R, t, conf.refine_reprojection)
        if solved is None:
            return None
        R, t, inliers = solved
        kept_points, kept_pixels = points[agreeing][inliers], pixels[inliers]
        radius /= 2.0
    return Refined(R, t, kept_points, kept_pixels)


def _refine_lm(points, pixels, K, D, R, t, threshold: float):
    """Levenberg-Marquardt from (R, t) on the correspondences within `threshold` pixels of it,
    twice (the second time on the first's inliers); None with fewer than 4."""
    points = np.ascontiguousarray(points, np.float64)
    pixels = np.ascontiguousarray(pixels, np.float64)
    rvec = cv2.Rodrigues(R)[0]
    tvec = t.reshape(3, 1).copy()
    K = np.asarray(K, np.float64)
    inliers = np.arange(len(points))
    # The first pass starts from a pose that may be a few pixels off: be lenient, then strict.
    for gate in (2.0 * threshold, threshold):
        projected = cv2.projectPoints(points, rvec, tvec, K, D)[0].reshape(-1, 2)
        inliers = np.flatnonzero(np.linalg.norm(projected - pixels, axis=1) <= gate)
        if len(inliers) < 4:
            return None
        rvec, tvec = cv2.solvePnPRefineLM(points[inliers], pixels[inliers], K, D, rvec, tvec)
    R, t = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))) or t[2] <= 0:
        return None
    return R, t, inliers
