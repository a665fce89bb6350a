"""Validation during training: MMA@5/7 of the current network on held-out synthetic pairs, and
optionally on real frames of a BOP data set against renders (the sim2real curve).

Real frames are watched, never trained on, and the run does not pick its weights by them: the
final weights are the last step's.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import numpy as np
import torch

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.keypoints import MatchingPair, bop_reference_pairs, score_pairs
from ockd_ros.eval.mma import score_matches, spatial_ratio_matches
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


def real_reference_pairs(bop_dir: Path, count: int) -> list[MatchingPair]:
    """The first `count` pairs of `bench/matching.py`'s real-frame protocol (a render of the object
    at its true pose turned 15° against the frame), rendered once for the whole run."""
    from ockd_ros.render import Renderer

    with Renderer() as renderer:
        return list(itertools.islice(bop_reference_pairs(BopDataset(bop_dir), renderer), count))


def validate_real(model: OCKDNet, pairs: list[MatchingPair], device: torch.device) -> dict:
    """MMA@5/7 on real pairs, with keypoints on the 4-px grid and the spatial ratio test, as the
    pose estimator matches."""
    extractor = OckdExtractor(
        OckdConfig(device=str(device), grid_stride=4), model=copy.deepcopy(model)
    )
    score = score_pairs(extractor, pairs, matcher=spatial_ratio_matches)
    return {"real_mma5": score.mean_mma(5), "real_mma7": score.mean_mma(7)}
