"""Mean matching accuracy (MMA): the share of mutual-nearest-neighbour matches that land within
t pixels of the true correspondence."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ockd_ros.features.types import Features
from ockd_ros.pose.matching import BankDescriptors, MatchingConfig, match_templates


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


def spatial_ratio_matches(
    features1: Features, features2: Features, max_ratio: float = 0.9, radius: float = 8.0
) -> np.ndarray:
    """M×2 index pairs (i, j) as the pose estimator matches dense keypoint grids
    (`ockd_ros.pose.matching.match_templates`, image 1 as its one template): desc2[j] is
    desc1[i]'s most similar row and passes the ratio test against the best row of image 2
    farther than `radius` pixels from keypoint j."""
    bank = BankDescriptors(features1.desc_intra, np.zeros(len(features1), np.int64), 1)
    conf = MatchingConfig(max_ratio=max_ratio, ratio_radius=radius, mutual=False)
    matches = match_templates(features2.desc_intra, bank, conf, features2.keypoints)
    return np.stack([matches.bank_index, matches.frame_index], axis=1)


def score_matches(
    features1: Features,
    features2: Features,
    corr12: np.ndarray,
    valid12: np.ndarray,
    thresholds: tuple[int, ...] = (5, 7),
    matcher: Callable[[Features, Features], np.ndarray] | None = None,
) -> MatchScore:
    """Match intra descriptors of two images and check each match against the true correspondence.

    corr12: H×W×2 pixel coordinates in image 2 of each pixel of image 1; valid12: H×W bool.
    matcher: gives the M×2 matches; None: mutual nearest neighbours.
    """
    if matcher is None:
        pairs = mutual_nearest_neighbours(features1.desc_intra, features2.desc_intra)
    else:
        pairs = matcher(features1, features2)
    points1 = np.round(features1.keypoints[pairs[:, 0]]).astype(int)
    known = valid12[points1[:, 1], points1[:, 0]]
    truth = corr12[points1[known, 1], points1[known, 0]]
    error = np.linalg.norm(features2.keypoints[pairs[known, 1]] - truth, axis=1)
    return MatchScore(int(known.sum()), {t: int((error <= t).sum()) for t in thresholds})
