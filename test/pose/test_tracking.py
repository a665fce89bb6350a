"""Tracking over rendered sequences (real rendering, real SIFT matching, real PnP), the window
and template options of the estimator it relies on, and the temporal pose filter."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator, EstimatorConfig, TemplateConfig
from ockd_ros.pose.estimator import FEW_KEYPOINTS, FOUND, NO_POSE, ObjectPose
from ockd_ros.pose.tracking import (
    SEARCHED,
    TRACKED,
    PoseFilter,
    PoseFilterConfig,
    Tracker,
    TrackingConfig,
)
from ockd_ros.samples import default_camera, photo_background, render_moving_scene

NAMES = ("macaroni_and_cheese", "orange_juice")  # textured enough for SIFT from most sides
RATE = 10.0  # Hz of the rendered streams


@pytest.fixture(scope="module")
def objects():
    return [load_object(name) for name in NAMES]


@pytest.fixture(scope="module")
def estimator(renderer, objects, tmp_path_factory):
    conf = EstimatorConfig(
        backend="sift",
        templates=TemplateConfig(views=24),
        cache_dir=str(tmp_path_factory.mktemp("templates")),
    )
    return Estimator(conf, objects, renderer=renderer)


def _errors(pose, truth) -> tuple[float, float]:
    angle = np.degrees(Rotation.from_matrix(pose.R.T @ truth[:3, :3]).magnitude())
    return float(np.linalg.norm(pose.t - truth[:3, 3])), float(angle)


@pytest.mark.parametrize("zoom", [False, True])
def test_tracking_follows_a_moving_camera(renderer, objects, estimator, zoom):
    conf = TrackingConfig(full_search_frames=0, full_search_seconds=0, zoom=zoom)
    tracker = Tracker(estimator, conf)
    modes = []
    for frame in range(5):
        scene = render_moving_scene(renderer, objects, frame)
        poses = {p.name: p for p in tracker.track(scene.rgb, scene.K, stamp=frame / RATE)}
        assert sorted(poses) == sorted(NAMES), f"frame {frame}: {estimator.last_status}"
        for name, truth in zip(NAMES, scene.poses, strict=True):
            translation, angle = _errors(poses[name], truth)
            assert translation < 0.01 and angle < 5.0, (frame, name, translation, angle)
        modes.append(tracker.last_mode)
        assert tracker.last_status == dict.fromkeys(NAMES, FOUND), frame
    assert modes[0] == dict.fromkeys(NAMES, SEARCHED)  # no prior yet
    assert all(mode == dict.fromkeys(NAMES, TRACKED) for mode in modes[1:])


def test_a_full_search_runs_every_n_frames(renderer, objects, estimator):
    tracker = Tracker(estimator, TrackingConfig(full_search_frames=3, full_search_seconds=0))
    modes = []
    for frame in range(4):
        scene = render_moving_scene(renderer, objects, frame)
        tracker.track(scene.rgb, scene.K, stamp=frame / RATE)
        modes.append(tracker.last_mode[NAMES[0]])
    assert modes == [SEARCHED, TRACKED, TRACKED, SEARCHED]


def test_an_object_that_leaves_is_searched_for_and_found_again(renderer, objects, estimator):
    """Lost around its prior, an object is searched for in the whole frame at once; absent
    there too, it waits for the next scheduled full search, which finds it back."""
    tracker = Tracker(estimator, TrackingConfig(full_search_frames=3, full_search_seconds=0))
    first, second = NAMES
    for frame in range(2):
        scene = render_moving_scene(renderer, objects, frame)
        tracker.track(scene.rgb, scene.K, stamp=frame / RATE)
    assert tracker.last_mode == dict.fromkeys(NAMES, TRACKED)

    gone = _without(renderer, render_moving_scene(renderer, objects, 2), objects, keep=1)
    poses = {p.name for p in tracker.track(gone.rgb, gone.K, stamp=2 / RATE)}
    assert poses == {second} and tracker.last_mode == {second: TRACKED}
    assert list(estimator.last_status) == [first]  # the last search: the whole frame, for it

    back = render_moving_scene(renderer, objects, 3, metres_per_frame=0.02)  # moved meanwhile
    poses = {p.name: p for p in tracker.track(back.rgb, back.K, stamp=3 / RATE)}
    assert sorted(poses) == sorted(NAMES)
    assert tracker.last_mode == dict.fromkeys(NAMES, SEARCHED)  # the scheduled full search
    translation, angle = _errors(poses[first], back.poses[0])
    assert translation < 0.01 and angle < 5.0
    again = render_moving_scene(renderer, objects, 4, metres_per_frame=0.02)
    tracker.track(again.rgb, again.K, stamp=4 / RATE)
    assert tracker.last_mode == dict.fromkeys(NAMES, TRACKED)


def test_an_absent_object_waits_for_the_next_full_search(renderer, objects, estimator):
    tracker = Tracker(estimator, TrackingConfig(full_search_frames=4, full_search_seconds=0))
    only_second = _without(renderer, render_moving_scene(renderer, objects, 0), objects, keep=1)
    for frame in range(3):
        tracker.track(only_second.rgb, only_second.K, stamp=frame / RATE)
        searched_for = set(estimator.last_status)
        assert (NAMES[0] in searched_for) == (frame == 0), frame
        # what the tracker says it looked for, with each outcome
        assert set(tracker.last_status) == {*NAMES} if frame == 0 else {NAMES[1]}, frame
        assert tracker.last_status[NAMES[1]] == FOUND
        assert frame > 0 or tracker.last_status[NAMES[0]] in (FEW_KEYPOINTS, NO_POSE)


def test_a_frame_where_nothing_is_looked_for_says_so(renderer, objects, estimator):
    tracker = Tracker(estimator, TrackingConfig(full_search_frames=4, full_search_seconds=0))
    empty = photo_background((640, 480))
    K = render_moving_scene(renderer, objects, 0).K
    tracker.track(empty, K, stamp=0.0)  # the first full search: both missing
    assert sorted(tracker.last_status) == sorted(NAMES)
    assert tracker.track(empty, K, stamp=1 / RATE) == []
    assert tracker.last_status == {} and tracker.last_mode == {}


def _modes(tracker, renderer, objects, stamps) -> list[str]:
    """The first object's mode in each frame of the moving scene, at the given stamps."""
    modes = []
    for frame, stamp in enumerate(stamps):
        scene = render_moving_scene(renderer, objects, frame)
        tracker.track(scene.rgb, scene.K, stamp=stamp)
        modes.append(tracker.last_mode[NAMES[0]])
    return modes


