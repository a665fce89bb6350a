"""Pose error metrics: ADD, ADD-S, their area under the accuracy curve (AUC) and recall.

ADD (Hinterstoisser et al., ACCV 2012) is the mean distance between the model points under the
estimated and the true pose; ADD-S, for symmetric objects, the mean distance from each point under
the true pose to the closest point under the estimated pose. The AUC follows the YCB-Video
toolbox used by PoseCNN (`VOCap`): accuracy against thresholds from 0 to 10 cm, integrated as
its step function, in percent. A missed instance has an infinite error: it counts in the total
but never as correct.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

AUC_MAX_THRESHOLD = 0.1  # metres: the YCB-Video toolbox's 10 cm


def _transform(R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64).reshape(3)


def add_error(R_est, t_est, R_gt, t_gt, points: np.ndarray) -> float:
    """ADD: mean distance between N×3 model `points` moved by the two poses (metres)."""
    diff = _transform(R_est, t_est, points) - _transform(R_gt, t_gt, points)
    return float(np.linalg.norm(diff, axis=1).mean())


def adds_error(R_est, t_est, R_gt, t_gt, points: np.ndarray) -> float:
    """ADD-S: mean distance from each true-pose point to the nearest estimated-pose point."""
    distances, _ = cKDTree(_transform(R_est, t_est, points)).query(
        _transform(R_gt, t_gt, points), k=1
    )
    return float(np.mean(distances))


def auc(errors, max_threshold: float = AUC_MAX_THRESHOLD) -> float:
    """Area under the accuracy-threshold curve up to `max_threshold`, in percent (0-100).

    Matches the YCB-Video toolbox: with the n errors sorted, accuracy i/n holds from the
    (i-1)-th to the i-th error at or below the maximum, and the final accuracy up to it.
    Errors above the maximum, infinite or NaN (missed) count as failures.
    """
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    n = len(errors)
    if n == 0:
        raise ValueError("auc needs at least one error")
    if max_threshold <= 0:
        raise ValueError(f"max_threshold must be positive, got {max_threshold}")
    passed = np.sort(errors[np.isfinite(errors) & (errors <= max_threshold)])
    if len(passed) == 0:
        return 0.0
    edges = np.concatenate([[0.0], passed, [max_threshold]])
    heights = np.concatenate([np.arange(1, len(passed) + 1), [len(passed)]]) / n
    return float(100.0 * np.sum(np.diff(edges) * heights) / max_threshold)


def recall(errors, thresholds) -> float:
    """Fraction (0-1) of errors strictly below their thresholds (a scalar or one per error)."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if len(errors) == 0:
        raise ValueError("recall needs at least one error")
    thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), errors.shape)
    return float(np.mean(np.nan_to_num(errors, nan=np.inf) < thresholds))
