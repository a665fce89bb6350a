"""rosbag2 tools: record synthetic bags, convert BOP scenes to bags, evaluate the estimator.

Bags are read and written with the pure-Python `rosbags` library (sqlite3 or mcap storage, the
ROS 2 Jazzy typestore); nothing here imports rclpy. A bag holds

    /image               sensor_msgs/Image (rgb8)
    /camera_info         sensor_msgs/CameraInfo (K, D, P, size)
    /gt_poses/<name>     geometry_msgs/PoseStamped: T_cam_obj of an object, optional
    /object_poses/<name> geometry_msgs/PoseStamped: estimates, in the bags `eval` writes

with one header stamp per frame shared by all its messages (the log time equals it). Topic names
are options and match with or without the leading '/', so a bag of a real camera driver
(`/camera/color/image_raw`, `/camera/color/camera_info`) is evaluated as recorded.

Stamps: synthetic frame i is at `STAMP_EPOCH_NS + i / rate`; BOP image `im_id` of scene
`scene_id` at `STAMP_EPOCH_NS + scene_id * BOP_SCENE_SPACING_S + im_id / rate`, so gaps in the
image ids stay gaps in time.

Bags are streamed: one image is in memory at a time, whatever the bag's length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from ockd_ros.camera_messages import (
    CameraIntrinsics,
    ImageDecodeError,
    camera_info_to_intrinsics,
    compressed_message_to_rgb,
    image_message_to_rgb,
)
from ockd_ros.eval.metrics import add_error, adds_error
from ockd_ros.eval.report import InstanceResult, markdown_table, outline_overlay, summarize
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import ObjectMesh, load_object, resolve_object
from ockd_ros.pose.estimator import Estimator, EstimatorConfig, ObjectPose, default_config
from ockd_ros.pose.tracking import TRACKED, Tracker, TrackingConfig
from ockd_ros.render import Renderer
from ockd_ros.visualize import write_rgb

LOG = logging.getLogger(__name__)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
STAMP_EPOCH_NS = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC: a fixed, recognisable start
BOP_SCENE_SPACING_S = 100_000  # seconds between BOP scenes: far more than any scene lasts
CAMERA_FRAME = "camera_color_optical_frame"
METRIC_POINTS = 1000  # surface points per object for ADD / ADD-S


class BagError(ValueError):
    """A bag that cannot be used: missing, corrupt or truncated, a topic missing or of the wrong
    type. The message names the bag and what is wrong."""


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the leading '/' is optional when matching."""

    image: str = "/image"
    camera_info: str = "/camera_info"
    gt_prefix: str = "/gt_poses/"  # + object name
    result_prefix: str = "/object_poses/"  # + object name


def _topic(name: str) -> str:
    """The fully qualified form of a topic name, so 'image' and '/image' match."""
    return "/" + name.strip().lstrip("/")


# ---------------------------------------------------------------------------------------------
# Messages


