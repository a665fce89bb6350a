"""Real YCB-Video frames (the paper's benchmark, BOP format) read as they are: millimetre PLY
meshes with their textures, the camera, and a known-good object found at its true pose."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.bop_eval import BopEvalConfig, evaluate_bop
from ockd_ros.meshes import load_object
from ockd_ros.pose import default_config
from test.paths import YCBV

pytestmark = pytest.mark.skipif(
    not (YCBV / "models").is_dir(), reason=f"YCB-Video data not found at {YCBV} (OCKD_YCBV_DIR)"
)
CRACKER_BOX = 2  # large and well textured: SIFT finds it from any side


def test_ycbv_is_read_as_documented():
    dataset = BopDataset(YCBV, "test")
    assert sorted(dataset.models) == [1, 2, 3, 5, 6, 9]
    assert not any(m.symmetric for m in dataset.models.values())  # PoseCNN's ADD column
    assert all(0.05 < m.diameter < 0.4 for m in dataset.models.values())  # metres
    frames = dataset.frames()
    assert len(frames) == 40
    camera = json.loads((YCBV / "test/000001/scene_camera.json").read_text())
    assert frames[0].K.ravel().tolist() == pytest.approx(camera["1"]["cam_K"])
    assert all(0.3 < i.t[2] < 2.0 for f in frames for i in f.instances)


def test_the_ply_meshes_load_with_their_textures():
    model = BopDataset(YCBV, "test").models[CRACKER_BOX]
    mesh = load_object(model.spec()).mesh
    assert mesh.visual.kind == "texture"
    image = np.asarray(mesh.visual.material.image)
    assert image.ndim == 3 and image.std() > 10  # a real texture, not a flat colour
    assert 0.2 < float(np.ptp(mesh.vertices, axis=0).max()) < 0.3  # mm read as metres


def test_a_known_good_object_is_found_at_its_true_pose(tmp_path):
    conf = BopEvalConfig(
        dataset=str(YCBV),
        objects=(CRACKER_BOX,),
        max_frames=6,
        overlays=1,
        estimator=dataclasses.replace(default_config("sift"), cache_dir=str(tmp_path / "cache")),
    )
    evaluate_bop(conf, tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    cracker = next(s for s in metrics["summaries"] if s["name"] == f"obj_{CRACKER_BOX:06d}")
    assert cracker["instances"] == cracker["found"] == 6
    diameter = BopDataset(YCBV, "test").models[CRACKER_BOX].diameter
    errors = [i["add"] for i in metrics["instances"] if i["name"] == cracker["name"]]
    assert max(errors) < 0.2 * diameter  # every pose near the truth (the box is 27 cm long)
    assert list((tmp_path / "out").glob("overlay_*.png"))
