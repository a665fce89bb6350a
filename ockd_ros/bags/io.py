"""Reading and writing bags: `BagSource` streams frames, `BagWriter` writes messages.

Topic names match with or without the leading '/', so 'image' and '/image' are one topic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from ockd_ros.bags.messages import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    POSE_STAMPED,
    TYPESTORE,
    camera_info_message,
    image_message,
    pose_message,
)
from ockd_ros.camera_messages import (
    CameraIntrinsics,
    ImageDecodeError,
    camera_info_to_intrinsics,
    compressed_message_to_rgb,
    image_message_to_rgb,
)
from ockd_ros.eval.evaluate import EvalFrame
from ockd_ros.message_fields import CAMERA_FRAME, pose_from_message, stamp_ns

LOG = logging.getLogger(__name__)

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
STAMP_EPOCH_NS = 1_767_225_600 * 10**9  # 2026-01-01 00:00 UTC: a fixed, recognisable start


class BagError(ValueError):
    """A bag that cannot be used: missing, its storage corrupt or truncated (a message whose
    bytes do not deserialize included), a topic missing or of the wrong type. The message names
    the bag and what is wrong. A frame that is only bad in content (an image that does not
    decode, a CameraInfo with unusable intrinsics) is not one: it is skipped, as the node skips
    it."""


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the leading '/' is optional when matching."""

    image: str = "/image"
    camera_info: str = "/camera_info"
    gt_prefix: str = "/gt_poses/"  # + object name
    result_prefix: str = "/object_poses/"  # + object name


def qualified_topic(name: str) -> str:
    """The fully qualified form of a topic name, so 'image' and '/image' match."""
    return "/" + name.strip().lstrip("/")


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
        topic = qualified_topic(topic)
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
        ground_truth: Sequence[tuple[str, np.ndarray]] = (),
        topics: BagTopics = BagTopics(),
        frame_id: str = CAMERA_FRAME,
    ) -> None:
        """One camera frame: CameraInfo, then the Image, then the ground truth: one `T_cam_obj`
        per (object name, pose) instance, several on one topic when an object appears twice."""
        size = (rgb.shape[1], rgb.shape[0])
        self.write(topics.camera_info, camera_info_message(K, size, stamp, frame_id))
        self.write(topics.image, image_message(rgb, stamp, frame_id))
        for name, T in ground_truth:
            self.write(topics.gt_prefix + name, pose_message(T, stamp, frame_id))


def frame_stamp(index: int, rate: float) -> int:
    """Stamp (ns) of frame `index` of a recording at `rate` Hz starting at `STAMP_EPOCH_NS`."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return STAMP_EPOCH_NS + round(index * 1e9 / rate)


@dataclass
class BagFrame(EvalFrame):
    """One image of a bag with what was known at its time, as the evaluator takes it.

    intrinsics: from the latest CameraInfo before the image (None if none came yet, or if that
    CameraInfo is unusable: then `skipped` says why, as it does for an image that does not
    decode, whose `rgb` is None).
    ground_truth: (object name, `T_cam_obj`) of the gt poses with the image's header stamp.
    im_id: the image's index in the bag. log_time: when the bag logged it (ns). frame_id: of its
    header.
    """

    log_time: int = 0
    frame_id: str = CAMERA_FRAME


class BagSource:
    """Streams the frames of a bag (a rosbag2 folder, or one .db3 / .mcap file).

    Opening checks the topics: the image topic must exist and be an Image or CompressedImage,
    the CameraInfo topic must exist. Corrupt or truncated storage raises `BagError` naming the
    bag and how many frames were read before the damage; those frames are yielded first.
    frames_read: images read so far.
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
            by_topic.setdefault(qualified_topic(c.topic), []).append(c)
        image_topic, info_topic = (
            qualified_topic(self.topics.image),
            qualified_topic(self.topics.camera_info),
        )
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
        prefix = qualified_topic(self.topics.gt_prefix).rstrip("/") + "/"
        self.gt = {
            c.id: qualified_topic(c.topic)[len(prefix) :]
            for c in conns
            if qualified_topic(c.topic).startswith(prefix) and c.msgtype == POSE_STAMPED
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
        bag ends), so ground truth logged just after it is still attached.

        The node's rules: an image that does not decode, or whose latest CameraInfo has unusable
        intrinsics, is a frame to skip (`skipped` says why), not the end of the bag.
        """
        info_ids = {c.id for c in self.camera_info}
        image_ids = {c.id for c in self.image}
        camera: CameraIntrinsics | str | None = None  # the latest CameraInfo, or why it is unusable
        pending = None
        gt_by_stamp: dict[int, list[tuple[str, np.ndarray]]] = {}
        messages = self._reader.messages(
            connections=[*self.image, *self.camera_info, *self.gt_connections]
        )
        try:
            for conn, log_time, raw in self._guarded(messages):
                msg = self._deserialize(raw, conn)
                if conn.id in info_ids:
                    camera = self._intrinsics(msg)
                elif conn.id in image_ids:
                    if pending is not None:
                        yield self._frame(*pending, gt_by_stamp)
                    pending = (self.frames_read, log_time, msg, camera)
                    self.frames_read += 1
                else:
                    instance = (self.gt[conn.id], pose_from_message(msg))
                    gt_by_stamp.setdefault(stamp_ns(msg), []).append(instance)
        except BagError:
            if pending is not None:  # read whole before the damage: it counts
                yield self._frame(*pending, gt_by_stamp)
            raise
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

    def _intrinsics(self, msg) -> CameraIntrinsics | str:
        """The intrinsics of a CameraInfo, or why they cannot be used."""
        try:
            return camera_info_to_intrinsics(msg, rectified=self.rectified)
        except ValueError as error:
            return str(error)

    def _frame(self, im_id, log_time, msg, camera, gt_by_stamp) -> BagFrame:
        stamp = stamp_ns(msg)
        skipped = camera if isinstance(camera, str) else None
        try:
            if msg.__msgtype__ == COMPRESSED_IMAGE:
                rgb = compressed_message_to_rgb(msg)
            else:
                rgb = image_message_to_rgb(msg)
        except ImageDecodeError as error:
            rgb, skipped = None, str(error)
        truth = gt_by_stamp.pop(stamp, [])
        # Ground truth that never met its image is dropped, so memory stays constant.
        for old in [s for s in gt_by_stamp if s < stamp]:
            del gt_by_stamp[old]
        return BagFrame(
            rgb,
            None if skipped else camera,
            truth,
            stamp=stamp,
            im_id=im_id,
            skipped=skipped,
            log_time=log_time,
            frame_id=msg.header.frame_id,
        )