def _header(stamp_ns: int, frame_id: str):
    time_msg = TYPESTORE.types["builtin_interfaces/msg/Time"]
    header = TYPESTORE.types["std_msgs/msg/Header"]
    return header(
        stamp=time_msg(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id
    )


def stamp_ns(msg) -> int:
    """The header stamp of a message in nanoseconds."""
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def image_message(rgb: np.ndarray, stamp: int, frame_id: str = CAMERA_FRAME):
    """A sensor_msgs/Image (rgb8) of an H×W×3 uint8 image."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    return TYPESTORE.types[IMAGE](
        header=_header(stamp, frame_id),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * width,
        data=rgb.reshape(-1),
    )


def camera_info_message(
    K: np.ndarray,
    size: tuple[int, int],
    stamp: int,
    frame_id: str = CAMERA_FRAME,
    D: np.ndarray | None = None,
):
    """A sensor_msgs/CameraInfo for pinhole K (3×3), image size (width, height), distortion D."""
    D = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).reshape(-1)
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = TYPESTORE.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return TYPESTORE.types[CAMERA_INFO](
        header=_header(stamp, frame_id),
        height=size[1],
        width=size[0],
        distortion_model="plumb_bob",
        d=D,
        k=np.asarray(K, dtype=np.float64).reshape(9),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def pose_message(T: np.ndarray, stamp: int, frame_id: str = CAMERA_FRAME):
    """A geometry_msgs/PoseStamped of a 4×4 pose (here `T_cam_obj`, frame_id = the camera)."""
    types = TYPESTORE.types
    x, y, z, w = Rotation.from_matrix(np.asarray(T)[:3, :3]).as_quat()
    px, py, pz = (float(v) for v in np.asarray(T)[:3, 3])
    pose = types["geometry_msgs/msg/Pose"](
        position=types["geometry_msgs/msg/Point"](x=px, y=py, z=pz),
        orientation=types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
    )
    return types[POSE_STAMPED](header=_header(stamp, frame_id), pose=pose)


def pose_from_message(msg) -> np.ndarray:
    """The 4×4 pose of a geometry_msgs/PoseStamped."""
    q, p = msg.pose.orientation, msg.pose.position
    R = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    return make_pose(R, np.array([p.x, p.y, p.z]))


# ---------------------------------------------------------------------------------------------
# Writing


class BagWriter:
    """A new rosbag2 written message by message; connections are added on first use.

    Leaving the `with` block closes the bag even after an exception (rosbags' own writer would
    abort it), so everything written up to an error stays readable.
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3"):
        if storage not in STORAGES:
            raise ValueError(f"unknown bag storage {storage!r}; choose from {list(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise ValueError(f"{self.path} exists already; a bag is never overwritten")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=9, storage_plugin=STORAGES[storage])
        self._connections: dict[str, object] = {}
        self.count = 0

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self._writer.close()

    def write(self, topic: str, msg, log_time: int | None = None) -> None:
        """Write `msg` on `topic` at `log_time` (ns; default its header stamp)."""
        topic = _topic(topic)
        msgtype = msg.__msgtype__
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise ValueError(f"topic {topic} carries {connection.msgtype}, not {msgtype}")
        when = stamp_ns(msg) if log_time is None else log_time
        self._writer.write(connection, when, TYPESTORE.serialize_cdr(msg, msgtype))
        self.count += 1

    def write_frame(
        self,
        stamp: int,
        rgb: np.ndarray,
        K: np.ndarray,
        ground_truth: dict[str, np.ndarray] | None = None,
        topics: BagTopics = BagTopics(),
        frame_id: str = CAMERA_FRAME,
    ) -> None:
        """One camera frame: CameraInfo, then the Image, then ground-truth `T_cam_obj` poses."""
        size = (rgb.shape[1], rgb.shape[0])
        self.write(topics.camera_info, camera_info_message(K, size, stamp, frame_id))
        self.write(topics.image, image_message(rgb, stamp, frame_id))
        for name, T in sorted((ground_truth or {}).items()):
            self.write(topics.gt_prefix + name, pose_message(T, stamp, frame_id))


def frame_stamp(index: int, rate: float) -> int:
    """Stamp (ns) of frame `index` of a recording at `rate` Hz starting at `STAMP_EPOCH_NS`."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return STAMP_EPOCH_NS + round(index * 1e9 / rate)


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class BagFrame:
    """One image of a bag with what was known at its time.

    intrinsics: from the latest CameraInfo before the image (None if none came yet).
    ground_truth: `T_cam_obj` by object name, from the gt poses with the image's header stamp.
    """

    index: int
    log_time: int
    stamp: int
    frame_id: str
    rgb: np.ndarray
    intrinsics: CameraIntrinsics | None
    ground_truth: dict[str, np.ndarray]


class BagSource:
    """Streams the frames of a bag (a rosbag2 folder, or one .db3 / .mcap file).

    Opening checks the topics: the image topic must exist and be an Image or CompressedImage,
    the CameraInfo topic must exist. Corrupt or truncated storage raises `BagError` naming the
    bag and how many frames were read before the damage.
    """

    def __init__(self, path: str | Path, topics: BagTopics = BagTopics(), rectified: bool = False):
        self.path = Path(path)
        self.topics = topics
        self.rectified = rectified
        self.frames_read = 0
        self._reader: AnyReader | None = None

    def __enter__(self) -> BagSource:
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            storage = sorted(p.name for p in self.path.glob("*") if p.suffix in (".db3", ".mcap"))
            raise BagError(
                f"bag {self.path} has no metadata.yaml (was the recording closed?)"
                + (f"; try the storage file itself: {self.path / storage[0]}" if storage else "")
            )
        try:
            self._reader = AnyReader([self.path], default_typestore=TYPESTORE)
            self._reader.open()
        except Exception as error:  # rosbags raises many types for a damaged bag; all mean that
            self._reader = None
            raise BagError(
                f"cannot open bag {self.path} (corrupt or truncated?): {error}"
            ) from error
        try:
            self._find_connections()
        except BagError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception as error:  # closing a damaged file may fail: nothing to lose
                LOG.debug("closing %s: %s", self.path, error)
            self._reader = None

    @property
    def available(self) -> str:
        """The bag's topics and types, for error messages."""
        conns = self._reader.connections if self._reader else []
        return ", ".join(f"{c.topic} ({c.msgtype})" for c in conns) or "none"

    def _find_connections(self) -> None:
        conns = self._reader.connections
        by_topic: dict[str, list] = {}
        for c in conns:
            by_topic.setdefault(_topic(c.topic), []).append(c)
        image_topic, info_topic = _topic(self.topics.image), _topic(self.topics.camera_info)
        self.image = by_topic.get(image_topic, [])
        if not self.image:
            raise BagError(
                f"bag {self.path} has no image topic {image_topic} (sensor_msgs/Image); "
                f"topics in it: {self.available}"
            )
        wrong = {c.msgtype for c in self.image} - {IMAGE, COMPRESSED_IMAGE}
        if wrong:
            raise BagError(
                f"bag {self.path}: topic {image_topic} has type {sorted(wrong)}, "
                f"expected {IMAGE} or {COMPRESSED_IMAGE}"
            )
        self.camera_info = by_topic.get(info_topic, [])
        if not self.camera_info:
            raise BagError(
                f"bag {self.path} has no camera info topic {info_topic} ({CAMERA_INFO}); "
                f"topics in it: {self.available}"
            )
        if {c.msgtype for c in self.camera_info} != {CAMERA_INFO}:
            raise BagError(f"bag {self.path}: topic {info_topic} is not a {CAMERA_INFO}")
        prefix = _topic(self.topics.gt_prefix).rstrip("/") + "/"
        self.gt = {
            c.id: _topic(c.topic)[len(prefix) :]
            for c in conns
            if _topic(c.topic).startswith(prefix) and c.msgtype == POSE_STAMPED
        }
        self.gt_connections = [c for c in conns if c.id in self.gt]

    @property
    def image_count(self) -> int:
        return sum(c.msgcount for c in self.image)

    @property
    def gt_names(self) -> list[str]:
        return sorted(set(self.gt.values()))

    def frames(self) -> Iterator[BagFrame]:
        """The images in log-time order. An image is yielded once the next image arrives (or the
        bag ends), so ground truth logged just after it is still attached."""
        reader = self._reader
        info_ids = {c.id for c in self.camera_info}
        image_ids = {c.id for c in self.image}
        intrinsics = None
        pending = None
        gt_by_stamp: dict[int, dict[str, np.ndarray]] = {}
        messages = reader.messages(
            connections=[*self.image, *self.camera_info, *self.gt_connections]
        )
        for conn, log_time, raw in self._guarded(messages):
            msg = self._deserialize(raw, conn)
            if conn.id in info_ids:
                intrinsics = self._intrinsics(msg)
            elif conn.id in image_ids:
                if pending is not None:
                    yield self._frame(*pending, gt_by_stamp)
                pending = (log_time, msg, intrinsics)
            else:
                gt_by_stamp.setdefault(stamp_ns(msg), {})[self.gt[conn.id]] = pose_from_message(msg)
        if pending is not None:
            yield self._frame(*pending, gt_by_stamp)

    def _guarded(self, messages) -> Iterator:
        """`messages` with storage errors turned into a `BagError` that says where."""
        try:
            yield from messages
        except Exception as error:  # sqlite3, mcap and rosbags each raise their own types
            raise BagError(
                f"bag {self.path} is corrupt or truncated after {self.frames_read} frames: "
                f"{type(error).__name__}: {error}"
            ) from error

    def _deserialize(self, raw: bytes, conn):
        try:
            return self._reader.deserialize(raw, conn.msgtype)
        except Exception as error:  # a message that does not decode is a damaged bag too
            raise BagError(
                f"bag {self.path}: cannot decode a {conn.msgtype} on {conn.topic} after "
                f"{self.frames_read} frames: {error}"
            ) from error

    def _intrinsics(self, msg) -> CameraIntrinsics:
        try:
            return camera_info_to_intrinsics(msg, rectified=self.rectified)
        except ValueError as error:
            raise BagError(f"bag {self.path}: {error}") from error

    def _frame(self, log_time, msg, intrinsics, gt_by_stamp) -> BagFrame:
        stamp = stamp_ns(msg)
        try:
            if msg.__msgtype__ == COMPRESSED_IMAGE:
                rgb = compressed_message_to_rgb(msg)
            else:
                rgb = image_message_to_rgb(msg)
        except ImageDecodeError as error:
            raise BagError(f"bag {self.path}, image {self.frames_read}: {error}") from error
        truth = gt_by_stamp.pop(stamp, {})
        # Ground truth that never met its image is dropped, so memory stays constant.
        for old in [s for s in gt_by_stamp if s < stamp]:
            del gt_by_stamp[old]
        frame = BagFrame(
            self.frames_read, log_time, stamp, msg.header.frame_id, rgb, intrinsics, truth
        )
        self.frames_read += 1
        return frame


# ---------------------------------------------------------------------------------------------
# record-synthetic


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
            for k in tqdm(range(len(meta.frames)), desc="frames", unit="frame"):
                frame = read_frame(folder, meta, k, with_i0=False)
                truth = {
                    i.name: frame.info.object_pose(i)
                    for i in instances
                    if i.id in frame.info.visible
                }
                bag.write_frame(
                    frame_stamp(k, conf.rate), frame.rgb, frame.info.K, truth, conf.topics
                )
    return out


# ---------------------------------------------------------------------------------------------
# from-bop


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
    `T_cam_obj` on `gt_poses/obj_XXXXXX` (the first instance when an object appears twice).
    Evaluate it with `eval --bop-dataset` so the names resolve to the dataset's models."""
    from ockd_ros.eval.bop import BopDataset

    dataset = BopDataset(conf.dataset, conf.split)
    frames = [f for f in dataset.frames() if not conf.scenes or f.scene_id in conf.scenes]
    if not frames:
        raise ValueError(f"no frames of scenes {list(conf.scenes)} in {dataset.root}/{conf.split}")
    frames = frames[: conf.max_frames]
    out = Path(out)
    with BagWriter(out, conf.storage) as bag:
        for frame in tqdm(frames, desc="frames", unit="frame"):
            truth: dict[str, np.ndarray] = {}
            for instance in frame.instances:
                name = dataset.models[instance.obj_id].name
                if name in truth:
                    LOG.warning(
                        "%s in image %d twice: only the first is written", name, frame.im_id
                    )
                    continue
                truth[name] = make_pose(instance.R, instance.t)
            stamp = bop_stamp(frame.scene_id, frame.im_id, conf.rate)
            bag.write_frame(stamp, frame.load_rgb(), frame.K, truth, conf.topics)
    return out


# ---------------------------------------------------------------------------------------------
# eval


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
class _Target:
    """An object to look for, with what its metrics need."""

    mesh: ObjectMesh
    points: np.ndarray
    diameter: float
    index: int


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


@dataclass
class _Tally:
    frame_ms: list[float] = field(default_factory=list)
    estimate_ms: list[float] = field(default_factory=list)
    found: Counter = field(default_factory=Counter)
    found_with_gt: Counter = field(default_factory=Counter)
    with_gt: Counter = field(default_factory=Counter)
    instances: list[InstanceResult] = field(default_factory=list)
    skipped: int = 0
    tracked: int = 0  # poses found around their prior (the rest by a full search)
    overlays: list[tuple[BagFrame, list[ObjectPose]]] = field(default_factory=list)


def evaluate_bag(
    conf: BagEvalConfig,
    bag: str | Path,
    out_dir: str | Path,
    command: str | None = None,
    renderer: Renderer | None = None,
) -> BagEvalResult:
    """Run the estimator over every image of `bag` (with the latest CameraInfo) and write to
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
    tally = _Tally()
    error = None
    with BagSource(bag, conf.topics, conf.rectified) as source:
        targets = _targets(conf, source.gt_names, bag)
        meshes = [t.mesh for t in targets.values()]
        estimator = Estimator(conf.estimator, meshes, renderer=renderer, progress=True)
        tracker = Tracker(estimator, conf.tracking)
        start = time.perf_counter()
        # The results bag is closed (not aborted) on any error: what was computed is kept.
        with BagWriter(results_path, conf.storage) as out:
            try:
                _stream(conf, source, tracker, targets, out, tally)
            except BagError as bag_error:
                error = str(bag_error)
                LOG.error("%s; writing the results of the frames before it", error)
        loop = time.perf_counter() - start
    report = _write_outputs(conf, bag, out_dir, targets, tally, command, error, renderer)
    frames = len(tally.estimate_ms)
    estimate = sum(tally.estimate_ms) / 1000
    per_frame = sum(tally.frame_ms) / 1000
    result = BagEvalResult(
        report, results_path, frames, tally.skipped, loop, per_frame, estimate, error
    )
    if error:
        raise BagError(f"{error} (results of the {frames} frames before it: {report})")
    return result


def _stream(
    conf: BagEvalConfig,
    source: BagSource,
    tracker: Tracker,
    targets: dict[str, _Target],
    out: BagWriter,
    tally: _Tally,
) -> None:
    """Estimate on each frame of `source` and write the poses to `out` as they come."""
    total = source.image_count
    if conf.max_frames is not None:
        total = min(total, conf.max_frames)
    overlay_at = set(np.linspace(0, max(total - 1, 0), conf.overlays).round().astype(int))
    tick = time.perf_counter()
    with tqdm(total=total, desc="frames", unit="frame") as bar:
        for frame in source.frames():
            if conf.max_frames is not None and frame.index >= conf.max_frames:
                break
            poses = _evaluate_frame(tracker, frame, targets, tally)
            for pose in poses:
                msg = pose_message(pose.matrix, frame.stamp, frame.frame_id)
                out.write(conf.topics.result_prefix + pose.name, msg, frame.log_time)
            if frame.index in overlay_at and frame.intrinsics is not None:
                tally.overlays.append((frame, poses))
            # Timed from the end of the previous frame, so reading and decoding count too.
            now = time.perf_counter()
            tally.frame_ms.append(1000 * (now - tick))
            tick = now
            bar.update()


def _targets(conf: BagEvalConfig, gt_names: list[str], bag: Path) -> dict[str, _Target]:
    names = list(conf.objects) or gt_names
    if not names:
        raise ValueError(
            f"bag {bag} has no ground-truth topics ({_topic(conf.topics.gt_prefix)}<name>): "
            "say which objects to look for with --objects"
        )
    models = {}
    if conf.bop_dataset:
        from ockd_ros.eval.bop import BopDataset

        models = {m.name: m for m in BopDataset(conf.bop_dataset, conf.bop_split).models.values()}
    targets = {}
    for index, name in enumerate(names):
        if name in models:
            model = models[name]
            mesh = load_object(model.spec())
            targets[mesh.name] = _Target(mesh, model.eval_points(), model.diameter, index)
        else:
            mesh = load_object(resolve_object(name, units=conf.units))
            points = mesh.sample_points(METRIC_POINTS)
            targets[mesh.name] = _Target(mesh, points, mesh.diameter, index)
    return targets


def _evaluate_frame(
    tracker: Tracker, frame: BagFrame, targets: dict[str, _Target], tally: _Tally
) -> list[ObjectPose]:
    if frame.intrinsics is None:
        # Drivers often start the image stream a moment before CameraInfo: skip, do not fail.
        tally.skipped += 1
        return []
    intr = frame.intrinsics
    if intr.size != (frame.rgb.shape[1], frame.rgb.shape[0]):
        intr = intr.scaled((frame.rgb.shape[1], frame.rgb.shape[0]))
    D = intr.D if len(intr.D) and np.any(intr.D != 0) else None
    poses = tracker.track(frame.rgb, intr.K, D, stamp=frame.stamp / 1e9)
    tally.estimate_ms.append(1000 * tracker.last_timing.total)
    tally.tracked += sum(mode == TRACKED for mode in tracker.last_mode.values())
    by_name = {p.name: p for p in poses}
    tally.found.update(list(by_name))
    for name, T in frame.ground_truth.items():
        target = targets.get(name)
        if target is None:
            continue
        tally.with_gt[name] += 1
        pose = by_name.get(name)
        add = adds = np.inf
        if pose is not None:
            tally.found_with_gt[name] += 1
            add = add_error(pose.R, pose.t, T[:3, :3], T[:3, 3], target.points)
            adds = adds_error(pose.R, pose.t, T[:3, :3], T[:3, 3], target.points)
        tally.instances.append(
            InstanceResult(
                0,
                frame.index,
                target.index,
                name,
                target.mesh.symmetric,
                target.diameter,
                add,
                adds,
            )
        )
    return poses


def _write_outputs(
    conf: BagEvalConfig,
    bag: Path,
    out_dir: Path,
    targets: dict[str, _Target],
    tally: _Tally,
    command: str | None,
    error: str | None,
    renderer: Renderer | None = None,
) -> Path:
    frames = len(tally.estimate_ms)
    header = _report_header(conf, bag, targets, tally, command, error)
    summaries = summarize(tally.instances) if tally.instances else []
    metrics = {
        "bag": str(bag),
        "frames": frames,
        "skipped_without_camera_info": tally.skipped,
        "poses_tracked": tally.tracked,
        "poses_found": sum(tally.found.values()),
        "error": error,
        "detection_rate": {n: _rate(tally.found[n], frames) for n in targets},
        "frame_ms": _stats(tally.frame_ms),
        "estimate_ms": _stats(tally.estimate_ms),
        "summaries": [dataclasses.asdict(s) for s in summaries],
        "config": dataclasses.asdict(conf),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    pictures = [_plot_times(out_dir / "times.png", tally.frame_ms, tally.estimate_ms)]
    if tally.instances:
        pictures.append(_plot_accuracy(out_dir / "accuracy.png", tally.instances))
    pictures += _write_overlays(out_dir, tally.overlays, targets, renderer)
    if summaries:
        table = markdown_table(summaries)
    else:
        table = "No ground truth in the bag for these objects: no ADD / ADD-S."
    lines = [*header, "", table, "", "## Plots and overlays", ""]
    lines += [f"![{p.stem}]({p.name})" for p in pictures if p is not None]
    report = out_dir / "report.md"
    report.write_text("\n".join([*lines, ""]))
    return report


def _rate(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "max": float(v.max()),
    }


def _report_header(conf, bag, targets, tally: _Tally, command, error) -> list[str]:
    frames = len(tally.estimate_ms)
    est, frame = _stats(tally.estimate_ms), _stats(tally.frame_ms)
    lines = [
        f"# Bag evaluation: {conf.estimator.backend} on {bag.name}",
        "",
        *([f"- command: `{command}`"] if command else []),
        f"- date: {datetime.date.today().isoformat()}",
        f"- bag: {bag}, image topic {_topic(conf.topics.image)}, camera info "
        f"{_topic(conf.topics.camera_info)}",
        f"- frames evaluated: {frames} (skipped before the first CameraInfo: {tally.skipped})",
        f"- templates: {conf.estimator.templates.views} views × "
        f"{conf.estimator.templates.inplane} in-plane",
        f"- tracking: {'on' if conf.tracking.enabled else 'off'}; "
        f"{tally.tracked} of {sum(tally.found.values())} poses found around the previous one",
        f"- results bag: `poses/` ({_topic(conf.topics.result_prefix)}<name>, image stamps)",
    ]
    if error:
        lines.append(f"- **stopped early**: {error}")
    if est:
        lines += [
            f"- estimator time per frame: median {est['median']:.0f} ms, p90 {est['p90']:.0f}, "
            f"max {est['max']:.0f} ({1000 / est['mean']:.2f} fps)",
            f"- time per frame incl. bag reading, decoding, writing: median "
            f"{frame['median']:.0f} ms ({1000 / frame['mean']:.2f} fps)",
        ]
    lines += [
        "",
        "## Detection rate",
        "",
        "| object | frames found | detection rate (%) | found when in ground truth |",
        "|---|---|---|---|",
    ]
    for name in targets:
        in_gt = tally.with_gt[name]
        gt_rate = f"{tally.found_with_gt[name]}/{in_gt}" if in_gt else "no ground truth"
        lines.append(
            f"| {name} | {tally.found[name]}/{frames} | {_rate(tally.found[name], frames):.1f} "
            f"| {gt_rate} |"
        )
    lines += [
        "",
        "## Accuracy",
        "",
        "AUC of ADD / ADD-S up to 10 cm (YCB-Video toolbox); recall: ADD (ADD-S for symmetric "
        "objects) below 10 % of the diameter.",
    ]
    return lines


# Plots are drawn with OpenCV: the core does not depend on matplotlib.
PLOT_SIZE = (640, 360)
PLOT_MARGIN = (60, 30, 20, 45)  # left, top, right, bottom


def _canvas(title: str, xlabel: str, ylabel: str) -> np.ndarray:
    canvas = np.full((PLOT_SIZE[1], PLOT_SIZE[0], 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, title, (PLOT_MARGIN[0], 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, xlabel, (PLOT_SIZE[0] // 2 - 40, PLOT_SIZE[1] - 8), font, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    cv2.putText(canvas, ylabel, (4, PLOT_MARGIN[1] + 12), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def _to_pixels(x, y, xmax: float, ymax: float) -> np.ndarray:
    left, top, right, bottom = PLOT_MARGIN
    width, height = PLOT_SIZE[0] - left - right, PLOT_SIZE[1] - top - bottom
    px = left + np.asarray(x, float) / max(xmax, 1e-9) * width
    py = PLOT_SIZE[1] - bottom - np.asarray(y, float) / max(ymax, 1e-9) * height
    return np.stack([px, py], axis=-1).round().astype(np.int32)


def _axes(canvas: np.ndarray, xmax: float, ymax: float, xfmt: str, yfmt: str) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    corner = _to_pixels(0, 0, xmax, ymax)
    cv2.line(canvas, tuple(corner), tuple(_to_pixels(xmax, 0, xmax, ymax)), (0, 0, 0), 1)
    cv2.line(canvas, tuple(corner), tuple(_to_pixels(0, ymax, xmax, ymax)), (0, 0, 0), 1)
    for k in range(5):
        x, y = xmax * k / 4, ymax * k / 4
        px = _to_pixels(x, 0, xmax, ymax)
        cv2.putText(canvas, format(x, xfmt), (int(px[0]) - 12, int(px[1]) + 16), font, 0.35,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
        py = _to_pixels(0, y, xmax, ymax)
        cv2.putText(canvas, format(y, yfmt), (6, int(py[1]) + 4), font, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)  # fmt: skip


def _plot_times(path: Path, frame_ms: list[float], estimate_ms: list[float]) -> Path | None:
    """Histogram of the per-frame times: estimator alone (blue) and whole frame (orange)."""
    if not frame_ms:
        return None
    top = max(max(frame_ms), 1.0) * 1.05
    bins = np.linspace(0, top, 21)
    counts = [np.histogram(v, bins)[0] for v in (estimate_ms, frame_ms)]
    ymax = max(1, max(int(c.max()) for c in counts))
    canvas = _canvas("time per frame: estimator (blue), whole frame (orange)", "ms", "frames")
    _axes(canvas, top, ymax, ".0f", ".0f")
    width = bins[1] - bins[0]
    for shift, color, count in ((0.0, (40, 90, 220), counts[0]), (0.5, (240, 140, 30), counts[1])):
        for k, n in enumerate(count):
            if n:
                a = _to_pixels(bins[k] + shift * width, 0, top, ymax)
                b = _to_pixels(bins[k] + (shift + 0.5) * width, n, top, ymax)
                cv2.rectangle(canvas, tuple(a), tuple(b), color, -1)
    write_rgb(path, canvas)
    return path


def _plot_accuracy(path: Path, instances: list[InstanceResult]) -> Path:
    """Accuracy against the ADD(-S) threshold (0-10 cm) per object: the curves the AUC sums."""
    from ockd_ros.visualize import object_color

    canvas = _canvas("accuracy vs ADD(-S) threshold", "threshold (m)", "accuracy")
    _axes(canvas, 0.1, 1.0, ".3f", ".2f")
    thresholds = np.linspace(0, 0.1, 101)
    names = sorted({r.name for r in instances})
    for k, name in enumerate(names):
        errors = np.array([r.add_or_adds for r in instances if r.name == name])
        accuracy = [(errors <= t).mean() for t in thresholds]
        color = object_color(k)
        cv2.polylines(canvas, [_to_pixels(thresholds, accuracy, 0.1, 1.0)], False, color, 2)
        cv2.putText(canvas, name, (PLOT_SIZE[0] - 200, 45 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, color, 1, cv2.LINE_AA)  # fmt: skip
    write_rgb(path, canvas)
    return path


def _write_overlays(
    out_dir: Path,
    overlays: list[tuple[BagFrame, list[ObjectPose]]],
    targets: dict[str, _Target],
    renderer: Renderer | None = None,
) -> list[Path]:
    if not overlays:
        return []
    paths = []
    with Renderer() if renderer is None else contextlib.nullcontext(renderer) as renderer:
        for frame, poses in overlays:
            truth = [(targets[n].mesh, T) for n, T in frame.ground_truth.items() if n in targets]
            predicted = [(targets[p.name].mesh, p.matrix) for p in poses]
            title = f"frame {frame.index}: {len(predicted)}/{len(targets)} found"
            K = frame.intrinsics.scaled((frame.rgb.shape[1], frame.rgb.shape[0])).K
            image = outline_overlay(frame.rgb, renderer, K, truth, predicted, title)
            path = out_dir / f"overlay_{frame.index:06d}.png"
            write_rgb(path, image)
            paths.append(path)
    return paths
