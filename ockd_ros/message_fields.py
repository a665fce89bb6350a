"""The fields of the ROS messages this package writes, defined once for both message libraries.

The node publishes rclpy messages (`ros/messages.py`), the bag tools write `rosbags` typestore
messages (`bags/messages.py`). Both fill their own classes from the nested dicts made here, so an
Image, a CameraInfo or a pose has the same fields whichever wrote it. Numeric arrays are numpy
arrays; each library's filler turns them into what its classes hold. Nothing here imports ROS.

Reading goes the other way, duck-typed on the fields: `pose_from_message` and `stamp_ns` here,
images and CameraInfo in `camera_messages`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import make_pose

CAMERA_FRAME = "camera_color_optical_frame"  # frame_id of the images the bag tools write


def header_fields(stamp_ns: int, frame_id: str = CAMERA_FRAME) -> dict:
    """std_msgs/Header at `stamp_ns` nanoseconds."""
    return {"stamp": {"sec": stamp_ns // 10**9, "nanosec": stamp_ns % 10**9}, "frame_id": frame_id}


def image_fields(rgb: np.ndarray) -> dict:
    """sensor_msgs/Image of an H×W×3 uint8 RGB image (rgb8, unpadded rows), header aside."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": 3 * int(width),
        "data": np.ascontiguousarray(rgb).reshape(-1),
    }


def camera_info_fields(K: np.ndarray, size: tuple[int, int], D: np.ndarray | None = None) -> dict:
    """sensor_msgs/CameraInfo of pinhole K (3×3) for an image of `size` (width, height), header
    aside: plumb_bob distortion D (five zeros when None or empty), no rectification (R = I,
    P = [K | 0]), no binning, no region of interest."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    D = np.zeros(5) if D is None or len(D) == 0 else np.asarray(D, dtype=np.float64).reshape(-1)
    return {
        "height": int(size[1]),
        "width": int(size[0]),
        "distortion_model": "plumb_bob",
        "d": D,
        "k": K.reshape(9),
        "r": np.eye(3).reshape(9),
        "p": np.hstack([K, np.zeros((3, 1))]).reshape(12),
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def pose_fields(R: np.ndarray, t: np.ndarray) -> dict:
    """geometry_msgs/Pose of a 3×3 rotation and a translation (metres)."""
    x, y, z, w = (float(v) for v in Rotation.from_matrix(np.asarray(R)).as_quat())
    px, py, pz = (float(v) for v in np.asarray(t).reshape(3))
    return {
        "position": {"x": px, "y": py, "z": pz},
        "orientation": {"x": x, "y": y, "z": z, "w": w},
    }


def stamp_ns(msg) -> int:
    """The header stamp of a message in nanoseconds."""
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def pose_from_message(msg) -> np.ndarray:
    """The 4×4 pose of a geometry_msgs/PoseStamped."""
    q, p = msg.pose.orientation, msg.pose.position
    R = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    return make_pose(R, np.array([p.x, p.y, p.z]))
