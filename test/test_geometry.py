import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import (
    backproject,
    check_intrinsics,
    intrinsics,
    invert_pose,
    look_at,
    make_pose,
    project,
    same_pose,
    transform_points,
    unit_scale,
)


def test_unknown_unit_is_refused_with_the_known_ones():
    # What each known unit converts to is checked where it matters, on loaded meshes
    # (test_meshes.py); here only that a unit outside the table is an error, never a guess.
    with pytest.raises(ValueError, match=r"unknown length unit 'inch'.*\['cm', 'm', 'mm'\]"):
        unit_scale("inch")


def test_pose_inverse_round_trip(rng):
    T = make_pose(Rotation.random(random_state=1).as_matrix(), rng.normal(size=3))
    points = rng.normal(size=(10, 3))
    back = transform_points(invert_pose(T), transform_points(T, points))
    np.testing.assert_allclose(back, points, atol=1e-12)


def test_project_backproject_round_trip(rng):
    K = intrinsics(500.0, 510.0, 320.0, 240.0)
    points = np.column_stack([rng.uniform(-0.2, 0.2, (20, 2)), rng.uniform(0.3, 1.0, 20)])
    uv = project(K, points)
    np.testing.assert_allclose(backproject(K, uv, points[:, 2]), points, atol=1e-12)


def test_look_at_points_the_optical_axis_at_the_target():
    T_world_cam = look_at([0.3, -0.4, 0.5], [0.0, 0.0, 0.0])
    target_in_cam = transform_points(invert_pose(T_world_cam), np.zeros((1, 3)))[0]
    np.testing.assert_allclose(target_in_cam[:2], 0.0, atol=1e-12)
    assert target_in_cam[2] > 0
    # world up appears upwards in the image (negative y in the optical frame)
    up_in_cam = T_world_cam[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    assert up_in_cam[1] < 0
    assert np.linalg.det(T_world_cam[:3, :3]) == pytest.approx(1.0)


def test_look_at_straight_down_is_well_defined():
    T = look_at([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])
    assert np.all(np.isfinite(T))
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "K, message",
    [
        (np.zeros((3, 3)), "positive focal"),
        (np.full((3, 3), np.nan), "non-finite"),
        (np.eye(2), "3×3"),
    ],
)
def test_check_intrinsics_rejects_bad_matrices(K, message):
    with pytest.raises(ValueError, match=message):
        check_intrinsics(K)


def test_same_pose_compares_rotation_and_translation():
    R = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    turned = Rotation.from_euler("z", 25, degrees=True).as_matrix() @ R
    t = np.array([0.1, 0.0, 0.8])
    assert same_pose(R, t, R, t + 0.01, 20.0, 0.02)
    assert not same_pose(R, t, turned, t, 20.0, 0.02)
    assert not same_pose(R, t, R, t + 0.05, 20.0, 0.02)
