"""Training-time augmentation of a frame pair.

Photometric changes (colour jitter, greyscale, Gaussian noise, Gaussian blur) are drawn
independently for each image; a random rotation is applied to I2 and the correspondence field
I1 → I2 follows it, so the descriptors learn in-plane rotation invariance from exact targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    brightness: float = 0.3  # ± relative
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.05  # ± fraction of the hue circle
    greyscale_probability: float = 0.1
    noise_std: float = 6.0  # max Gaussian noise std, in 8-bit levels
    blur_probability: float = 0.3
    blur_sigma: float = 1.2  # max
    rotation_degrees: float = 30.0  # I2 is rotated by up to ± this


def photometric(image: np.ndarray, conf: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A jittered copy of an H×W×3 uint8 RGB image."""
    out = image.astype(np.float32)
    out *= 1 + rng.uniform(-conf.brightness, conf.brightness)
    mean = out.mean()
    out = (out - mean) * (1 + rng.uniform(-conf.contrast, conf.contrast)) + mean
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + 180 * rng.uniform(-conf.hue, conf.hue)) % 180
    hsv[..., 1] *= 1 + rng.uniform(-conf.saturation, conf.saturation)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < conf.greyscale_probability:
        out[:] = out.mean(axis=2, keepdims=True)
    if rng.random() < conf.blur_probability:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, conf.blur_sigma))
    out += rng.normal(0.0, rng.uniform(0, conf.noise_std), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def rotate_second(
    image2: np.ndarray,
    labels2: np.ndarray,
    corr12: np.ndarray,
    valid12: np.ndarray,
    degrees: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rotate I2 (and its labels) about its centre; map the correspondences of I1 along.

    corr12: H1×W1×2 pixel coordinates in I2; valid12: H1×W1 bool. Correspondences that leave
    the rotated image become invalid.
    """
    height, width = labels2.shape
    centre = ((width - 1) / 2, (height - 1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    image = cv2.warpAffine(image2, matrix, (width, height), flags=cv2.INTER_LINEAR)
    labels = cv2.warpAffine(
        labels2.astype(np.float32), matrix, (width, height), flags=cv2.INTER_NEAREST
    ).astype(labels2.dtype)
    # Pixels rotated in from outside the frame hold no scene: mark them as label 0.
    inside = cv2.warpAffine(
        np.ones_like(labels2, np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST
    )
    labels[inside == 0] = 0
    corr = corr12 @ matrix[:, :2].T + matrix[:, 2]
    in_frame = (
        (corr[..., 0] >= 0)
        & (corr[..., 0] <= width - 1)
        & (corr[..., 1] >= 0)
        & (corr[..., 1] <= height - 1)
    )
    return image, labels, corr.astype(np.float32), valid12 & in_frame


def augment_pair(pair: dict, conf: AugmentConfig, rng: np.random.Generator) -> dict:
    """Augmented copy of a pair dict with keys image1, image2, labels2, corr12, valid12."""
    out = dict(pair)
    out["image1"] = photometric(pair["image1"], conf, rng)
    image2 = photometric(pair["image2"], conf, rng)
    angle = rng.uniform(-conf.rotation_degrees, conf.rotation_degrees)
    out["image2"], out["labels2"], out["corr12"], out["valid12"] = rotate_second(
        image2, pair["labels2"], pair["corr12"], pair["valid12"], angle
    )
    return out