def test_a_full_search_runs_every_t_seconds_of_image_stamps(renderer, objects, estimator):
    conf = TrackingConfig(full_search_frames=0, full_search_seconds=0.25)
    modes = _modes(Tracker(estimator, conf), renderer, objects, [0.0, 0.1, 0.2, 0.3, 0.4])
    assert modes == [SEARCHED, TRACKED, TRACKED, SEARCHED, TRACKED]


def test_a_prior_too_old_or_from_the_future_is_not_used(renderer, objects, estimator):
    # no scheduled full search: only the prior's age decides
    conf = TrackingConfig(full_search_frames=0, full_search_seconds=0, max_prior_age_seconds=0.5)
    stamps = [0.0, 0.1, 0.9, 1.0, 0.95]  # 0.8 s gap; then a stamp before the prior's
    modes = _modes(Tracker(estimator, conf), renderer, objects, stamps)
    assert modes == [SEARCHED, TRACKED, SEARCHED, TRACKED, SEARCHED]


def test_the_tracker_publishes_filtered_poses_and_restarts_the_filter_after_a_loss(
    renderer, objects, estimator
):
    """Two trackers on the same frames, one filtering: the filtered pose is halfway between the
    last filtered pose and the measurement (the unfiltered tracker's pose), the search itself
    is the same (priors stay measurements), and an object found again after it was lost starts
    from its measurement, not from its pose before the loss."""
    schedule = TrackingConfig(full_search_frames=3, full_search_seconds=0)
    smoothing = PoseFilterConfig(enabled=True, weight=0.5)
    raw = Tracker(estimator, schedule)
    filtered = Tracker(estimator, dataclasses.replace(schedule, filter=smoothing))
    frames = [render_moving_scene(renderer, objects, k) for k in range(5)]
    frames[2] = dataclasses.replace(frames[2], rgb=photo_background((640, 480)))  # both gone
    restarts = {0, 3}  # the first frame; found again by the full search after the loss
    previous: dict[str, ObjectPose] = {}
    for k, frame in enumerate(frames):
        stamp = k / RATE
        measured = {p.name: p for p in raw.track(frame.rgb, frame.K, stamp=stamp)}
        smoothed = {p.name: p for p in filtered.track(frame.rgb, frame.K, stamp=stamp)}
        assert filtered.last_mode == raw.last_mode, k
        assert sorted(smoothed) == ([] if k == 2 else sorted(NAMES)), k
        for name, pose in smoothed.items():
            if k in restarts:
                np.testing.assert_allclose(pose.matrix, measured[name].matrix, atol=1e-12)
                continue
            before, now = previous[name], measured[name]
            assert np.linalg.norm(now.t - before.t) > 1e-4  # the camera moved: a real average
            np.testing.assert_allclose(pose.t, (before.t + now.t) / 2, atol=1e-9)
            halfway = _angle(before.R, pose.R), _angle(pose.R, now.R)
            assert halfway[0] == pytest.approx(halfway[1], abs=1e-6) and halfway[0] > 0
        previous = smoothed


