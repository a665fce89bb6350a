"""The pose verifier and refinement (`ockd_ros.pose.verify`): look-ups on a keypoint grid,
sub-cell positions, agreement of right and wrong poses, and refinement back to a true pose."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.features.types import Features
from ockd_ros.pose.verify import (
    Agreement,
    FrameLookup,
    Occluders,
    VerifyConfig,
    agreement,
    project_points,
    refine,
    strongest,
    verified,
)

K = np.array([[500.0, 0.0, 160.0], [0.0, 500.0, 120.0], [0.0, 0.0, 1.0]])
SIZE = (320, 240)
STRIDE = 4.0


def _grid(size=SIZE, stride=STRIDE) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(2, size[0], stride), np.arange(2, size[1], stride))
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def _field(pixels: np.ndarray) -> np.ndarray:
    """Unit descriptors that vary smoothly with the pixel: nearby pixels have similar ones, far
    ones differ (random Fourier features of the position, 64 frequencies up to 1/24 px)."""
    rng = np.random.default_rng(7)
    frequencies = rng.normal(scale=1 / 24, size=(2, 64))
    phases = rng.uniform(0, 2 * np.pi, 64)
    desc = np.cos(np.asarray(pixels, np.float64) @ frequencies * 2 * np.pi + phases)
    return (desc / np.linalg.norm(desc, axis=1, keepdims=True)).astype(np.float32)


def _features(keypoints: np.ndarray) -> Features:
    desc = _field(keypoints)
    return Features(keypoints, np.zeros(len(keypoints), np.float32), desc, None, SIZE)


@pytest.fixture(scope="module")
def lookup() -> FrameLookup:
    return FrameLookup.of(_features(_grid()), STRIDE)


def test_the_nearest_grid_keypoint_is_found_and_pixels_off_the_grid_are_unseen(lookup):
    grid = _grid()
    pixels = np.array([[10.0, 10.0], [101.0, 57.0], [-40.0, 10.0], [10.0, 900.0], [np.nan, 3.0]])
    found = lookup.best_near(pixels, _field(pixels), radius=0.0)
    assert found.cosine.shape == (5,) and found.frame_index.shape == (5,)
    np.testing.assert_allclose(grid[found.frame_index[:2]], [[10, 10], [102, 58]])
    assert np.all(np.isnan(found.cosine[2:])) and np.all(found.frame_index[2:] == -1)


def test_a_wider_radius_finds_the_most_similar_keypoint_around(lookup):
    pixels = np.array([[50.0, 50.0]])
    target = _field(np.array([[54.0, 46.0]]))  # one cell right, one up
    assert lookup.best_near(pixels, target, radius=0.0).cosine[0] < 0.99
    near = lookup.best_near(pixels, target, radius=STRIDE)
    np.testing.assert_allclose(lookup.keypoints[near.frame_index[0]], [54.0, 46.0])
    np.testing.assert_allclose(near.cosine, [1.0], atol=1e-5)


def test_subcell_moves_a_match_towards_the_true_position(lookup):
    true = np.array([[51.3, 61.1], [121.0, 97.6]])
    found = lookup.best_near(true, _field(true), radius=STRIDE)
    refined = lookup.subcell(found.frame_index, _field(true))
    before = np.linalg.norm(lookup.keypoints[found.frame_index] - true, axis=1)
    after = np.linalg.norm(refined - true, axis=1)
    assert np.all(after < before)


def test_a_cell_must_be_positive():
    with pytest.raises(ValueError, match="cell"):
        FrameLookup(_features(_grid()), 0.0)


@pytest.mark.parametrize(
    "field, value",
    [
        ("hypotheses", 0),
        ("agreement", 1.5),
        ("min_share", 2.0),
        ("refine_reprojection", 0.0),
        ("confident_share", -0.1),
        ("support_diameters", 0.0),
        ("occlusion_metres", -0.01),
    ],
)
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match="verify"):
        VerifyConfig(**{field: value}).validate()


def _scene():
    """Points of a 10 cm plate 0.6 m in front of the camera, and the frame grid whose
    descriptors are those of the pixels where the plate's points project."""
    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-0.05, 0.05, (400, 2)), np.zeros(400)])
    R = Rotation.from_euler("xyz", [20, -15, 5], degrees=True).as_matrix()
    t = np.array([0.01, -0.02, 0.6])
    pixels, _ = project_points(points, R, t, K, None)
    return points, _field(pixels), R, t


def test_the_true_pose_agrees_and_a_shifted_one_does_not(lookup):
    points, desc, R, t = _scene()
    conf = VerifyConfig(min_agreeing=50, min_share=0.5, agreement=0.8)
    right = agreement(lookup, points, desc, R, t, K, None, conf.radius)
    wrong = agreement(lookup, points, desc, R, t + np.array([0.03, 0.0, 0.0]), K, None, conf.radius)
    assert verified(right, True, conf) and not verified(wrong, True, conf)
    # Alone, a pose needs a confident share.
    assert verified(right, False, conf) == (right.share(conf.agreement) >= conf.confident_share)
    assert right.share(conf.agreement) > 0.9 > 0.2 > wrong.share(conf.agreement), (
        right.share(conf.agreement),
        wrong.share(conf.agreement),
    )


