"""rosbag2 tools: record synthetic bags, convert BOP scenes to bags, evaluate the estimator.

Bags are read and written with the pure-Python `rosbags` library (sqlite3 or mcap storage, the
ROS 2 Jazzy typestore); nothing here imports rclpy. A bag holds

    /image               sensor_msgs/Image (rgb8)
    /camera_info         sensor_msgs/CameraInfo (K, D, P, size)
    /gt_poses/<name>     geometry_msgs/PoseStamped: T_cam_obj of an object, one per instance
    /object_poses/<name> geometry_msgs/PoseStamped: estimates, in the bags `eval` writes

with one header stamp per frame shared by all its messages (the log time equals it). Topic names
are options and match with or without the leading '/', so a bag of a real camera driver
(`/camera/color/image_raw`, `/camera/color/camera_info`) is evaluated as recorded.

Stamps: synthetic frame i is at `STAMP_EPOCH_NS + i / rate`; BOP image `im_id` of scene
`scene_id` at `STAMP_EPOCH_NS + scene_id * BOP_SCENE_SPACING_S + im_id / rate`, so gaps in the
image ids stay gaps in time.

Bags are streamed: one image is in memory at a time, whatever the bag's length.

Modules: `messages` (typestore messages), `io` (`BagSource`, `BagWriter`), `synthetic`
(record-synthetic), `bop` (from-bop), `evaluate` (eval, through `ockd_ros.eval.evaluate`).
"""

from ockd_ros.bags.bop import BOP_SCENE_SPACING_S, BopBagConfig, bop_stamp, from_bop
from ockd_ros.bags.evaluate import BagEvalConfig, BagEvalResult, evaluate_bag
from ockd_ros.bags.io import (
    STAMP_EPOCH_NS,
    STORAGES,
    BagError,
    BagFrame,
    BagSource,
    BagTopics,
    BagWriter,
    frame_stamp,
)
from ockd_ros.bags.messages import TYPESTORE, camera_info_message, image_message, pose_message
from ockd_ros.bags.synthetic import SyntheticBagConfig, record_synthetic
from ockd_ros.message_fields import pose_from_message, stamp_ns

__all__ = [
    "BOP_SCENE_SPACING_S",
    "STAMP_EPOCH_NS",
    "STORAGES",
    "TYPESTORE",
    "BagError",
    "BagEvalConfig",
    "BagEvalResult",
    "BagFrame",
    "BagSource",
    "BagTopics",
    "BagWriter",
    "BopBagConfig",
    "SyntheticBagConfig",
    "bop_stamp",
    "camera_info_message",
    "evaluate_bag",
    "frame_stamp",
    "from_bop",
    "image_message",
    "pose_from_message",
    "pose_message",
    "record_synthetic",
    "stamp_ns",
]
