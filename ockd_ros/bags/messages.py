"""Messages of the `rosbags` typestore (ROS 2 Jazzy), filled from `ockd_ros.message_fields`,
where the node's rclpy messages take their fields too."""

from __future__ import annotations

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_typestore

from ockd_ros.message_fields import (
    CAMERA_FRAME,
    camera_info_fields,
    header_fields,
    image_fields,
    pose_fields,
)

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"


def image_message(rgb: np.ndarray, stamp: int, frame_id: str = CAMERA_FRAME):
    """A sensor_msgs/Image (rgb8) of an H×W×3 uint8 image."""
    return _build(IMAGE, {"header": header_fields(stamp, frame_id), **image_fields(rgb)})


def camera_info_message(
    K: np.ndarray,
    size: tuple[int, int],
    stamp: int,
    frame_id: str = CAMERA_FRAME,
    D: np.ndarray | None = None,
):
    """A sensor_msgs/CameraInfo for pinhole K (3×3), image size (width, height), distortion D."""
    fields = camera_info_fields(K, size, D)
    return _build(CAMERA_INFO, {"header": header_fields(stamp, frame_id), **fields})


def pose_message(T: np.ndarray, stamp: int, frame_id: str = CAMERA_FRAME):
    """A geometry_msgs/PoseStamped of a 4×4 pose (here `T_cam_obj`, frame_id = the camera)."""
    T = np.asarray(T)
    fields = {"header": header_fields(stamp, frame_id), "pose": pose_fields(T[:3, :3], T[:3, 3])}
    return _build(POSE_STAMPED, fields)


def _build(msgtype: str, fields: dict):
    """A typestore message of `msgtype` from nested `fields`: a dict becomes the message type
    that the typestore declares for its field (typestore classes take every field at once)."""
    _, definitions = TYPESTORE.fielddefs[msgtype]
    nested = {name: spec[1] for name, spec in definitions if spec[0] == Nodetype.NAME}
    values = {
        name: _build(nested[name], value) if isinstance(value, dict) else value
        for name, value in fields.items()
    }
    return TYPESTORE.types[msgtype](**values)
