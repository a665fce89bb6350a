"""The feature type every backend returns, and the interface backends implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Features:
    """Keypoints of one image.

    keypoints: N×2 float32, (x, y) in pixels of the input image (pixel centres at integers).
    scores: N float32, detector response (reliability for `ockd`), sorted descending.
    desc_intra: N×D1 float32, unit rows: which point of an object (all of SIFT's descriptor).
    desc_inter: N×D2 float32 unit rows (which object), or None for backends without one.
    image_size: (width, height) of the input image.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    desc_intra: np.ndarray
    desc_inter: np.ndarray | None
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if self.keypoints.shape != (n, 2):
            raise ValueError(f"keypoints must be N×2, got {self.keypoints.shape}")
        if len(self.scores) != n or len(self.desc_intra) != n:
            raise ValueError("keypoints, scores and desc_intra must have the same length")
        if self.desc_inter is not None and len(self.desc_inter) != n:
            raise ValueError("desc_inter must have one row per keypoint")

    def __len__(self) -> int:
        return len(self.keypoints)

    def select(self, index: np.ndarray) -> Features:
        """The features at a boolean mask or integer index array."""
        return Features(
            self.keypoints[index],
            self.scores[index],
            self.desc_intra[index],
            None if self.desc_inter is None else self.desc_inter[index],
            self.image_size,
        )

    def in_image(
        self, x0: int, y0: int, image_size: tuple[int, int], scale: float = 1.0
    ) -> Features:
        """Features extracted in a window whose top-left pixel is (x0, y0) of an image of
        `image_size` (width, height), in that image's pixels. scale: the window was resized by
        this factor before extraction (a window pixel centre u maps to (u + 0.5) / scale - 0.5)."""
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        offset = np.array([x0, y0], dtype=self.keypoints.dtype)
        keypoints = (self.keypoints + 0.5) / scale - 0.5 if scale != 1.0 else self.keypoints
        return Features(
            (keypoints + offset).astype(self.keypoints.dtype),
            self.scores,
            self.desc_intra,
            self.desc_inter,
            image_size,
        )

    def in_region(self, region: np.ndarray) -> np.ndarray:
        """N bool: `in_region` of this set's keypoints."""
        return in_region(self.keypoints, region)


def in_region(keypoints: np.ndarray, region: np.ndarray) -> np.ndarray:
    """N bool: whether each of N×2 (x, y) `keypoints` has its nearest pixel in the H×W bool
    `region` (keypoints off the image count as their nearest edge pixel)."""
    height, width = region.shape
    x = np.clip(np.rint(keypoints[:, 0]).astype(np.int64), 0, width - 1)
    y = np.clip(np.rint(keypoints[:, 1]).astype(np.int64), 0, height - 1)
    return region[y, x]


class FeatureExtractor(Protocol):
    """A feature backend: `ockd` (the network), `sift` (the OpenCV baseline) or `xfeat`."""

    name: str

    def extract(self, image: np.ndarray) -> Features:
        """Features of an H×W×3 uint8 RGB image."""
        ...


def check_image(image: np.ndarray) -> np.ndarray:
    """Return `image` if it is an H×W×3 uint8 RGB array, else raise a `ValueError` saying why."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {image.shape}")
    if image.shape[0] < 16 or image.shape[1] < 16:
        raise ValueError(f"image {image.shape[1]}×{image.shape[0]} is too small (min 16×16)")
    return image
