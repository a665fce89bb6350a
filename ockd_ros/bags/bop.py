"""`ockd-bag from-bop`: the frames of a BOP split as a bag, every annotated instance included."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ockd_ros.bags.io import BagTopics, BagWriter, frame_stamp
from ockd_ros.eval.bop import BopDataset
from ockd_ros.geometry import make_pose
from ockd_ros.progress import progress_bar

BOP_SCENE_SPACING_S = 100_000  # seconds between BOP scenes: far more than any scene lasts


@dataclass(frozen=True)
class BopBagConfig:
    dataset: str = "../shared/data/lmo"
    split: str = "test"
    scenes: tuple[int, ...] = ()  # scene ids; empty: all
    max_frames: int | None = None  # the first frames only
    rate: float = 10.0  # Hz: image im_id is at STAMP_EPOCH_NS + scene offset + im_id / rate
    storage: str = "sqlite3"
    topics: BagTopics = field(default_factory=BagTopics)


def bop_stamp(scene_id: int, im_id: int, rate: float) -> int:
    """Stamp (ns) of BOP image `im_id` of scene `scene_id`."""
    return frame_stamp(im_id, rate) + scene_id * BOP_SCENE_SPACING_S * 10**9


def from_bop(conf: BopBagConfig, out: str | Path) -> Path:
    """Write the frames of a BOP split as a bag: images, CameraInfo (the frame's K), ground truth
    `T_cam_obj` on `gt_poses/obj_XXXXXX`, one message per instance (an object may appear more
    than once in a frame). Evaluate it with `eval --bop-dataset` so that the names resolve to
    the dataset's models. Returns the bag path."""
    dataset = BopDataset(conf.dataset, conf.split)
    frames = [f for f in dataset.frames() if not conf.scenes or f.scene_id in conf.scenes]
    if not frames:
        raise ValueError(f"no frames of scenes {list(conf.scenes)} in {dataset.root}/{conf.split}")
    frames = frames[: conf.max_frames]
    out = Path(out)
    with BagWriter(out, conf.storage) as bag:
        for frame in progress_bar(frames, desc="frames", unit="frame"):
            truth = [(dataset.models[i.obj_id].name, make_pose(i.R, i.t)) for i in frame.instances]
            stamp = bop_stamp(frame.scene_id, frame.im_id, conf.rate)
            bag.write_frame(stamp, frame.load_rgb(), frame.K, truth, conf.topics)
    return out
