"""OpenCV SIFT as a feature backend: the baseline every evaluation runs beside `ockd`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ockd_ros.features.types import Features, check_image


@dataclass(frozen=True)
class SiftConfig:
    max_keypoints: int = 5000
    contrast_threshold: float = 0.04
    root_sift: bool = True  # Hellinger-normalised SIFT: better nearest-neighbour matching


class SiftExtractor:
    name = "sift"

    def __init__(self, conf: SiftConfig | None = None):
        self.conf = conf or SiftConfig()
        self._sift = cv2.SIFT_create(
            nfeatures=self.conf.max_keypoints, contrastThreshold=self.conf.contrast_threshold
        )

    def extract(self, image: np.ndarray) -> Features:
        gray = cv2.cvtColor(check_image(image), cv2.COLOR_RGB2GRAY)
        cv_keypoints, desc = self._sift.detectAndCompute(gray, None)
        size = (image.shape[1], image.shape[0])
        if not cv_keypoints:
            return Features(
                np.zeros((0, 2), np.float32),
                np.zeros(0, np.float32),
                np.zeros((0, 128), np.float32),
                None,
                size,
            )
        keypoints = np.array([kp.pt for kp in cv_keypoints], np.float32)
        scores = np.array([kp.response for kp in cv_keypoints], np.float32)
        desc = desc.astype(np.float32)
        if self.conf.root_sift:
            desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-8))
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-8)
        order = np.argsort(-scores, kind="stable")
        return Features(keypoints[order], scores[order], desc[order], None, size)