def _hiding_plate(x_max: float, depth: float) -> np.ndarray:
    """Points on a fronto-parallel plate at `depth` metres, covering the image left of
    camera-frame x = `x_max`·depth (in the plate's own frame, seen at the identity pose)."""
    xs, ys = np.meshgrid(np.linspace(-0.4, x_max, 120), np.linspace(-0.3, 0.3, 90))
    return np.column_stack([xs.ravel() * depth, ys.ravel() * depth, np.full(xs.size, depth)])


def test_points_behind_a_found_object_are_unseen_not_disagreeing():
    points, desc, R, t = _scene()
    pixels, _ = project_points(points, R, t, K, None)
    behind = pixels[:, 0] < K[0, 2]  # the left half of the plate
    # The frame shows something else where a nearer object hides the plate.
    features = _features(_grid())
    hidden_grid = features.keypoints[:, 0] < K[0, 2] - 2 * STRIDE
    features.desc_intra[hidden_grid] = np.roll(features.desc_intra[hidden_grid], 7, axis=1)
    lookup = FrameLookup.of(features, STRIDE)
    occluders = Occluders(lookup)
    occluders.add(_hiding_plate(x_max=-0.01, depth=0.4), np.eye(3), np.zeros(3), K, None)
    plain = agreement(lookup, points, desc, R, t, K, None, 4.0)
    aware = agreement(lookup, points, desc, R, t, K, None, 4.0, occluders, 0.01)
    assert plain.share(0.8) < 0.8 < 0.9 < aware.share(0.8), (plain.share(0.8), aware.share(0.8))
    hidden = np.isnan(aware.cosine) & np.isfinite(plain.cosine)
    assert hidden.sum() > 0.3 * len(points) and np.all(behind[hidden])
    # Behind the plate is more than the margin; a plate behind the object hides nothing.
    occluders_behind = Occluders(lookup)
    occluders_behind.add(_hiding_plate(x_max=-0.01, depth=1.0), np.eye(3), np.zeros(3), K, None)
    np.testing.assert_array_equal(
        agreement(lookup, points, desc, R, t, K, None, 4.0, occluders_behind, 0.01).cosine,
        plain.cosine,
    )


def test_refinement_brings_a_nearby_pose_back_to_the_true_one(lookup):
    points, desc, R, t = _scene()
    start_R = Rotation.from_rotvec([0.0, 0.03, 0.0]).as_matrix() @ R
    start_t = t + np.array([0.003, -0.002, 0.01])
    conf = VerifyConfig(agreement=0.8, min_agreeing=50)
    refined = refine(lookup, points, desc, start_R, start_t, K, None, conf)
    assert refined is not None and len(refined.points) == len(refined.pixels) >= 50
    assert np.linalg.norm(refined.t - t) < 0.25 * np.linalg.norm(start_t - t)
    angle = Rotation.from_matrix(refined.R.T @ R).magnitude()
    assert angle < 0.25 * 0.03


def test_refinement_gives_up_where_nothing_agrees(lookup):
    points, desc, R, t = _scene()
    far = t + np.array([0.5, 0.0, 0.0])  # off the image
    assert refine(lookup, points, desc, R, far, K, None, VerifyConfig()) is None


def _judged(agreeing: int, seen: int, label: str) -> tuple[Agreement, str]:
    cosine = np.full(seen + 10, np.nan, np.float32)  # 10 points off the image
    cosine[:seen] = 0.1
    cosine[:agreeing] = 0.9
    return Agreement(cosine, np.zeros(len(cosine), np.int64)), label


def test_the_largest_share_picks_the_pose_and_the_most_agreeing_alike_one_stands_for_it():
    conf = VerifyConfig(agreement=0.6, min_agreeing=24)
    many = _judged(219, 447, "wrong pose, large template, half agreeing")
    most = _judged(204, 227, "right pose, small template, most agreeing")
    few = _judged(20, 20, "too few points to count")
    apart = lambda a, b: False  # noqa: E731 (no two poses alike)
    assert strongest([many, most, few], conf, apart)[1] == most[1]
    assert strongest([few, many], conf, apart)[1] == many[1]
    assert strongest([few], conf, apart)[1] == few[1]  # the best there is, for `verified` to refuse
    # A hypothesis of the chosen pose with more agreeing points stands for it, others do not.
    precise = _judged(300, 560, "right pose, large template")
    right = {most[1], precise[1]}
    alike = lambda a, b: {a, b} <= right  # noqa: E731
    assert strongest([many, most, precise], conf, alike)[1] == precise[1]
    assert strongest([many, most, precise], conf, apart)[1] == most[1]
    with pytest.raises(ValueError, match="no hypotheses"):
        strongest([], conf, apart)
