"""Mean matching accuracy (MMA): the share of mutual-nearest-neighbour matches that land within
t pixels of the true correspondence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ockd_ros.features.types import Features


@dataclass
class MatchScore:
    matches: int  # mutual nearest neighbours whose first keypoint has a ground-truth correspondence
    correct: dict[int, int]  # threshold (px) → matches within it

    def mma(self, threshold: int) -> float:
        return self.correct[threshold] / self.matches if self.matches else 0.0


def mutual_nearest_neighbours(desc1: np.ndarray, desc2: np.ndarray) -> np.ndarray:
    """M×2 index pairs (i, j): desc2[j] is desc1[i]'s most similar row and vice versa.

    desc1: N1×D, desc2: N2×D, unit rows (cosine similarity).
    """
    if len(desc1) == 0 or len(desc2) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    similarity = desc1 @ desc2.T
    best2 = similarity.argmax(axis=1)
    best1 = similarity.argmax(axis=0)
    first = np.nonzero(best1[best2] == np.arange(len(desc1)))[0]
    return np.stack([first, best2[first]], axis=1)


def score_matches(
    features1: Features,
    features2: Features,
    corr12: np.ndarray,
    valid12: np.ndarray,
    thresholds: tuple[int, ...] = (5, 7),
) -> MatchScore:
    """Match intra descriptors of two images and check each match against the true correspondence.

    corr12: H×W×2 pixel coordinates in image 2 of each pixel of image 1; valid12: H×W bool.
    """
    pairs = mutual_nearest_neighbours(features1.desc_intra, features2.desc_intra)
    points1 = np.round(features1.keypoints[pairs[:, 0]]).astype(int)
    known = valid12[points1[:, 1], points1[:, 0]]
    truth = corr12[points1[known, 1], points1[known, 0]]
    error = np.linalg.norm(features2.keypoints[pairs[known, 1]] - truth, axis=1)
    return MatchScore(int(known.sum()), {t: int((error <= t).sum()) for t in thresholds})
