"""Build ROS messages from numpy results."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header


def rgb_to_image_msg(rgb: np.ndarray, header: Header) -> Image:
    """A sensor_msgs/Image (rgb8) of an H×W×3 uint8 array, stamped with `header`."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 uint8 image, got {rgb.dtype} {rgb.shape}")
    msg = Image()
    msg.header = header
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = rgb.shape[1] * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg
