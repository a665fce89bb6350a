"""Validation during training: MMA@5/7 of the current network on held-out synthetic pairs."""

from __future__ import annotations

import copy

import numpy as np
import torch

from ockd_ros.eval.mma import score_matches
from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.model.network import OCKDNet

# The detector is still learning its scale early on: score the strongest keypoints, whatever
# their reliability, and report separately how many pass the runtime threshold.
VALIDATION_KEYPOINTS = 512
RUNTIME_THRESHOLD = 1.5


def validate(model: OCKDNet, pairs, count: int, device: torch.device) -> dict[str, float]:
    """MMA@5, MMA@7 and keypoint statistics over the first `count` pairs of `pairs`."""
    extractor = OckdExtractor(
        OckdConfig(device=str(device), r_thr=0.0, max_keypoints=VALIDATION_KEYPOINTS),
        model=copy.deepcopy(model),  # the extractor changes memory layout; leave training alone
    )
    matches, correct5, correct7, above = 0, 0, 0, []
    for index in range(min(count, len(pairs))):
        pair = pairs.raw(index)
        features1 = extractor.extract(pair["image1"])
        features2 = extractor.extract(pair["image2"])
        score = score_matches(features1, features2, pair["corr12"], pair["valid12"])
        matches += score.matches
        correct5 += score.correct[5]
        correct7 += score.correct[7]
        above.append(int((features1.scores >= RUNTIME_THRESHOLD).sum()))
    return {
        "mma5": correct5 / matches if matches else 0.0,
        "mma7": correct7 / matches if matches else 0.0,
        "matches_per_pair": matches / max(count, 1),
        "keypoints_above_threshold": float(np.mean(above)) if above else 0.0,
    }
