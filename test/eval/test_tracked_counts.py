"""Tracked evaluation counts what the tracker did: an object counts as searched in a frame only
when the tracker looked for it, with the outcome of that look (real rendering, SIFT, PnP)."""

from collections import Counter

import numpy as np
import pytest

from ockd_ros.camera_messages import CameraIntrinsics
from ockd_ros.eval.evaluate import EvalFrame, Evaluator, Target
from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator, EstimatorConfig, TemplateConfig
from ockd_ros.pose.estimator import FOUND
from ockd_ros.pose.tracking import Tracker, TrackingConfig
from ockd_ros.samples import photo_background, render_moving_scene

NAMES = ("macaroni_and_cheese", "orange_juice")
SIZE = (640, 480)
RATE = 10.0


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


def _frame(index: int, rgb: np.ndarray, K: np.ndarray) -> EvalFrame:
    intrinsics = CameraIntrinsics(K, np.zeros(0), SIZE)
    return EvalFrame(rgb, intrinsics, [], stamp=round(index / RATE * 1e9), im_id=index)


def test_only_objects_the_tracker_looked_for_are_counted(renderer, objects, estimator):
    """Frames: only the second object in view (full search: both looked for, the second found);
    the same (the second tracked, the first waits for a full search); nothing in view (the
    second lost, looked for in the whole frame); nothing again: nobody is looked for."""
    scene = render_moving_scene(renderer, objects, 0)
    view = renderer.render([objects[1]], [scene.poses[1]], scene.K, SIZE)
    only_second = np.where(view.labels[..., None] > 0, view.rgb, photo_background(SIZE))
    empty = photo_background(SIZE)
    frames = [_frame(i, rgb, scene.K) for i, rgb in enumerate([only_second] * 2 + [empty] * 2)]
    # no scheduled full search after the first: what is looked for follows from the frames alone
    tracker = Tracker(estimator, TrackingConfig(full_search_frames=0, full_search_seconds=0))
    targets = {obj.name: Target.from_mesh(obj, k) for k, obj in enumerate(objects)}
    evaluator = Evaluator(tracker, targets)

    first, second = NAMES
    looked_for = []
    for frame in frames:
        evaluator.run([frame])
        looked_for.append(dict(tracker.last_status))
    assert [sorted(status) for status in looked_for] == [[first, second], [second], [second], []]
    assert looked_for[0][second] == looked_for[1][second] == FOUND
    assert looked_for[0][first] != FOUND and looked_for[2][second] != FOUND

    tally = evaluator.tally
    assert tally.frames == 4
    assert tally.searched == Counter({first: 1, second: 3})
    assert tally.found == Counter({second: 2})
    outcomes = Counter(status for frame in looked_for for status in frame.values())
    assert tally.status == outcomes and sum(tally.status.values()) == 4
