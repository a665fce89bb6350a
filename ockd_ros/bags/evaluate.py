"""`ockd-bag eval`: a bag as the evaluator's source, the estimates written to a results bag.

A bag is the stream of one camera, so objects are tracked: looked for around their last poses
first (`TrackingConfig`, off with `--no-tracking`). Frames go through the same step and scoring
as `ockd-eval bop` (`ockd_ros.eval.evaluate`).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from ockd_ros.bags.io import BagError, BagFrame, BagSource, BagTopics, BagWriter, qualified_topic
from ockd_ros.bags.messages import pose_message
from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.evaluate import Evaluator, FrameResult, Target
from ockd_ros.eval.outputs import OverlayFrames, write_outputs
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.pose.estimator import Estimator, EstimatorConfig, default_config
from ockd_ros.pose.tracking import Tracker, TrackingConfig
from ockd_ros.render import Renderer

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BagEvalConfig:
    topics: BagTopics = field(default_factory=BagTopics)
    objects: tuple[str, ...] = ()  # names or mesh paths; empty: the objects with gt topics
    units: str = "mm"  # units of mesh paths
    bop_dataset: str = ""  # BOP dataset folder: obj_XXXXXX names are its models (and metrics)
    bop_split: str = "test"
    rectified: bool = False  # images are rectified: use CameraInfo's P and no distortion
    max_frames: int | None = None
    overlays: int = 4  # frames drawn with predicted (and true) outlines, spread over the bag
    storage: str = "sqlite3"  # of the results bag
    estimator: EstimatorConfig = field(default_factory=lambda: default_config("ockd"))
    # A bag is a stream of one camera: objects are looked for around their last poses first.
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class BagEvalResult:
    """What `evaluate_bag` did: files written, counts and seconds. loop: from opening the
    results bag to closing it; frames: the sum of the per-frame times (reading, decoding,
    estimating, writing: the loop without its one-time costs); estimate: the estimator calls."""

    report: Path
    results_bag: Path
    frames: int
    skipped: int
    loop_seconds: float
    frame_seconds: float
    estimate_seconds: float
    error: str | None = None


class ResultsBag:
    """Writes each frame's poses to a results bag as they come (a `FrameWriter`): one
    PoseStamped per found object on `result_prefix + name`, at the image's stamp and log time."""

    def __init__(self, out: BagWriter, topics: BagTopics):
        self.out = out
        self.topics = topics

    def write(self, frame: BagFrame, result: FrameResult) -> None:
        for pose in result.poses:
            msg = pose_message(pose.matrix, frame.stamp, frame.frame_id)
            self.out.write(self.topics.result_prefix + pose.name, msg, frame.log_time)


def evaluate_bag(
    conf: BagEvalConfig,
    bag: str | Path,
    out_dir: str | Path,
    command: str | None = None,
    renderer: Renderer | None = None,
) -> BagEvalResult:
    """Track the objects over every image of `bag` (with the latest CameraInfo) and write to
    `out_dir`: `poses/` (a bag of `object_poses/<name>` at the images' stamps), `report.md`,
    `metrics.json`, `times.png`, `accuracy.png` (with ground truth) and overlay PNGs.

    A bag that breaks part-way still gets its results bag and report for the frames before the
    damage; the `BagError` is raised after they are written.
    """
    bag, out_dir = Path(bag), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "poses"
    if results_path.exists():
        raise ValueError(f"{results_path} exists already: choose a new --out folder")
    with BagSource(bag, conf.topics, conf.rectified) as source:
        targets = _targets(conf, source.gt_names, bag)
        meshes = [t.mesh for t in targets.values()]
        estimator = Estimator(conf.estimator, meshes, renderer=renderer, progress=True)
        evaluator = Evaluator(Tracker(estimator, conf.tracking), targets)
        total = source.image_count
        if conf.max_frames is not None:
            total = min(total, conf.max_frames)
        overlays = OverlayFrames(conf.overlays, total)
        start = time.perf_counter()
        # The results bag is closed (not aborted) on any error: what was computed is kept.
        with BagWriter(results_path, conf.storage) as out:
            frames = itertools.islice(source.frames(), conf.max_frames)
            try:
                evaluator.run(frames, [ResultsBag(out, conf.topics), overlays], total)
            except BagError as error:
                evaluator.tally.error = str(error)
                LOG.error("%s; writing the results of the frames before it", error)
        loop = time.perf_counter() - start
    report = write_outputs(
        out_dir,
        evaluator,
        title=f"Bag evaluation: {conf.estimator.backend} on {bag.name}",
        source=[
            f"- bag: {bag}, image topic {qualified_topic(conf.topics.image)}, camera info "
            f"{qualified_topic(conf.topics.camera_info)}",
            f"- results bag: `poses/` ({qualified_topic(conf.topics.result_prefix)}<name>, "
            "image stamps)",
        ],
        metrics={"bag": str(bag), "config": dataclasses.asdict(conf)},
        overlays=overlays,
        command=command,
        renderer=renderer,
    )
    tally = evaluator.tally
    result = BagEvalResult(
        report=report,
        results_bag=results_path,
        frames=tally.frames,
        skipped=sum(tally.skipped.values()),
        loop_seconds=loop,
        frame_seconds=sum(tally.frame_ms) / 1000,
        estimate_seconds=sum(tally.estimate_ms) / 1000,
        error=tally.error,
    )
    if tally.error:
        raise BagError(f"{tally.error} (results of the {tally.frames} frames before it: {report})")
    return result


def _targets(conf: BagEvalConfig, gt_names: list[str], bag: Path) -> dict[str, Target]:
    """The objects to look for: `conf.objects`, else those with ground truth in the bag; names
    of a BOP dataset's models (`obj_XXXXXX`) are scored as `ockd-eval bop` scores them."""
    names = list(conf.objects) or gt_names
    if not names:
        raise ValueError(
            f"bag {bag} has no ground-truth topics ({qualified_topic(conf.topics.gt_prefix)}"
            "<name>): say which objects to look for with --objects"
        )
    models = {}
    if conf.bop_dataset:
        dataset = BopDataset(conf.bop_dataset, conf.bop_split)
        models = {model.name: model for model in dataset.models.values()}
    targets = {}
    for index, name in enumerate(names):
        if name in models:
            target = Target.from_bop(models[name])
        else:
            target = Target.from_mesh(load_object(resolve_object(name, units=conf.units)), index)
        targets[target.name] = target
    return targets
