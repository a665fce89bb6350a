"""The one evaluation path: frames from any source, the tracker, one scoring rule.

`ockd-eval bop` and `ockd-bag eval` differ only in where their frames come from (a BOP folder, a
bag) and in what they write besides the report (a BOP results CSV, a results bag). A frame
arrives decoded as the node decodes it: RGB, the intrinsics of its CameraInfo and the ground truth
as (object name, T_cam_obj) per instance. From there every frame takes the same step:

1. the intrinsics are fitted to the image as the node fits them (`CameraIntrinsics.for_image`:
   scaled to a resized image, a frame of another aspect ratio skipped; `.distortion`: none when
   D is empty or zero);
2. the tracker looks for the objects (with tracking off, a full search of every frame);
3. every ground-truth instance is scored by `score_instances`.

`Evaluator.run` is the loop over a source, with a progress bar, handing each frame's result to
the writers as it comes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.camera_messages import CameraIntrinsics
from ockd_ros.eval.bop import BopModel
from ockd_ros.eval.metrics import add_error, adds_error
from ockd_ros.eval.report import InstanceResult
from ockd_ros.meshes import ObjectMesh, load_object
from ockd_ros.pose.estimator import EstimateTiming, ObjectPose
from ockd_ros.pose.tracking import TRACKED, Tracker
from ockd_ros.progress import progress_bar

LOG = logging.getLogger(__name__)

METRIC_POINTS = 1000  # surface points of a mesh that is not a BOP model, for ADD / ADD-S
NO_CAMERA_INFO = "no CameraInfo yet"


@dataclass(frozen=True, eq=False)
class Target:
    """An object to look for, with what its metrics need: N×3 points (metres) for ADD and
    ADD-S, and the diameter that recall is relative to. obj_id: the BOP object id, or the
    object's position in the list of objects."""

    mesh: ObjectMesh
    obj_id: int
    points: np.ndarray
    diameter: float

    @property
    def name(self) -> str:
        return self.mesh.name

    @classmethod
    def from_bop(cls, model: BopModel) -> Target:
        """A BOP model, scored on its `models_eval` vertices with its annotated diameter."""
        return cls(load_object(model.spec()), model.obj_id, model.eval_points(), model.diameter)

    @classmethod
    def from_mesh(cls, mesh: ObjectMesh, obj_id: int) -> Target:
        return cls(mesh, obj_id, mesh.sample_points(METRIC_POINTS), mesh.diameter)


@dataclass
class EvalFrame:
    """One image, decoded as the node decodes it, with its ground truth.

    intrinsics: of the frame's CameraInfo, which may describe a larger image of the same
    camera; None when no CameraInfo came yet.
    ground_truth: (object name, 4×4 T_cam_obj) per annotated instance; an object may appear
    more than once.
    stamp: nanoseconds (tracking reads it); None for frames that are not a video.
    scene_id, im_id: where the frame comes from (a BOP scene and image; 0 and the image's index
    in a bag).
    objects: the objects to look for; None for every target (BOP looks for the annotated ones).
    skipped: why the source could not give this frame as the node would take it (an image that
    does not decode: `rgb` is None; a CameraInfo with unusable intrinsics); the frame is
    skipped and counted.
    """

    rgb: np.ndarray | None
    intrinsics: CameraIntrinsics | None
    ground_truth: list[tuple[str, np.ndarray]]
    stamp: int | None = None
    scene_id: int = 0
    im_id: int = 0
    objects: tuple[str, ...] | None = None
    skipped: str | None = None


@dataclass
class FrameResult:
    """What one frame gave: the poses found and the errors of each ground-truth instance.

    status: the outcome (FOUND or why not) of each object the tracker looked for in the frame;
    an object waiting for the next full search was not looked for, so it is neither searched
    nor missed here. intrinsics: as fitted to the image and given to the estimator. skipped: why
    the frame was not evaluated (then nothing else is set).
    """

    poses: list[ObjectPose] = field(default_factory=list)
    instances: list[InstanceResult] = field(default_factory=list)
    timing: EstimateTiming | None = None
    status: dict[str, str] = field(default_factory=dict)
    tracked: int = 0  # poses found around their prior (the others by a full search)
    intrinsics: CameraIntrinsics | None = None
    skipped: str | None = None

    @property
    def searched(self) -> list[str]:
        """The objects looked for in this frame."""
        return list(self.status)


class FrameWriter(Protocol):
    """Receives each frame with its result as the evaluation goes (a results bag, a CSV)."""

    def write(self, frame: EvalFrame, result: FrameResult) -> None: ...


def score_instances(
    poses: Mapping[str, np.ndarray],
    ground_truth: Sequence[tuple[str, np.ndarray]],
    targets: Mapping[str, Target],
    scene_id: int = 0,
    im_id: int = 0,
) -> list[InstanceResult]:
    """ADD and ADD-S of every ground-truth instance of the targets (other objects are not
    scored), given the estimated `T_cam_obj` (4×4) of each object found in the frame: by the
    estimator, or by the node (`make demo` scores what it published).

    The estimator gives at most one pose per object while a frame may hold several instances of
    it (BOP scenes do): the pose is scored against the instance it is closest to (by ADD-S for
    symmetric objects, ADD for the others), and every other instance counts as missed, with
    infinite errors. True rotations are taken to the rotation a quaternion holds, which is how a
    bag stores them: BOP's text files round R off a rotation by up to ~1e-4.
    """
    results = []
    for name in dict.fromkeys(name for name, _ in ground_truth if name in targets):
        target = targets[name]
        truths = [_rigid(T) for other, T in ground_truth if other == name]
        for add, adds in _instance_errors(poses.get(name), truths, target):
            results.append(
                InstanceResult(
                    scene_id,
                    im_id,
                    target.obj_id,
                    name,
                    target.mesh.symmetric,
                    target.diameter,
                    add,
                    adds,
                )
            )
    return results