def _angle(R0, R1) -> float:
    return float(np.degrees(Rotation.from_matrix(R0.T @ R1).magnitude()))


def _without(renderer, scene, objects, keep: int):
    """`scene` rendered again with only object `keep` (the other has left the view)."""
    size = scene.rgb.shape[1], scene.rgb.shape[0]
    view = renderer.render([objects[keep]], [scene.poses[keep]], scene.K, size)
    rgb = np.where(view.labels[..., None] > 0, view.rgb, photo_background(size))
    return dataclasses.replace(scene, rgb=rgb, view=view)


def test_the_estimator_window_keeps_keypoints_inside_and_in_image_pixels(
    renderer, objects, estimator
):
    scene = render_moving_scene(renderer, objects, 0)
    ys, xs = np.nonzero(scene.view.labels == 1)
    roi = (int(xs.min()) - 8, int(ys.min()) - 8, int(xs.max()) + 9, int(ys.max()) + 9)
    frame = estimator.prepare(scene.rgb, scene.K, roi=roi)
    keypoints = frame.features.keypoints
    assert len(keypoints) > 0 and frame.features.image_size == (640, 480)
    assert np.all((keypoints >= roi[:2]) & (keypoints < roi[2:]))
    poses = {p.name: p for p in estimator.search(frame)}
    assert list(poses) == [NAMES[0]]  # the other object lies outside the window
    translation, angle = _errors(poses[NAMES[0]], scene.poses[0])
    assert translation < 0.01 and angle < 5.0


@pytest.mark.parametrize("scale", [0.8, 2.0])
def test_a_resized_window_gives_keypoints_in_image_pixels_and_the_pose(
    renderer, objects, estimator, scale
):
    scene = render_moving_scene(renderer, objects, 0)
    ys, xs = np.nonzero(scene.view.labels == 1)
    roi = (int(xs.min()) - 8, int(ys.min()) - 8, int(xs.max()) + 9, int(ys.max()) + 9)
    frame = estimator.prepare(scene.rgb, scene.K, roi=roi, scale=scale)
    assert frame.scale == scale
    keypoints = frame.features.keypoints
    assert np.all((keypoints >= np.array(roi[:2]) - 0.5) & (keypoints < np.array(roi[2:]) - 0.5))
    (pose,) = estimator.search(frame, [NAMES[0]])
    translation, angle = _errors(pose, scene.poses[0])
    assert translation < 0.01 and angle < 5.0
    with pytest.raises(ValueError, match="scale"):
        estimator.prepare(scene.rgb, scene.K, roi=roi, scale=8.0)


