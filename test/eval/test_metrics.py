import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ockd_ros.eval.metrics import add_error, adds_error, auc, recall

I3 = np.eye(3)


def test_translation_offset_gives_that_distance_for_both_metrics(rng):
    points = rng.uniform(-0.05, 0.05, (200, 3))
    t = np.array([0.1, 0.0, 0.5])
    moved = t + np.array([0.0, 0.01, 0.0])
    assert add_error(I3, moved, I3, t, points) == pytest.approx(0.01)
    # ADD-S never exceeds ADD: the closest point is at most as far as the corresponding one.
    assert adds_error(I3, moved, I3, t, points) <= 0.01
    assert add_error(I3, t, I3, t, points) == 0.0


def test_symmetric_object_adds_is_zero_where_add_is_not():
    # Corners of a 4 cm square: turning it by 90° about its axis maps it onto itself.
    points = np.array(
        [[0.02, 0.02, 0.0], [-0.02, 0.02, 0.0], [-0.02, -0.02, 0.0], [0.02, -0.02, 0]]
    )
    quarter = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    t = np.array([0.0, 0.0, 0.4])
    assert adds_error(quarter, t, I3, t, points) == pytest.approx(0.0, abs=1e-12)
    # Each corner lands on its neighbour, one side (4 cm) away.
    assert add_error(quarter, t, I3, t, points) == pytest.approx(0.04)


def test_auc_by_hand():
    # Four instances: errors 2 cm and 5 cm pass, one missed, one above 10 cm. The YCB-Video
    # step curve: 1/4 on (0, 2 cm], 2/4 on (2, 5 cm] and on (5, 10 cm]:
    # (0.02·0.25 + 0.03·0.5 + 0.05·0.5) / 0.1 = 0.45.
    assert auc([0.02, 0.05, np.inf, 0.2]) == pytest.approx(45.0)
    assert auc([0.0, 0.0]) == pytest.approx(100.0)
    assert auc([np.inf, 0.3, np.nan]) == 0.0
    # The toolbox credits an error from threshold 0: one 5 cm error scores 100, not 50.
    assert auc([0.05]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        auc([])


def test_recall_uses_per_instance_thresholds():
    errors = [0.005, 0.02, np.inf, 0.01, np.nan]
    diameters = np.array([0.1, 0.1, 0.1, 0.2, 0.1])
    # 0.005 < 0.01 yes, 0.02 < 0.01 no, missed no, 0.01 < 0.02 yes, NaN no.
    assert recall(errors, 0.1 * diameters) == pytest.approx(2 / 5)
    assert recall([0.01, 0.03], 0.02) == pytest.approx(0.5)