def _instance_errors(
    pose: np.ndarray | None, truths: list[np.ndarray], target: Target
) -> list[tuple[float, float]]:
    missed = (np.inf, np.inf)
    if pose is None:
        return [missed] * len(truths)
    R, t = pose[:3, :3], pose[:3, 3]
    errors = [
        (
            add_error(R, t, T[:3, :3], T[:3, 3], target.points),
            adds_error(R, t, T[:3, :3], T[:3, 3], target.points),
        )
        for T in truths
    ]
    closest = int(np.argmin([adds if target.mesh.symmetric else add for add, adds in errors]))
    return [error if k == closest else missed for k, error in enumerate(errors)]


def _rigid(T: np.ndarray) -> np.ndarray:
    T = np.array(T, dtype=np.float64)
    T[:3, :3] = Rotation.from_matrix(T[:3, :3]).as_matrix()
    return T


@dataclass
class Tally:
    """What an evaluation saw, kept per frame in a few numbers (a bag may be long).

    frame_ms: per frame read, from the end of the previous one (reading, decoding, estimating,
    writing). timings: the estimator's steps per evaluated frame. searched, found: frames in
    which each object was looked for and found; with_gt, found_with_gt: the same over the frames
    that hold it in their ground truth. error: why the source stopped early, if it did.
    """

    instances: list[InstanceResult] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)
    timings: list[EstimateTiming] = field(default_factory=list)
    searched: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    with_gt: Counter = field(default_factory=Counter)
    found_with_gt: Counter = field(default_factory=Counter)
    status: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # frames by reason
    tracked: int = 0
    error: str | None = None

    @property
    def frames(self) -> int:
        """Frames evaluated (skipped ones aside)."""
        return len(self.timings)

    @property
    def estimate_ms(self) -> list[float]:
        return [1000 * timing.total for timing in self.timings]

    def add(self, result: FrameResult, frame_ms: float) -> None:
        self.frame_ms.append(frame_ms)
        if result.skipped:
            self.skipped[result.skipped] += 1
            return
        self.timings.append(result.timing)
        self.instances.extend(result.instances)
        self.searched.update(result.searched)
        self.found.update(pose.name for pose in result.poses)
        self.status.update(result.status.values())
        self.tracked += result.tracked
        in_truth = {r.name for r in result.instances}
        self.with_gt.update(in_truth)
        self.found_with_gt.update(in_truth & {pose.name for pose in result.poses})


class Evaluator:
    """Evaluates frames from any source with one tracker and one scoring rule; `tally` keeps
    what was seen, including the frames before a source that breaks part-way."""

    def __init__(self, tracker: Tracker, targets: Mapping[str, Target]):
        unknown = sorted(set(targets) - set(tracker.estimator.objects))
        if unknown:
            raise ValueError(f"targets {unknown} are not objects of the tracker's estimator")
        self.tracker = tracker
        self.targets = dict(targets)
        self.tally = Tally()

    def evaluate_frame(self, frame: EvalFrame) -> FrameResult:
        """The one per-frame step: fit the intrinsics as the node does, track, score."""
        if frame.skipped:  # a frame the node would skip too
            return FrameResult(skipped=frame.skipped)
        if frame.intrinsics is None:
            # Drivers often start the image stream a moment before CameraInfo: skip, do not fail.
            return FrameResult(skipped=NO_CAMERA_INFO)
        height, width = frame.rgb.shape[:2]
        try:
            intrinsics = frame.intrinsics.for_image((width, height))
        except ValueError as error:  # the node skips such a frame too
            return FrameResult(skipped=str(error))
        names = list(self.targets)
        if frame.objects is not None:
            names = [name for name in frame.objects if name in self.targets]
        stamp = None if frame.stamp is None else frame.stamp / 1e9
        tracker = self.tracker
        poses = tracker.track(frame.rgb, intrinsics.K, intrinsics.distortion, stamp, names)
        return FrameResult(
            poses=poses,
            instances=score_instances(
                {pose.name: pose.matrix for pose in poses},
                frame.ground_truth,
                self.targets,
                frame.scene_id,
                frame.im_id,
            ),
            timing=tracker.last_timing,
            status=dict(tracker.last_status),
            tracked=sum(mode == TRACKED for mode in tracker.last_mode.values()),
            intrinsics=intrinsics,
        )

    def run(
        self,
        frames: Iterable[EvalFrame],
        writers: Sequence[FrameWriter] = (),
        total: int | None = None,
    ) -> Tally:
        """Evaluate `frames` in order (`total`: their number, for the progress bar), handing
        each result to the `writers`. An error of the source propagates; the tally keeps the
        frames before it."""
        tick = time.perf_counter()
        with progress_bar(total=total, desc="frames", unit="frame") as bar:
            for frame in frames:
                result = self.evaluate_frame(frame)
                if result.skipped and result.skipped not in self.tally.skipped:
                    LOG.warning("skipping frame %d: %s", frame.im_id, result.skipped)
                for writer in writers:
                    writer.write(frame, result)
                # Timed from the end of the previous frame, so reading and decoding count too.
                now = time.perf_counter()
                self.tally.add(result, 1000 * (now - tick))
                tick = now
                bar.update()
        return self.tally
