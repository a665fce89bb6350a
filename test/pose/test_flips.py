import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.features import create_extractor
from ockd_ros.meshes import load_object
from ockd_ros.pose.flips import (
    FlipConfig,
    GreyFrame,
    best_turn,
    box_turns,
    colour_agreement,
    turned_pose,
)
from ockd_ros.pose.templates import TemplateConfig, build_bank
from ockd_ros.samples import render_sample_scene

CONF = FlipConfig(enabled=True)


@pytest.mark.parametrize(
    ("extents", "count"), [((0.05, 0.1, 0.2), 4), ((0.1, 0.1, 0.25), 8), ((0.1, 0.1, 0.1), 24)]
)
def test_box_turns_keep_the_box(extents, count):
    turns = box_turns(np.array(extents), tolerance=0.15)
    assert turns.shape == (count, 3, 3)
    np.testing.assert_array_equal(turns[0], np.eye(3))
    for turn in turns:
        np.testing.assert_allclose(turn @ turn.T, np.eye(3))
        assert np.linalg.det(turn) == pytest.approx(1.0)
        np.testing.assert_allclose(np.abs(turn) @ np.array(extents), extents, rtol=0.15)


def test_a_near_square_section_counts_as_square_within_the_tolerance():
    assert len(box_turns(np.array([0.1, 0.11, 0.25]), tolerance=0.15)) == 8
    assert len(box_turns(np.array([0.1, 0.11, 0.25]), tolerance=0.05)) == 4


def test_turned_pose_sees_the_turned_point_where_the_pose_saw_the_point(rng):
    R = Rotation.random(random_state=1).as_matrix()
    t = np.array([0.02, -0.01, 0.5])
    centre = np.array([0.01, 0.02, 0.05])
    turn = box_turns(np.array([0.1, 0.1, 0.2]), 0.1)[3]
    R2, t2 = turned_pose(R, t, turn, centre)
    for point in rng.normal(0, 0.05, (5, 3)):
        np.testing.assert_allclose(R2 @ point + t2, R @ (turn @ (point - centre) + centre) + t)


@pytest.fixture(scope="module")
def macaroni_scene(renderer):
    """A textured box over a photo, and its bank (SIFT: quick; colours do not depend on it)."""
    macaroni = load_object("macaroni_and_cheese")
    scene = render_sample_scene(renderer, [macaroni], distance=0.5, seed=2)
    bank = build_bank(macaroni, create_extractor("sift"), renderer, TemplateConfig(views=48))
    grey = (scene.rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    return macaroni, scene, bank, GreyFrame(grey, scene.K)


def test_the_true_pose_agrees_in_colour_better_than_its_look_alike_turns(macaroni_scene):
    macaroni, scene, bank, frame = macaroni_scene
    truth = scene.poses[0]
    centre = macaroni.mesh.bounds.mean(axis=0)
    turns = box_turns(macaroni.mesh.extents, CONF.extent_tolerance)
    scores = [
        colour_agreement(bank, *turned_pose(truth[:3, :3], truth[:3, 3], turn, centre), frame, CONF)
        for turn in turns
    ]  # fmt: skip
    assert scores[0] > 0.5
    assert all(score is None or score < scores[0] - CONF.margin for score in scores[1:])


def test_best_turn_undoes_a_turn_onto_a_look_alike_face(macaroni_scene):
    macaroni, scene, bank, frame = macaroni_scene
    truth = scene.poses[0]
    centre = macaroni.mesh.bounds.mean(axis=0)
    turns = box_turns(macaroni.mesh.extents, CONF.extent_tolerance)
    for index in range(1, len(turns)):
        R, t = turned_pose(truth[:3, :3], truth[:3, 3], turns[index], centre)
        undo = best_turn(bank, turns, centre, R, t, frame, CONF)
        R_back, t_back = turned_pose(R, t, turns[undo], centre)
        np.testing.assert_allclose(R_back, truth[:3, :3], atol=1e-9)
        np.testing.assert_allclose(t_back, truth[:3, 3], atol=1e-9)
    # The true pose itself stays.
    assert best_turn(bank, turns, centre, truth[:3, :3], truth[:3, 3], frame, CONF) == 0


def test_uniform_images_cannot_score_a_pose(macaroni_scene):
    _, scene, bank, _ = macaroni_scene
    truth = scene.poses[0]
    flat = GreyFrame(np.full(scene.rgb.shape[:2], 128, np.uint8), scene.K)
    assert colour_agreement(bank, truth[:3, :3], truth[:3, 3], flat, CONF) is None
    with pytest.raises(ValueError, match="margin"):
        FlipConfig(margin=-0.1).validate()