@pytest.mark.parametrize("roi", [(0, 0, 0, 10), (-5, 0, 10, 10), (0, 0, 641, 480), (1, 2, 3)])
def test_a_bad_window_is_refused(estimator, roi):
    rgb = np.zeros((480, 640, 3), np.uint8)
    with pytest.raises(ValueError, match="roi"):
        estimator.prepare(rgb, default_camera(), roi=roi)


def test_templates_limit_the_search(renderer, objects, estimator):
    scene = render_moving_scene(renderer, objects, 0)
    found = {p.name: p for p in estimator.estimate(scene.rgb, scene.K)}
    best = found[NAMES[0]].template
    bank = estimator.banks[NAMES[0]]
    far = np.argsort(bank.view_angles(*_rt(scene.poses[0])))[-4:]  # the views facing away
    near = {p.name: p for p in estimator.estimate(scene.rgb, scene.K, templates={NAMES[0]: [best]})}
    assert near[NAMES[0]].template == best
    away = estimator.estimate(scene.rgb, scene.K, objects=[NAMES[0]], templates={NAMES[0]: far})
    assert all(p.template in far for p in away)
    assert not any(_errors(p, scene.poses[0])[1] < 5.0 for p in away)


def _rt(T):
    return T[:3, :3], T[:3, 3]


def _pose(t, degrees=0.0) -> ObjectPose:
    R = Rotation.from_euler("z", degrees, degrees=True).as_matrix()
    return ObjectPose("box", R, np.asarray(t, float), 1.0, 50, np.zeros((50, 2)), 0, False)


def test_the_filter_smooths_small_motion_and_follows_a_jump():
    pose_filter = PoseFilter(PoseFilterConfig(enabled=True, weight=0.5, jump_metres=0.03))
    first = pose_filter.update(_pose([0.0, 0.0, 0.5]))
    np.testing.assert_allclose(first.t, [0.0, 0.0, 0.5])
    smoothed = pose_filter.update(_pose([0.01, 0.0, 0.5], degrees=4.0))
    np.testing.assert_allclose(smoothed.t, [0.005, 0.0, 0.5])
    angle = np.degrees(Rotation.from_matrix(smoothed.R).magnitude())
    assert angle == pytest.approx(2.0)
    jumped = pose_filter.update(_pose([0.2, 0.0, 0.5], degrees=90.0))
    np.testing.assert_allclose(jumped.t, [0.2, 0.0, 0.5])  # no lag after a jump
    np.testing.assert_allclose(jumped.R, _pose([0, 0, 0], degrees=90.0).R, atol=1e-12)


def test_the_filter_is_off_by_default():
    pose_filter = PoseFilter(PoseFilterConfig())
    pose_filter.update(_pose([0.0, 0.0, 0.5]))
    assert pose_filter.update(_pose([0.01, 0.0, 0.5])).t[0] == 0.01


@pytest.mark.parametrize(
    "conf",
    [
        TrackingConfig(full_search_frames=-1),
        TrackingConfig(view_degrees=0),
        TrackingConfig(box_margin=-0.1),
        TrackingConfig(min_inlier_ratio=0.0),
        TrackingConfig(zoom_range=(2.0, 1.0)),
        TrackingConfig(zoom_range=(0.1, 1.0)),
        TrackingConfig(filter=PoseFilterConfig(weight=0.0)),
    ],
)
def test_invalid_tracking_settings_are_refused(estimator, conf):
    with pytest.raises(ValueError):
        Tracker(estimator, conf)
