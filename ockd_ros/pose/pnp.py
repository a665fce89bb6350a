"""Pose from 2D-3D correspondences: OpenCV PnP + RANSAC, then Levenberg-Marquardt on the inliers."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

PNP_METHODS = {"sqpnp": cv2.SOLVEPNP_SQPNP, "epnp": cv2.SOLVEPNP_EPNP}
DISTORTION_SIZES = (4, 5, 8, 12, 14)  # the coefficient counts OpenCV accepts
RANSAC_SAMPLE = 5  # points per minimal sample in OpenCV's solvePnPRansac (SQPnP and EPnP)


@dataclass(frozen=True)
class PnPConfig:
    method: str = "sqpnp"  # minimal solver inside RANSAC: 'sqpnp' or 'epnp'
    reprojection_error: float = 4.0  # pixels: inlier threshold
    iterations: int = 1000  # at most; fewer when min_inlier_ratio bounds them (ransac_iterations)
    confidence: float = 0.999
    min_inliers: int = 12  # fewer: no pose
    # Inliers at fewer different pixels: no pose (0: no check). Dense one-way matching maps many
    # 3D points to one pixel; a pose that shrinks the object onto a few such pixels far away
    # makes them all inliers.
    min_inlier_pixels: int = 0
    # A smaller share of a template's matches as inliers: no pose. Dense matching gives hundreds
    # of matches, among which a dozen chance inliers are easy to find.
    min_inlier_ratio: float = 0.0
    refine: bool = True  # Levenberg-Marquardt on the inliers after RANSAC

    def validate(self) -> None:
        if self.method not in PNP_METHODS:
            raise ValueError(f"unknown PnP method {self.method!r}; choose from {list(PNP_METHODS)}")
        if self.reprojection_error <= 0 or self.iterations < 1:
            raise ValueError("reprojection_error must be > 0 and iterations ≥ 1")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if not 0.0 <= self.min_inlier_ratio <= 1.0:
            raise ValueError(f"min_inlier_ratio must be in [0, 1], got {self.min_inlier_ratio}")
        if self.min_inliers < 4:
            raise ValueError(
                f"min_inliers must be ≥ 4 (PnP needs 4 points), got {self.min_inliers}"
            )
        if self.min_inlier_pixels < 0:
            raise ValueError(f"min_inlier_pixels must be ≥ 0, got {self.min_inlier_pixels}")


@dataclass
class PnPResult:
    """A pose `T_cam_obj` as R (3×3) and t (3, metres), and the inlier correspondence indices."""

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray


def check_distortion(D: np.ndarray | None) -> np.ndarray | None:
    """`D` as a flat float64 array of 4, 5, 8, 12 or 14 finite coefficients, or None."""
    if D is None:
        return None
    D = np.asarray(D, dtype=np.float64).reshape(-1)
    if D.size not in DISTORTION_SIZES:
        raise ValueError(f"distortion needs {DISTORTION_SIZES} coefficients, got {D.size}")
    if not np.all(np.isfinite(D)):
        raise ValueError(f"distortion has non-finite coefficients: {D.tolist()}")
    return D


def ransac_iterations(conf: PnPConfig) -> int:
    """RANSAC iterations: `conf.iterations`, or fewer when `min_inlier_ratio` w > 0: a pose is
    only accepted with at least that inlier share, and then log(1 − confidence) / log(1 − w^5)
    samples draw an all-inlier one with the configured confidence (86 for w = 0.6 at 0.999).
    More would only search longer among matches whose pose is rejected anyway."""
    if conf.min_inlier_ratio <= 0.0:
        return conf.iterations
    if conf.min_inlier_ratio >= 1.0:
        return 1
    all_inliers = conf.min_inlier_ratio**RANSAC_SAMPLE
    needed = math.ceil(math.log(1.0 - conf.confidence) / math.log1p(-all_inliers))
    return max(1, min(conf.iterations, needed))


def solve_pnp(
    points3d: np.ndarray,
    points2d: np.ndarray,
    K: np.ndarray,
    D: np.ndarray | None = None,
    conf: PnPConfig | None = None,
) -> PnPResult | None:
    """Pose of the N×3 object points (metres) seen at the N×2 pixels, or None.

    None means no trustworthy pose: too few correspondences or inliers, inliers at too few
    different pixels, a degenerate point set, a non-finite solution, or an object behind the
    camera.
    """
    conf = conf or PnPConfig()
    conf.validate()
    points3d = np.ascontiguousarray(points3d, dtype=np.float64).reshape(-1, 3)
    points2d = np.ascontiguousarray(points2d, dtype=np.float64).reshape(-1, 2)
    if len(points3d) != len(points2d):
        raise ValueError(f"{len(points3d)} 3D points but {len(points2d)} 2D points")
    if not (np.all(np.isfinite(points3d)) and np.all(np.isfinite(points2d))):
        raise ValueError("correspondences must be finite")
    if not _enough(points2d, np.arange(len(points2d)), conf):
        return None
    try:
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(
            points3d,
            points2d,
            K,
            D,
            iterationsCount=ransac_iterations(conf),
            reprojectionError=conf.reprojection_error,
            confidence=conf.confidence,
            flags=PNP_METHODS[conf.method],
        )
    except cv2.error:  # degenerate samples (coincident or collinear points) make OpenCV throw
        return None
    if not ok or inliers is None or not _enough(points2d, inliers.reshape(-1), conf):
        return None
    return _finish(points3d, points2d, K, D, rvec, tvec, inliers.reshape(-1), conf)


def refine_pose(
    points3d: np.ndarray,
    points2d: np.ndarray,
    K: np.ndarray,
    D: np.ndarray | None,
    R: np.ndarray,
    t: np.ndarray,
    conf: PnPConfig | None = None,
) -> PnPResult | None:
    """`solve_pnp` without RANSAC: the pose (R, t) refined on the correspondences within the
    reprojection error of it, or None if too few are."""
    conf = conf or PnPConfig()
    points3d = np.ascontiguousarray(points3d, dtype=np.float64).reshape(-1, 3)
    points2d = np.ascontiguousarray(points2d, dtype=np.float64).reshape(-1, 2)
    rvec = cv2.Rodrigues(np.asarray(R, np.float64))[0]
    tvec = np.asarray(t, np.float64).reshape(3, 1)
    inliers = _inliers(points3d, points2d, K, D, rvec, tvec, conf.reprojection_error)
    if not _enough(points2d, inliers, conf):
        return None
    return _finish(points3d, points2d, K, D, rvec, tvec, inliers, conf)


def _finish(points3d, points2d, K, D, rvec, tvec, inliers, conf: PnPConfig) -> PnPResult | None:
    """Levenberg-Marquardt on the inliers (with `conf.refine`), then the checks of a pose."""
    if conf.refine:
        rvec, tvec = cv2.solvePnPRefineLM(points3d[inliers], points2d[inliers], K, D, rvec, tvec)
        inliers = _inliers(points3d, points2d, K, D, rvec, tvec, conf.reprojection_error)
    R, t = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
    if not _enough(points2d, inliers, conf) or not _plausible(R, t, points3d[inliers]):
        return None
    return PnPResult(R, t, inliers)


def _enough(points2d: np.ndarray, inliers: np.ndarray, conf: PnPConfig) -> bool:
    """At least `min_inliers` inliers, at `min_inlier_pixels` different pixels or more."""
    if len(inliers) < conf.min_inliers:
        return False
    if conf.min_inlier_pixels == 0:
        return True
    return len(np.unique(points2d[inliers], axis=0)) >= conf.min_inlier_pixels


def _inliers(points3d, points2d, K, D, rvec, tvec, threshold: float) -> np.ndarray:
    projected = cv2.projectPoints(points3d, rvec, tvec, K, D)[0].reshape(-1, 2)
    error = np.linalg.norm(projected - points2d, axis=1)
    return np.flatnonzero(error <= threshold)


def _plausible(R: np.ndarray, t: np.ndarray, inlier_points: np.ndarray) -> bool:
    """Finite, and every inlier point in front of the camera (mirror solutions are not)."""
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        return False
    return bool(np.all(inlier_points @ R.T[:, 2] + t[2] > 0))
