"""Checks shared by the tests that estimate poses in rendered scenes."""

import numpy as np
from scipy.spatial.transform import Rotation

from ockd_ros.pose.estimator import FOUND


def assert_found_at_true_poses(estimator, scene, names, metres=0.01, degrees=5.0) -> dict:
    """Every object of `names` (rendered in `scene` in that order, labels 1, 2, ...) is found
    within `metres` and `degrees` of its true pose, from keypoints lying on it; returns the poses
    by name."""
    poses = {p.name: p for p in estimator.estimate(scene.rgb, scene.K)}
    assert estimator.last_status == dict.fromkeys(names, FOUND)
    for index, name in enumerate(names):
        pose, truth = poses[name], scene.poses[index]
        assert np.linalg.norm(pose.t - truth[:3, 3]) < metres
        assert np.degrees(Rotation.from_matrix(pose.R.T @ truth[:3, :3]).magnitude()) < degrees
        pixels = np.round(pose.keypoints).astype(int)
        assert np.mean(scene.view.labels[pixels[:, 1], pixels[:, 0]] == index + 1) > 0.9
    return poses
