import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import intrinsics, project, transform_points
from ockd_ros.pose.pnp import (
    PnPConfig,
    check_distortion,
    ransac_iterations,
    refine_pose,
    solve_pnp,
)

K = intrinsics(600.0, 600.0, 320.0, 240.0)


def _scene(rng, count=80, outlier_fraction=0.3, noise=0.3):
    """Object points in a 10 cm cube seen at a known pose; a fraction of the pixels replaced."""
    R = Rotation.from_euler("xyz", [20, -35, 60], degrees=True).as_matrix()
    t = np.array([0.03, -0.02, 0.6])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    points = rng.uniform(-0.05, 0.05, (count, 3))
    pixels = project(K, transform_points(T, points)) + rng.normal(0, noise, (count, 2))
    outliers = rng.choice(count, int(outlier_fraction * count), replace=False)
    pixels[outliers] = rng.uniform([0, 0], [640, 480], (len(outliers), 2))
    return points, pixels, R, t, outliers


@pytest.mark.parametrize("method", ["sqpnp", "epnp"])
def test_pnp_recovers_a_known_pose_despite_outliers(rng, method):
    points, pixels, R, t, outliers = _scene(rng)
    result = solve_pnp(points, pixels, K, conf=PnPConfig(method=method))
    assert result is not None
    angle = Rotation.from_matrix(result.R.T @ R).magnitude()
    assert np.degrees(angle) < 0.5
    assert np.linalg.norm(result.t - t) < 0.002
    true_inliers = np.setdiff1d(np.arange(len(points)), outliers)
    assert set(true_inliers) <= set(result.inliers.tolist()) | set(outliers.tolist())
    assert len(np.intersect1d(result.inliers, true_inliers)) >= 0.95 * len(true_inliers)


def test_inlier_share_bounds_ransac_iterations_and_the_pose_is_still_found(rng):
    shares = (0.0, 0.3, 0.6, 0.9)
    counts = [ransac_iterations(PnPConfig(min_inlier_ratio=w)) for w in shares]
    assert counts[0] == PnPConfig().iterations and counts == sorted(counts, reverse=True)
    assert counts[-1] < counts[-2] < 200  # a handful of samples when most matches are inliers
    # 35 % outliers, inliers ≥ 60 %: the bounded search finds the pose in every draw.
    conf = PnPConfig(min_inlier_ratio=0.6)
    for _ in range(20):
        points, pixels, _, t, _ = _scene(rng, outlier_fraction=0.35)
        result = solve_pnp(points, pixels, K, conf=conf)
        assert result is not None and np.linalg.norm(result.t - t) < 0.002


def test_refine_pose_converges_from_a_nearby_start_and_rejects_a_far_one(rng):
    points, pixels, R, t, outliers = _scene(rng)
    start_R = Rotation.from_rotvec([0.01, -0.005, 0.008]).as_matrix() @ R
    result = refine_pose(points, pixels, K, None, start_R, t + np.array([0.001, -0.001, 0.002]))
    assert result is not None
    assert np.degrees(Rotation.from_matrix(result.R.T @ R).magnitude()) < 0.5
    assert np.linalg.norm(result.t - t) < 0.002
    assert not set(result.inliers.tolist()) & set(outliers.tolist())
    far_R = Rotation.from_rotvec([0.0, np.pi / 2, 0.0]).as_matrix() @ R
    assert refine_pose(points, pixels, K, None, far_R, t) is None  # too few points agree


def test_pnp_with_distortion_matches_distorted_pixels(rng):
    points, _, R, t, _ = _scene(rng, outlier_fraction=0.0)
    D = np.array([0.1, -0.05, 0.001, 0.0005, 0.0])
    pixels = cv2.projectPoints(points, cv2.Rodrigues(R)[0], t, K, D)[0].reshape(-1, 2)
    result = solve_pnp(points, pixels, K, D)
    assert result is not None and np.linalg.norm(result.t - t) < 1e-4


def test_too_few_or_degenerate_correspondences_give_no_pose(rng):
    points, pixels, *_ = _scene(rng, count=8, outlier_fraction=0.0)
    assert solve_pnp(points, pixels, K) is None  # 8 < min_inliers
    same = np.zeros((30, 3))
    assert solve_pnp(same, np.full((30, 2), 100.0), K) is None
    line = np.stack([np.linspace(0, 0.1, 30), np.zeros(30), np.zeros(30)], axis=1)
    assert solve_pnp(line, rng.uniform(0, 400, (30, 2)), K) is None
    assert solve_pnp(*_scene(rng, outlier_fraction=1.0)[:2], K) is None  # pure noise


def test_many_points_on_a_few_pixels_give_no_pose(rng):
    """Dense one-way matching can send a hundred template points to the same few frame pixels
    (as on real LM-O frames); a pose that shrinks the object far away onto those pixels makes
    every match an inlier, but rests on four observations."""
    points, *_ = _scene(rng, count=120, outlier_fraction=0.0)
    corners = np.array([[320.0, 240.0], [324.0, 240.0], [320.0, 244.0], [324.0, 244.0]])
    pixels = corners[rng.integers(0, 4, len(points))]  # grid keypoints: exact pixels
    assert solve_pnp(points, pixels, K, conf=PnPConfig(min_inlier_pixels=12)) is None
    assert solve_pnp(points, pixels, K, conf=PnPConfig(min_inlier_pixels=4)) is not None


def test_bad_arguments_raise_clear_errors(rng):
    points, pixels, *_ = _scene(rng)
    with pytest.raises(ValueError, match="2D points"):
        solve_pnp(points, pixels[:-1], K)
    pixels[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        solve_pnp(points, pixels, K)
    with pytest.raises(ValueError, match="method"):
        solve_pnp(points, pixels, K, conf=PnPConfig(method="p6p"))
    with pytest.raises(ValueError, match="min_inlier_pixels"):
        PnPConfig(min_inlier_pixels=-1).validate()
    with pytest.raises(ValueError, match="min_inlier_ratio"):
        PnPConfig(min_inlier_ratio=1.5).validate()
    with pytest.raises(ValueError, match="coefficients"):
        check_distortion(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        check_distortion([0.1, np.nan, 0, 0])
