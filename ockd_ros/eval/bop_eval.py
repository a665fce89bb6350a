"""Pose accuracy on a BOP dataset (`ockd-eval bop`): a BOP folder as the evaluator's source.

BOP frames are stills, not a video: every frame gets a full search (no tracking), for the
objects annotated in it (the BOP convention). Besides the common report the estimates go to a
BOP results CSV for the BOP toolkit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ockd_ros.camera_messages import CameraIntrinsics
from ockd_ros.eval.bop import BopDataset, BopEstimate, BopFrame, write_results_csv
from ockd_ros.eval.evaluate import EvalFrame, Evaluator, FrameResult, Target
from ockd_ros.eval.outputs import OverlayFrames, write_outputs
from ockd_ros.geometry import make_pose
from ockd_ros.pose.estimator import Estimator, EstimatorConfig, default_config
from ockd_ros.pose.tracking import Tracker, TrackingConfig


@dataclass(frozen=True)
class BopEvalConfig:
    dataset: str = "../shared/data/lmo"
    split: str = "test"
    objects: tuple[int, ...] = ()  # object ids to evaluate; empty: every object of the dataset
    max_frames: int | None = None  # the first frames only (quick checks)
    overlays: int = 4  # frames drawn with predicted and true outlines, spread over the run
    estimator: EstimatorConfig = field(default_factory=lambda: default_config("ockd"))


def evaluate_bop(conf: BopEvalConfig, out_dir: Path, command: str | None = None) -> Path:
    """Estimate the pose of each annotated object in every frame, score them and write to
    `out_dir`: `report.md`, `metrics.json`, plots, overlay PNGs and a BOP results CSV. Returns
    the report path.

    command: the command line to record in the report, if any.
    """
    dataset = BopDataset(conf.dataset, conf.split)
    obj_ids = list(conf.objects) or sorted(dataset.models)
    unknown = sorted(set(obj_ids) - set(dataset.models))
    if unknown:
        raise ValueError(f"objects {unknown} are not in {dataset.root} ({sorted(dataset.models)})")
    targets = {t.name: t for t in (Target.from_bop(dataset.models[i]) for i in obj_ids)}
    estimator = Estimator(conf.estimator, [t.mesh for t in targets.values()], progress=True)
    evaluator = Evaluator(Tracker(estimator, TrackingConfig(enabled=False)), targets)
    frames = dataset.frames()[: conf.max_frames]
    out_dir.mkdir(parents=True, exist_ok=True)
    results = BopResults(targets)
    overlays = OverlayFrames(conf.overlays, len(frames))
    evaluator.run(eval_frames(frames, targets), [results, overlays], len(frames))
    csv_name = f"ockdros-{conf.estimator.backend}_{dataset.root.name}-{conf.split}.csv"
    write_results_csv(out_dir / csv_name, results.estimates)
    report = write_outputs(
        out_dir,
        evaluator,
        title=f"Pose evaluation: {conf.estimator.backend} on {dataset.root.name}/{conf.split}",
        source=[
            f"- dataset: {conf.dataset}, split {conf.split}, {len(frames)} frames",
            f"- BOP results: `{csv_name}`",
        ],
        metrics={"config": dataclasses.asdict(conf)},
        overlays=overlays,
        command=command,
    )
    print(report.read_text())
    return report


def eval_frames(frames: Iterable[BopFrame], targets: dict[str, Target]) -> Iterator[EvalFrame]:
    """The BOP frames as the evaluator takes them, each with the annotated instances of the
    targets, to be looked for; K is the image's own and there is no distortion."""
    names = {target.obj_id: name for name, target in targets.items()}
    for frame in frames:
        rgb = frame.load_rgb()
        size = (rgb.shape[1], rgb.shape[0])
        truth = [
            (names[i.obj_id], make_pose(i.R, i.t)) for i in frame.instances if i.obj_id in names
        ]
        yield EvalFrame(
            rgb,
            CameraIntrinsics(frame.K, np.zeros(0), size),
            truth,
            scene_id=frame.scene_id,
            im_id=frame.im_id,
            objects=tuple(dict.fromkeys(name for name, _ in truth)),
        )


class BopResults:
    """Collects the estimates of a run as BOP results CSV rows (a `FrameWriter`)."""

    def __init__(self, targets: dict[str, Target]):
        self.targets = targets
        self.estimates: list[BopEstimate] = []

    def write(self, frame: EvalFrame, result: FrameResult) -> None:
        for pose in sorted(result.poses, key=lambda p: self.targets[p.name].obj_id):
            obj_id = self.targets[pose.name].obj_id
            seconds = result.timing.total
            self.estimates.append(
                BopEstimate(
                    frame.scene_id, frame.im_id, obj_id, pose.score, pose.R, pose.t, seconds
                )
            )
