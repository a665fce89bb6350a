"""`ockd-bag record-synthetic`: a rendered scene of default objects as a bag with ground truth."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ockd_ros.bags.io import BagTopics, BagWriter, frame_stamp
from ockd_ros.meshes import load_object
from ockd_ros.progress import progress_bar
from ockd_ros.render import Renderer


@dataclass(frozen=True)
class SyntheticBagConfig:
    objects: tuple[str, ...] = ("cream_cheese", "ketchup", "macaroni_and_cheese")
    frames: int = 30
    size: tuple[int, int] = (640, 480)  # width, height
    rate: float = 10.0  # Hz: stamps are STAMP_EPOCH_NS + i / rate
    seed: int = 0
    distractors: tuple[int, int] = (0, 2)  # inclusive range of primitive distractors
    storage: str = "sqlite3"
    topics: BagTopics = field(default_factory=BagTopics)
    scene: dict = field(default_factory=dict)  # further SceneConfig overrides (camera, lighting)


def record_synthetic(
    conf: SyntheticBagConfig, out: str | Path, renderer: Renderer | None = None
) -> Path:
    """Render one PPDR scene of `conf.objects` (dropped on a table, seen by a slowly moving
    camera) with the training data generator and write it as a bag with ground truth.

    The generator writes the scene folder to a temporary directory (its tested, public path),
    which is then streamed frame by frame into the bag. Ground truth is written for the objects
    visible in each frame. Returns the bag path.
    """
    from ockd_ros.config import merge_config
    from ockd_ros.training.scene_format import read_frame, read_scene
    from ockd_ros.training.scenes import SceneConfig, SceneGenerator

    if not conf.objects:
        raise ValueError("record-synthetic needs at least one object")
    if conf.frames < 1:
        raise ValueError(f"frames must be ≥ 1, got {conf.frames}")
    frame_stamp(0, conf.rate)  # checks the rate before any rendering
    scene_conf = merge_config(
        SceneConfig(
            meshes=",".join(conf.objects),
            scenes=1,
            frames_per_scene=conf.frames,
            seed=conf.seed,
            size=tuple(conf.size),
            objects_per_scene=len(conf.objects),
            distractors=tuple(conf.distractors),
            i0=False,
        ),
        conf.scene,
    )
    objects = [load_object(name) for name in conf.objects]
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ockd_bag_") as tmp:
        with SceneGenerator(scene_conf, objects, renderer=renderer) as generator:
            folder = generator.generate_scene(0, tmp)
        if folder is None:
            raise ValueError(f"could not draw a usable scene of {list(conf.objects)} (see the log)")
        meta = read_scene(folder)
        instances = [i for i in meta.instances if i.kind == "object"]
        with BagWriter(out, conf.storage) as bag:
            for k in progress_bar(range(len(meta.frames)), desc="frames", unit="frame"):
                frame = read_frame(folder, meta, k, with_i0=False)
                truth = [
                    (i.name, frame.info.object_pose(i))
                    for i in instances
                    if i.id in frame.info.visible
                ]
                bag.write_frame(
                    frame_stamp(k, conf.rate), frame.rgb, frame.info.K, truth, conf.topics
                )
    return out
