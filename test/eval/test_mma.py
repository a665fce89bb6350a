import numpy as np

from ockd_ros.eval.mma import mutual_nearest_neighbours, score_matches, spatial_ratio_matches
from ockd_ros.features.types import Features


def _features(keypoints, descriptors, size=(64, 48)):
    descriptors = np.asarray(descriptors, dtype=np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    return Features(keypoints, np.ones(len(keypoints), np.float32), descriptors, None, size)


def test_mutual_nearest_neighbours_keeps_only_mutual_pairs():
    desc1 = np.eye(3, dtype=np.float32)
    desc2 = np.array([[1, 0.1, 0], [0.9, 0, 0.1], [0, 0, 1]], np.float32)
    desc2 /= np.linalg.norm(desc2, axis=1, keepdims=True)
    assert mutual_nearest_neighbours(desc1, desc2).tolist() == [[0, 0], [2, 2]]


def test_spatial_ratio_ignores_neighbours_but_not_distant_look_alikes():
    image1 = _features([[10, 10], [30, 30]], [[1, 0, 0], [0, 1, 0]])
    # Keypoint 0 of image 1 has two near-identical candidates 4 px apart (grid neighbours);
    # keypoint 1 has two near-identical candidates 40 px apart (a repeated pattern).
    image2 = _features(
        [[10, 10], [14, 10], [20, 30], [60, 30]],
        [[1, 0.01, 0], [1, -0.0105, 0], [0, 1, 0.01], [0, 1, -0.0105]],
    )
    assert spatial_ratio_matches(image1, image2, 0.9, radius=8.0).tolist() == [[0, 0]]
    assert len(spatial_ratio_matches(image1, image2, 0.9, radius=0.0)) == 0


def test_score_matches_counts_matches_within_each_threshold():
    image1 = _features([[10, 10], [30, 20]], [[1, 0], [0, 1]])
    image2 = _features([[12, 10], [36, 20]], [[1, 0], [0, 1]])
    corr12 = np.zeros((48, 64, 2), np.float32)
    corr12[10, 10], corr12[20, 30] = (10, 10), (30, 20)  # true positions in image 2
    valid12 = np.zeros((48, 64), bool)
    valid12[10, 10] = valid12[20, 30] = True
    score = score_matches(image1, image2, corr12, valid12, (5, 7))
    assert score.matches == 2 and score.correct == {5: 1, 7: 2}
    score = score_matches(image1, image2, corr12, valid12, (5,), spatial_ratio_matches)
    assert score.matches == 2 and score.mma(5) == 0.5
