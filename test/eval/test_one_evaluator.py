"""One evaluation path: LM-O frames scored by `ockd-eval bop` and, converted with `ockd-bag
from-bop`, by `ockd-bag eval` give the same errors, instance by instance."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ockd_ros.bag_cli import cli as bag_cli
from ockd_ros.eval.cli import eval_cli
from test.paths import LMO

SCENE = "000002"
FRAMES = 3
OBJ_IDS = (1, 5, 6)  # ape, can, cat
TWICE = 5  # the object given a second, made-up instance (found in the first frame)
# SIFT finds nothing right on these texture-poor objects: with PnP this lax it reports wrong
# poses, which are as good as right ones for comparing two scorings (and cheaper to get).
LAX = {
    "matching": {"max_ratio": 1.0, "mutual": False},
    "pnp": {"min_inliers": 4, "reprojection_error": 16.0},
}


@pytest.fixture
def lmo_slice(tmp_path) -> Path:
    """The first frames of LM-O scene 2 as a BOP dataset of their own. In the first frame the
    can is annotated twice, a made-up copy 5 cm to the side coming first: one pose is scored
    against the closer of the two, and the bag must carry both for that."""
    if not (LMO / "test" / SCENE).is_dir():
        pytest.skip(f"LM-O not found at {LMO} (set OCKD_LMO_DIR)")
    root = tmp_path / "lmo"
    scene = root / "test" / SCENE
    (scene / "rgb").mkdir(parents=True)
    for folder in ("models", "models_eval"):
        (root / folder).symlink_to(LMO / folder)
    gt = json.loads((LMO / "test" / SCENE / "scene_gt.json").read_text())
    cameras = json.loads((LMO / "test" / SCENE / "scene_camera.json").read_text())
    keys = sorted(gt, key=int)[:FRAMES]
    gt = {key: gt[key] for key in keys}
    (original,) = [entry for entry in gt[keys[0]] if entry["obj_id"] == TWICE]
    copy = {**original, "cam_t_m2c": list(np.add(original["cam_t_m2c"], [50.0, 0.0, 0.0]))}
    gt[keys[0]] = [copy, *gt[keys[0]]]
    (scene / "scene_gt.json").write_text(json.dumps(gt))
    (scene / "scene_camera.json").write_text(json.dumps({key: cameras[key] for key in keys}))
    for key in keys:
        image = f"{int(key):06d}.png"
        (scene / "rgb" / image).symlink_to(LMO / "test" / SCENE / "rgb" / image)
    return root


def _errors_by_frame(metrics_path: Path) -> list[list[tuple]]:
    """Per frame in evaluation order, (name, ADD, ADD-S) of each instance (None: missed),
    sorted. The two paths number frames differently (BOP image ids, bag positions)."""
    frames: dict[tuple[int, int], list[tuple]] = {}
    for r in json.loads(metrics_path.read_text())["instances"]:
        frames.setdefault((r["scene_id"], r["im_id"]), []).append((r["name"], r["add"], r["adds"]))
    return [
        sorted(rows, key=lambda row: (row[0], row[1] is None, row[1] or 0.0))
        for rows in frames.values()
    ]


def test_a_bop_folder_and_its_bag_are_scored_alike(tmp_path, lmo_slice):
    config = tmp_path / "lax.yaml"
    config.write_text(yaml.safe_dump({"backend": "sift", **LAX}))
    estimator = ["--views", "12", "--cache-dir", str(tmp_path / "cache"), "--config", str(config)]
    names = [f"obj_{obj_id:06d}" for obj_id in OBJ_IDS]

    eval_cli(
        ["bop", "--dataset", str(lmo_slice), "--out", str(tmp_path / "bop"), "--overlays", "0",
         "--objects", *map(str, OBJ_IDS), *estimator]
    )  # fmt: skip
    bag = tmp_path / "bag"
    bag_cli(["from-bop", "--dataset", str(lmo_slice), "--out", str(bag)])
    bag_cli(
        ["eval", str(bag), "--out", str(tmp_path / "bag_eval"), "--overlays", "0",
         "--bop-dataset", str(lmo_slice), "--objects", *names, "--no-tracking", *estimator]
    )  # fmt: skip

    from_folder = _errors_by_frame(tmp_path / "bop" / "metrics.json")
    from_bag = _errors_by_frame(tmp_path / "bag_eval" / "metrics.json")
    assert len(from_folder) == FRAMES
    # every instance of the three objects, the made-up one included
    assert [len(rows) for rows in from_folder] == [len(OBJ_IDS) + 1] + [len(OBJ_IDS)] * (FRAMES - 1)
    found = [row for rows in from_folder for row in rows if row[1] is not None]
    assert found, "no pose at all: the comparison would hold whatever the scoring"
    # one pose of the can, two instances: only the closer one has it
    twice = [row for row in from_folder[0] if row[0] == names[OBJ_IDS.index(TWICE)]]
    assert sorted(row[1] is None for row in twice) == [False, True]

    assert [[row[0] for row in rows] for rows in from_bag] == [
        [row[0] for row in rows] for rows in from_folder
    ]
    for bag_rows, folder_rows in zip(from_bag, from_folder, strict=True):
        for (name, *bag_errors), (_, *folder_errors) in zip(bag_rows, folder_rows, strict=True):
            assert (bag_errors[0] is None) == (folder_errors[0] is None), name
            if folder_errors[0] is not None:
                # identical up to float rounding: a different rule or input moves them by far more
                np.testing.assert_allclose(bag_errors, folder_errors, rtol=1e-9, err_msg=name)
