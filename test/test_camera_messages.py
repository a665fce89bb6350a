"""Decoding of camera messages, on real rclpy message objects."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from ockd_ros.camera_messages import (
    ENCODINGS,
    ImageDecodeError,
    camera_info_to_intrinsics,
    compressed_message_to_rgb,
    image_message_to_rgb,
)


def _encode(rgb: np.ndarray, encoding: str, padding: int = 0) -> Image:
    """An Image message holding `rgb` in `encoding`, rows padded by `padding` bytes."""
    channels, dtype, _ = ENCODINGS[encoding]
    order = {"rgb": rgb, "bgr": rgb[..., ::-1]}
    if encoding.startswith("mono"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    else:
        pixels = order[encoding[:3]]
        if channels == 4:
            pixels = np.concatenate([pixels, np.full_like(pixels[..., :1], 255)], axis=2)
    pixels = pixels.astype(dtype) * (257 if dtype == np.uint16 else 1)
    rows = pixels.reshape(rgb.shape[0], -1).view(np.uint8)
    rows = np.pad(rows, ((0, 0), (0, padding)))
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding)
    msg.step = rows.shape[1]
    msg.data = rows.tobytes()
    return msg


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("padding", [0, 8])
def test_every_supported_encoding_decodes_to_rgb(rng, encoding, padding):
    rgb = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    decoded = image_message_to_rgb(_encode(rgb, encoding, padding))
    assert decoded.shape == (6, 10, 3) and decoded.dtype == np.uint8
    expected = rgb
    if encoding.startswith("mono"):
        expected = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    np.testing.assert_array_equal(decoded, expected)


def test_unsupported_encoding_is_named():
    msg = Image(height=2, width=2, encoding="32FC1", step=8)
    msg.data = bytes(16)
    with pytest.raises(ImageDecodeError, match="32FC1"):
        image_message_to_rgb(msg)


def test_data_length_must_match_step_and_height(rng):
    msg = _encode(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "rgb8")
    msg.data = bytes(len(msg.data) - 1)
    with pytest.raises(ImageDecodeError, match="does not match its header"):
        image_message_to_rgb(msg)
    msg = _encode(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), "rgb8")
    msg.step = 4  # shorter than a row
    with pytest.raises(ImageDecodeError, match="does not match its header"):
        image_message_to_rgb(msg)


def test_empty_image_is_refused():
    with pytest.raises(ImageDecodeError, match="empty"):
        image_message_to_rgb(Image(encoding="rgb8"))


def test_compressed_round_trip(rng):
    rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    _, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format="png")
    msg.data = png.tobytes()
    np.testing.assert_array_equal(compressed_message_to_rgb(msg), rgb)
    msg.data = b"not an image"
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        compressed_message_to_rgb(msg)


def _camera_info(k, p=None, d=(0.1, 0.0, 0.0, 0.0, 0.0), size=(640, 480)):
    msg = CameraInfo(width=size[0], height=size[1], distortion_model="plumb_bob")
    msg.k = np.asarray(k, float).reshape(-1)
    msg.p = np.asarray(p if p is not None else np.zeros((3, 4)), float).reshape(-1)
    msg.d = list(d)
    return msg


def test_camera_info_uses_k_and_d_or_p_when_rectified():
    K = [[500.0, 0, 320], [0, 505.0, 240], [0, 0, 1]]
    P = [[480.0, 0, 318, 0], [0, 480.0, 238, 0], [0, 0, 1, 0]]
    raw = camera_info_to_intrinsics(_camera_info(K, P))
    np.testing.assert_allclose(raw.K, K)
    np.testing.assert_allclose(raw.D, [0.1, 0, 0, 0, 0])
    rectified = camera_info_to_intrinsics(_camera_info(K, P), rectified=True)
    np.testing.assert_allclose(rectified.K, np.asarray(P)[:, :3])
    assert rectified.D.size == 0 and rectified.size == (640, 480)


def test_camera_info_with_zeros_is_refused():
    with pytest.raises(ValueError, match="unusable K"):
        camera_info_to_intrinsics(_camera_info(np.zeros(9)))
    with pytest.raises(ValueError, match="unusable P"):
        camera_info_to_intrinsics(_camera_info(np.eye(3)), rectified=True)
    with pytest.raises(ValueError, match="no image size"):
        camera_info_to_intrinsics(_camera_info(np.eye(3), size=(0, 0)))


def test_scaled_intrinsics_follow_a_resize():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    intrinsics = camera_info_to_intrinsics(_camera_info(K))
    half = intrinsics.scaled((320, 240))
    # the image centre stays the image centre, focal lengths halve
    np.testing.assert_allclose(half.K, [[250, 0, 159.5], [0, 250, 119.5], [0, 0, 1]])
    assert half.size == (320, 240)
