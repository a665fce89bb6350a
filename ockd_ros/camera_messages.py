"""Decode camera messages into numpy: Image/CompressedImage → RGB, CameraInfo → intrinsics.

Duck-typed on the message fields, so the same code reads rclpy messages in the node and `rosbags`
messages in offline bag evaluation; nothing here imports ROS.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# encoding → (channels, dtype, OpenCV conversion to RGB or None)
ENCODINGS = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, np.uint16, None),
    "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    "rgba16": (4, np.uint16, cv2.COLOR_RGBA2RGB),
    "bgra16": (4, np.uint16, cv2.COLOR_BGRA2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
}


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB image; the message says why."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """K (3×3), distortion coefficients D (may be empty) and the image size (width, height)."""

    K: np.ndarray
    D: np.ndarray
    size: tuple[int, int]

    def scaled(self, size: tuple[int, int]) -> CameraIntrinsics:
        """The same camera for an image resized to `size` (width, height)."""
        sx, sy = size[0] / self.size[0], size[1] / self.size[1]
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 1] *= sy
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return CameraIntrinsics(K, self.D, size)

    def for_image(self, size: tuple[int, int]) -> CameraIntrinsics:
        """The intrinsics of an image of `size` (width, height) that this CameraInfo describes.

        A camera may publish binned or resized images with its full-resolution CameraInfo: K is
        scaled to the image. A different aspect ratio means another image altogether, so it
        raises `ValueError` (a frame to skip) rather than guessing.
        """
        if size == self.size:
            return self
        if abs(size[0] * self.size[1] - size[1] * self.size[0]) > max(size):
            raise ValueError(
                f"image is {size[0]}×{size[1]} but CameraInfo describes "
                f"{self.size[0]}×{self.size[1]} (different aspect ratio)"
            )
        return self.scaled(size)

    @property
    def distortion(self) -> np.ndarray | None:
        """D as the estimator takes it: None for a camera without distortion (no coefficients,
        or plumb_bob zeros), so that a pinhole K and a CameraInfo with D = 0 give the same poses."""
        return self.D if self.D.size and np.any(self.D != 0) else None


def image_message_to_rgb(msg) -> np.ndarray:
    """H×W×3 uint8 RGB from a sensor_msgs/Image (any of `ENCODINGS`; 16-bit is scaled to 8)."""
    encoding = msg.encoding.lower()
    if encoding not in ENCODINGS:
        raise ImageDecodeError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    channels, dtype, conversion = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    data = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if height == 0 or width == 0:
        raise ImageDecodeError(f"empty image ({width}×{height})")
    if step < row_bytes or len(data) != step * height:
        raise ImageDecodeError(
            f"image data does not match its header: {len(data)} bytes for height {height} × "
            f"step {step} (a {encoding} row needs at least {row_bytes} bytes)"
        )
    # Rows may be padded beyond width × channels: index by step, then drop the padding.
    rows = data.reshape(height, step)[:, :row_bytes]
    image = rows.view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    image = image.reshape(height, width, channels)
    if image.dtype.itemsize == 2:
        image = (image.astype(np.uint32) >> 8).astype(np.uint8)
    if channels == 1:
        image = image[..., 0]
    return np.ascontiguousarray(cv2.cvtColor(image, conversion) if conversion else image)


def compressed_message_to_rgb(msg) -> np.ndarray:
    """H×W×3 uint8 RGB from a sensor_msgs/CompressedImage (JPEG, PNG, ...)."""
    data = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if len(data) else None
    if image is None:
        raise ImageDecodeError(f"cannot decode compressed image (format {msg.format!r})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def camera_info_to_intrinsics(msg, rectified: bool = False) -> CameraIntrinsics:
    """Intrinsics from a sensor_msgs/CameraInfo.

    rectified: the image is already rectified, so use the projection matrix P and no distortion;
    otherwise K and D describe the raw image.
    """
    size = (int(msg.width), int(msg.height))
    if rectified:
        P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
        K, D = P[:, :3].copy(), np.zeros(0)
    else:
        K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
        D = np.asarray(msg.d, dtype=np.float64)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        matrix = "P" if rectified else "K"
        raise ValueError(f"CameraInfo has an unusable {matrix}: {K.reshape(-1).tolist()}")
    if size[0] <= 0 or size[1] <= 0:
        raise ValueError(f"CameraInfo has no image size ({size[0]}×{size[1]})")
    if not np.all(np.isfinite(D)):
        raise ValueError(f"CameraInfo has non-finite distortion {D.tolist()}")
    return CameraIntrinsics(K, D, size)
