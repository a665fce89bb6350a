"""Poses over a stream of frames: each object is looked for around its last pose first.

A full search (`Estimator.estimate` over the whole image and every template) costs the same in
every frame, although at camera rate an object has barely moved since it was last found. With
a recent pose of an object (its prior), the tracker looks for it only:
- in the box of its projected bounding box, grown by a margin; when every object has a prior,
  features are extracted only in the union of those boxes;
- against the templates whose views lie near the prior's view (matched in full, no shortlist).
With `zoom`, each object's box is instead searched on its own, resized so that the object shows
at the size it has in its templates (`Estimator.template_scale` at the prior): slower, and more
accurate where objects look smaller than their templates.
An object not found this way (lost) is searched for over the whole image in the same frame, and
a full search of every object runs at least every `full_search_frames` frames and
`full_search_seconds` seconds, so that a moved, hidden or new object is found again. An object
that a full search did not find waits for the next one.

An optional filter smooths the published poses: an exponential average of translation and a
spherical interpolation of rotation, reset (no lag) whenever the object jumps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ockd_ros.geometry import box_corners, project, same_pose, transform_points
from ockd_ros.pose.estimator import (
    MAX_SCALE,
    MIN_SCALE,
    EstimateTiming,
    Estimator,
    ObjectPose,
    PreparedFrame,
)

TRACKED = "tracked"  # found around its prior
SEARCHED = "searched"  # found by a full search


@dataclass(frozen=True)
class PoseFilterConfig:
    enabled: bool = False
    # Weight of the new measurement in [0, 1]: 1 follows every measurement (no smoothing).
    weight: float = 0.5
    # A measurement this far from the filtered pose is a jump: the filter restarts from it.
    jump_metres: float = 0.03
    jump_degrees: float = 15.0

    def validate(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"filter weight must be in (0, 1], got {self.weight}")
        if self.jump_metres <= 0 or self.jump_degrees <= 0:
            raise ValueError("filter jump thresholds must be positive")


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    # A full search of every object at least this often (0: only when an object is lost).
    full_search_frames: int = 15
    full_search_seconds: float = 3.0
    max_prior_age_seconds: float = 1.0  # an older prior is not used
    view_degrees: float = 20.0  # templates whose view is within this of the prior's view...
    min_templates: int = 2  # ...and at least this many nearest ones
    box_margin: float = 0.1  # the prior's box grows by this share of its size on each side...
    box_margin_px: int = 8  # ...plus this
    # The share of a template's matches that a tracked pose's inliers must make up (at most the
    # full search's). The prior already narrows the search to a box and a few views, where
    # matches are fewer but noisier: at ockd's 0.6 a small object (cream_cheese on the benchmark
    # bag) failed the tracked search in 4 frames of 10 that a full search then found.
    min_inlier_ratio: float = 0.45
    # Each object's box is searched on its own, resized so that the object shows at its
    # templates' size (within `zoom_range`), rather than one window around all boxes at the
    # image's scale.
    zoom: bool = False
    zoom_range: tuple[float, float] = (0.5, 2.0)
    filter: PoseFilterConfig = field(default_factory=PoseFilterConfig)

    def validate(self) -> None:
        if self.full_search_frames < 0 or self.full_search_seconds < 0:
            raise ValueError("full search intervals must be ≥ 0")
        if self.max_prior_age_seconds <= 0:
            raise ValueError("max_prior_age_seconds must be positive")
        if not 0 < self.view_degrees <= 180 or self.min_templates < 1:
            raise ValueError("view_degrees must be in (0, 180] and min_templates ≥ 1")
        if self.box_margin < 0 or self.box_margin_px < 0:
            raise ValueError("box margins must be ≥ 0")
        low, high = self.zoom_range
        if not MIN_SCALE <= low <= high <= MAX_SCALE:
            raise ValueError(f"zoom_range must lie in [{MIN_SCALE}, {MAX_SCALE}], got {low, high}")
        if not 0 < self.min_inlier_ratio <= 1:
            raise ValueError(f"min_inlier_ratio must be in (0, 1], got {self.min_inlier_ratio}")
        self.filter.validate()


@dataclass
class _Prior:
    pose: ObjectPose
    stamp: float


class Tracker:
    """Poses of an `Estimator`'s objects over a stream of frames of one camera.

    `track` takes the frames in order; `last_mode` says, per object found, whether it was
    TRACKED or SEARCHED; `last_status` gives the outcome of each object looked for in the frame
    (FOUND or the estimator's reason), and only of those: an object waiting for the next full
    search is not in it; `last_timing` sums the estimator's steps over the frame.
    """

    def __init__(self, estimator: Estimator, conf: TrackingConfig | None = None):
        self.conf = conf or TrackingConfig()
        self.conf.validate()
        self.estimator = estimator
        self.filter = PoseFilter(self.conf.filter)
        self.last_mode: dict[str, str] = {}
        self.last_status: dict[str, str] = {}
        self.last_timing = EstimateTiming()
        self.reset()

    def reset(self) -> None:
        """Forget every prior (a new stream, or the camera was moved far)."""
        self._priors: dict[str, _Prior] = {}
        self._searched: set[str] = set()  # objects searched in full at least once
        self._frames_since_full = 0
        self._last_full: float | None = None
        self.filter.reset()

    def track(
        self,
        rgb: np.ndarray,
        K: np.ndarray,
        D: np.ndarray | None = None,
        stamp: float | None = None,
        objects: Sequence[str] | None = None,
    ) -> list[ObjectPose]:
        """Poses of `objects` (None: all) in the next frame of the stream; as
        `Estimator.estimate`, with `stamp` the frame's time in seconds (default: now)."""
        stamp = time.monotonic() if stamp is None else float(stamp)
        names = list(self.estimator.objects) if objects is None else list(objects)
        height, width = rgb.shape[:2]
        full = self._full_search_due(stamp)
        tracked = [] if full else self._fresh_priors(names, stamp)
        # Searched in full now: every object when a full search is due; otherwise those with a
        # stale prior and those never looked for. An object absent at the last full search
        # waits for the next one instead of costing a full search every frame.
        must_search = [
            name
            for name in names
            if name not in tracked and (full or name in self._priors or name not in self._searched)
        ]
        found: dict[str, ObjectPose] = {}
        modes: dict[str, str] = {}
        timings: list[EstimateTiming] = []
        status: dict[str, str] = {}  # a lost object's full search overwrites its tracked one
        whole = None  # features of the whole image, once some object needs them
        if tracked:
            boxes = {
                name: self._box(self._priors[name].pose, K, (width, height)) for name in tracked
            }
            if self.conf.zoom:
                near = self._search_zoomed(rgb, K, D, boxes, timings, status)
            else:
                # One window around every box; the whole image when some object needs it anyway.
                roi = None if must_search else _union(boxes.values())
                frame = self.estimator.prepare(rgb, K, D, roi=roi)
                whole = frame if roi is None else None
                near = self._search_boxes(frame, boxes, timings, status)
            for pose in near:
                found[pose.name], modes[pose.name] = pose, TRACKED
        searched = must_search + [name for name in tracked if name not in found]  # + the lost
        if searched:
            if whole is None:
                whole = self.estimator.prepare(rgb, K, D)
            recent = {name: self._priors[name].pose for name in self._fresh_priors(searched, stamp)}
            for pose in self.estimator.search(whole, searched, priors=recent):
                found[pose.name], modes[pose.name] = pose, SEARCHED
            timings.append(self.estimator.last_timing)
            status.update(self.estimator.last_status)
        self._searched.update(searched)
        self._frames_since_full = 0 if full else self._frames_since_full + 1
        if full:
            self._last_full = stamp
        for name in tracked + searched:
            if name in found:
                self._priors[name] = _Prior(found[name], stamp)
            else:
                self._priors.pop(name, None)
                self.filter.forget(name)
        self.last_mode = modes
        self.last_status = status
        self.last_timing = _sum(timings)
        return [self.filter.update(found[name]) for name in names if name in found]

    def _search_boxes(
        self,
        frame: PreparedFrame,
        boxes: dict[str, tuple],
        timings: list[EstimateTiming],
        status: dict[str, str],
    ) -> list[ObjectPose]:
        """The objects of `boxes` found in their boxes of `frame`, near their priors' views."""
        height, width = frame.shape
        regions = {name: _box_mask(box, (height, width)) for name, box in boxes.items()}
        templates = {name: self._near_templates(name) for name in boxes}
        priors = {name: self._priors[name].pose for name in boxes}
        poses = self.estimator.search(
            frame, list(boxes), regions, templates, self._ratio(), priors=priors
        )
        timings.append(self.estimator.last_timing)
        status.update(self.estimator.last_status)
        return poses

    def _search_zoomed(
        self,
        rgb,
        K,
        D,
        boxes: dict[str, tuple],
        timings: list[EstimateTiming],
        status: dict[str, str],
    ) -> list[ObjectPose]:
        """The objects of `boxes` found each on its own box, resized to its templates' scale."""
        poses = []
        for name, box in boxes.items():
            prior = self._priors[name].pose
            scale = self.estimator.template_scale(name, prior.R, prior.t, K)
            scale = float(np.clip(scale, *self.conf.zoom_range))
            frame = self.estimator.prepare(rgb, K, D, roi=box, scale=scale)
            templates = {name: self._near_templates(name)}
            poses += self.estimator.search(
                frame,
                [name],
                templates=templates,
                min_inlier_ratio=self._ratio(),
                priors={name: prior},
            )
            timings.append(self.estimator.last_timing)
            status.update(self.estimator.last_status)
        return poses

    def _ratio(self) -> float:
        # never more than the full search asks (SIFT's default asks no share at all)
        return min(self.conf.min_inlier_ratio, self.estimator.conf.pnp.min_inlier_ratio)

    def _full_search_due(self, stamp: float) -> bool:
        conf = self.conf
        if not conf.enabled or self._last_full is None:
            return True
        if conf.full_search_frames and self._frames_since_full + 1 >= conf.full_search_frames:
            return True
        return bool(
            conf.full_search_seconds and stamp - self._last_full >= conf.full_search_seconds
        )

    def _fresh_priors(self, names: list[str], stamp: float) -> list[str]:
        """The objects to look for around their priors in this frame."""
        return [
            name
            for name in names
            if name in self._priors
            and 0 <= stamp - self._priors[name].stamp <= self.conf.max_prior_age_seconds
        ]

    def _near_templates(self, name: str) -> np.ndarray:
        """The templates whose views lie within `view_degrees` of the prior's, or the
        `min_templates` nearest."""
        prior = self._priors[name].pose
        angles = self.estimator.banks[name].view_angles(prior.R, prior.t)
        near = np.flatnonzero(angles <= self.conf.view_degrees)
        if len(near) < self.conf.min_templates:
            near = np.argsort(angles)[: self.conf.min_templates]
        return np.sort(near)

    def _box(self, pose: ObjectPose, K, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1): the projected bounding box of the object at `pose`, grown by the
        margins and clipped to the image (lens distortion, a few pixels, is left to them)."""
        corners = box_corners(self.estimator.objects[pose.name].mesh.bounds)
        camera = transform_points(pose.matrix, corners)
        in_front = camera[:, 2] > 1e-3
        if not in_front.any():
            return 0, 0, *size
        pixels = project(np.asarray(K), camera[in_front])
        low, high = pixels.min(axis=0), pixels.max(axis=0)
        grow = self.conf.box_margin * (high - low) + self.conf.box_margin_px
        x0, y0 = np.floor(low - grow).astype(int)
        x1, y1 = np.ceil(high + grow).astype(int) + 1
        width, height = size
        x0, x1 = min(max(x0, 0), width - 1), min(max(x1, 1), width)
        y0, y1 = min(max(y0, 0), height - 1), min(max(y1, 1), height)
        return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


class PoseFilter:
    """Exponential smoothing of each object's pose that restarts on a jump (no lag)."""

    def __init__(self, conf: PoseFilterConfig):
        conf.validate()
        self.conf = conf
        self.reset()

    def reset(self) -> None:
        self._state: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def forget(self, name: str) -> None:
        self._state.pop(name, None)

    def update(self, pose: ObjectPose) -> ObjectPose:
        """The filtered pose after measuring `pose` (the measurement itself when off)."""
        if not self.conf.enabled:
            return pose
        previous = self._state.get(pose.name)
        if previous is None or self._jumped(previous, pose):
            self._state[pose.name] = (pose.R, pose.t)
            return pose
        R0, t0 = previous
        weight = self.conf.weight
        rotations = Rotation.from_matrix(np.stack([R0, pose.R]))
        R = Slerp([0.0, 1.0], rotations)(weight).as_matrix()
        t = (1.0 - weight) * t0 + weight * pose.t
        self._state[pose.name] = (R, t)
        return dataclasses.replace(pose, R=R, t=t)

    def _jumped(self, previous: tuple[np.ndarray, np.ndarray], pose: ObjectPose) -> bool:
        R0, t0 = previous
        conf = self.conf
        return not same_pose(R0, t0, pose.R, pose.t, conf.jump_degrees, conf.jump_metres)


def _box_mask(box: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _union(boxes) -> tuple[int, int, int, int]:
    boxes = np.array(list(boxes))
    return (
        int(boxes[:, 0].min()),
        int(boxes[:, 1].min()),
        int(boxes[:, 2].max()),
        int(boxes[:, 3].max()),
    )


def _sum(timings: list[EstimateTiming]) -> EstimateTiming:
    steps = [f.name for f in dataclasses.fields(EstimateTiming)]
    return EstimateTiming(**{step: sum(getattr(t, step) for t in timings) for step in steps})
