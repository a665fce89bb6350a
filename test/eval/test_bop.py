import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from ockd_ros.eval.bop import BopDataset, BopEstimate, read_results_csv, write_results_csv
from ockd_ros.eval.cli import BopEvalConfig, evaluate_bop, templates_cli
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.pose import EstimatorConfig, TemplateConfig
from ockd_ros.samples import default_camera, photo_background
from test.paths import LMO

SIZE = (640, 480)


def _textured_box_ply(path: Path, extents_mm) -> None:
    """A box in millimetres with random vertex colours on a fine grid: texture SIFT can find."""
    box = trimesh.creation.box(extents=extents_mm)
    for _ in range(4):
        box = box.subdivide()
    colors = np.random.default_rng(3).integers(0, 256, (len(box.vertices), 4))
    colors[:, 3] = 255
    box.visual.vertex_colors = colors
    box.export(path)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def bop_dataset(tmp_path_factory, renderer):
    """A two-frame BOP dataset: a textured box (id 1) and a symmetric plain cylinder (id 2)."""
    root = tmp_path_factory.mktemp("bop")
    models = root / "models"
    models.mkdir()
    _textured_box_ply(models / "obj_000001.ply", (80.0, 60.0, 40.0))
    trimesh.creation.cylinder(radius=25.0, height=70.0).export(models / "obj_000002.ply")
    _write_json(
        models / "models_info.json",
        {
            "1": {"diameter": float(np.linalg.norm([80, 60, 40]))},
            "2": {
                "diameter": 86.0,
                "symmetries_continuous": [{"axis": [0, 0, 1], "offset": [0, 0, 0]}],
            },
        },
    )
    objects = [load_object(resolve_object(str(models / f"obj_00000{i}.ply"))) for i in (1, 2)]
    K = default_camera(SIZE)
    scene = root / "test" / "000001"
    gt, cameras = {}, {}
    for im_id, angles in enumerate([(20, -30, 10), (-25, 15, 100)]):
        poses = [
            make_pose(
                Rotation.from_euler("xyz", angles, degrees=True).as_matrix(), [-0.06, 0, 0.45]
            ),
            make_pose(Rotation.from_euler("x", 60, degrees=True).as_matrix(), [0.08, 0.02, 0.5]),
        ]
        view = renderer.render(objects, poses, K, SIZE)
        rgb = np.where(view.labels[..., None] > 0, view.rgb, photo_background(SIZE, "grass"))
        (scene / "rgb").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(scene / "rgb" / f"{im_id:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        gt[str(im_id)] = [
            {
                "obj_id": obj_id,
                "cam_R_m2c": T[:3, :3].reshape(-1).tolist(),
                "cam_t_m2c": (T[:3, 3] * 1000).tolist(),
            }
            for obj_id, T in ((1, poses[0]), (2, poses[1]))
        ]
        cameras[str(im_id)] = {"cam_K": K.reshape(-1).tolist(), "depth_scale": 1.0}
    _write_json(scene / "scene_gt.json", gt)
    _write_json(scene / "scene_camera.json", cameras)
    return root


def test_reader_converts_to_metres_and_reads_symmetries(bop_dataset):
    dataset = BopDataset(bop_dataset)
    assert sorted(dataset.models) == [1, 2]
    assert not dataset.models[1].symmetric and dataset.models[2].symmetric
    assert dataset.models[1].diameter == pytest.approx(np.linalg.norm([0.08, 0.06, 0.04]))
    frames = dataset.frames()
    assert [(f.scene_id, f.im_id) for f in frames] == [(1, 0), (1, 1)]
    assert frames[0].instances[0].t == pytest.approx([-0.06, 0.0, 0.45])
    assert frames[0].load_rgb().shape == (480, 640, 3)
    points = dataset.models[1].eval_points()
    assert np.abs(points).max() == pytest.approx(0.04)  # half the longest side, in metres


def test_evaluation_writes_report_csv_and_overlays(bop_dataset, tmp_path):
    conf = BopEvalConfig(
        dataset=str(bop_dataset),
        overlays=1,
        estimator=EstimatorConfig(
            backend="sift",
            templates=TemplateConfig(views=24, size=192),
            cache_dir=str(tmp_path / "cache"),
        ),
    )
    out = tmp_path / "out"
    report = evaluate_bop(conf, out, command="ockd-eval bop ...")
    text = report.read_text()
    assert "| obj_000001 | no | 2 |" in text and "| **all** |" in text
    assert "`ockd-eval bop ...`" in text
    assert len(list(out.glob("overlay_*.png"))) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["instances"]) == 4
    box = [r for r in metrics["instances"] if r["obj_id"] == 1]
    # The textured box is found in both frames, within 10 % of its diameter.
    assert all(r["add"] is not None and r["add"] < 0.1 * r["diameter"] for r in box)
    estimates = read_results_csv(out / "ockdros-sift_bop0-test.csv")
    frames = BopDataset(bop_dataset).frames()
    for estimate in (e for e in estimates if e.obj_id == 1):
        truth = frames[estimate.im_id].instances[0]
        assert np.linalg.norm(estimate.t - truth.t) < 0.01  # CSV millimetres read back as metres
        assert estimate.time > 0


def test_results_csv_round_trip(tmp_path):
    R = Rotation.from_euler("xyz", [10, 20, 30], degrees=True).as_matrix()
    written = [BopEstimate(2, 3, 5, 0.75, R, np.array([0.1, -0.2, 0.9]), 0.5)]
    path = write_results_csv(tmp_path / "m_lmo-test.csv", written)
    lines = path.read_text().splitlines()
    assert lines[0] == "scene_id,im_id,obj_id,score,R,t,time"
    assert "100.0000 -200.0000 900.0000" in lines[1]  # BOP wants millimetres
    (read,) = read_results_csv(path)
    assert (read.scene_id, read.im_id, read.obj_id) == (2, 3, 5)
    np.testing.assert_allclose(read.R, R, atol=1e-7)
    np.testing.assert_allclose(read.t, [0.1, -0.2, 0.9])


def test_malformed_datasets_give_clear_errors(tmp_path, bop_dataset):
    with pytest.raises(FileNotFoundError, match="not found"):
        BopDataset(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="split"):
        BopDataset(bop_dataset, split="train")
    broken = tmp_path / "broken"
    _write_json(broken / "models" / "models_info.json", {})
    (broken / "models" / "models_info.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        BopDataset(broken)


def test_templates_cli_reports_a_missing_mesh(tmp_path, capsys):
    missing = tmp_path / "nothere.ply"
    with pytest.raises(SystemExit):
        templates_cli(["build", "--objects", str(missing), "--cache-dir", str(tmp_path)])
    assert "nothere.ply" in capsys.readouterr().err


@pytest.mark.skipif(not LMO.is_dir(), reason=f"LM-O data not found at {LMO}")
def test_lmo_is_read_as_documented():
    dataset = BopDataset(LMO, "test")
    assert sorted(dataset.models) == [1, 5, 6, 8, 9, 10, 11, 12]
    assert {i for i, m in dataset.models.items() if m.symmetric} == {10, 11}
    assert all(0.09 < m.diameter < 0.3 for m in dataset.models.values())
    frames = dataset.frames()
    assert len(frames) == 40
    camera = json.loads((LMO / "camera.json").read_text())
    assert frames[0].K[0, 0] == pytest.approx(camera["fx"])
    assert all(0.2 < i.t[2] < 2.0 for f in frames for i in f.instances)  # metres, not mm
