"""Every command line reports bad input in one line, `<prog>: error: <why>` on stderr, with exit
status 1 and no traceback. Run as a user runs them: the installed console scripts, each in its
own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh
import yaml

from ockd_ros.bags import BagWriter, frame_stamp
from ockd_ros.features.ockd import DEFAULT_CHECKPOINT
from ockd_ros.geometry import make_pose
from ockd_ros.samples import default_camera

BIN = Path(sys.executable).parent
SIZE = (160, 120)


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assert_one_error_line(result: subprocess.CompletedProcess, prog: str, *says: str) -> None:
    stderr = result.stderr
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr, stderr
    # Libraries may warn on stderr (libpng does about some textures); the error is one line.
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"{prog}: error: "), stderr
    for text in says:
        assert text in errors[0], stderr


@pytest.fixture(scope="module")
def truncated(tmp_path_factory) -> Path:
    """The shipped checkpoint cut in half, and an estimator config that names it."""
    folder = tmp_path_factory.mktemp("truncated")
    data = DEFAULT_CHECKPOINT.read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    config = {"backend": "ockd", "features": {"checkpoint": str(folder / "truncated.pt")}}
    (folder / "estimator.yaml").write_text(yaml.safe_dump(config))
    return folder


def _tiny_bop_dataset(root: Path) -> Path:
    """One grey frame with one box: enough to get to loading the estimator."""
    (root / "models").mkdir(parents=True)
    trimesh.creation.box(extents=(80.0, 60.0, 40.0)).export(root / "models" / "obj_000001.ply")
    (root / "models" / "models_info.json").write_text(json.dumps({"1": {"diameter": 108.0}}))
    scene = root / "test" / "000001"
    (scene / "rgb").mkdir(parents=True)
    cv2.imwrite(str(scene / "rgb" / "000000.png"), np.full((*SIZE[::-1], 3), 128, np.uint8))
    pose = {"obj_id": 1, "cam_R_m2c": np.eye(3).ravel().tolist(), "cam_t_m2c": [0, 0, 500.0]}
    (scene / "scene_gt.json").write_text(json.dumps({"0": [pose]}))
    camera = {"cam_K": default_camera(SIZE).ravel().tolist(), "depth_scale": 1.0}
    (scene / "scene_camera.json").write_text(json.dumps({"0": camera}))
    return root


def _tiny_bag(path: Path) -> Path:
    with BagWriter(path) as bag:
        rgb = np.full((*SIZE[::-1], 3), 128, np.uint8)
        truth = [("ketchup", make_pose(np.eye(3), [0.0, 0.0, 0.5]))]
        bag.write_frame(frame_stamp(0, 10.0), rgb, default_camera(SIZE), truth)
    return path


def _tiny_training_data(path: Path) -> Path:
    from ockd_ros.training.scenes import SceneConfig, generate

    conf = SceneConfig(
        meshes="ketchup,milk", scenes=2, frames_per_scene=2, size=(64, 64), objects_per_scene=2,
        distractors=(0, 0), max_texture_size=128, i0=False,
    )  # fmt: skip
    return generate(conf, path, progress=False)


def _eval_bop(work: Path, truncated: Path) -> list[str]:
    dataset = _tiny_bop_dataset(work / "bop")
    return ["ockd-eval", "bop", "--dataset", str(dataset), "--out", str(work / "out"),
            "--config", str(truncated / "estimator.yaml")]  # fmt: skip


def _templates(work: Path, truncated: Path) -> list[str]:
    return ["ockd-templates", "build", "--objects", "ketchup", "--cache-dir", str(work / "cache"),
            "--config", str(truncated / "estimator.yaml")]  # fmt: skip


def _bag_eval(work: Path, truncated: Path) -> list[str]:
    bag = _tiny_bag(work / "bag")
    return ["ockd-bag", "eval", str(bag), "--out", str(work / "out"),
            "--config", str(truncated / "estimator.yaml")]  # fmt: skip


def _train(work: Path, truncated: Path) -> list[str]:
    data = _tiny_training_data(work / "data")
    (work / "train.yaml").write_text(yaml.safe_dump({"data": {"val_scenes": 1}}))
    return ["ockd-train", "--data", str(data), "--out", str(work / "run"), "--config",
            str(work / "train.yaml"), "--init", str(truncated / "truncated.pt")]  # fmt: skip


@pytest.mark.parametrize("command", [_eval_bop, _templates, _bag_eval, _train])
def test_a_truncated_checkpoint_is_one_error_line(tmp_path, truncated, command):
    args = command(tmp_path, truncated)
    result = _run(*args, cwd=tmp_path)
    _assert_one_error_line(result, args[0], "cannot read checkpoint", "truncated.pt")


def test_an_unknown_object_is_one_error_line(tmp_path):
    result = _run("ockd-demo", "--objects", "no_such_object", "--out", str(tmp_path), cwd=tmp_path)
    _assert_one_error_line(result, "ockd-demo", "unknown object 'no_such_object'")


def test_a_file_that_is_no_mesh_is_one_error_line(tmp_path):
    (tmp_path / "broken.ply").write_text("ply\nnot really\n")
    result = _run("ockd-gen", "--meshes", str(tmp_path / "broken.ply"), "--scenes", "1",
                  "--out", str(tmp_path / "data"), cwd=tmp_path)  # fmt: skip
    _assert_one_error_line(result, "ockd-gen", "broken.ply")


def test_a_folder_that_is_no_scene_is_one_error_line(tmp_path):
    result = _run("ockd-preview", str(tmp_path), cwd=tmp_path)
    _assert_one_error_line(result, "ockd-preview", "no scene.json")


def test_image_sizes_are_read_alike_by_every_command(capsys):
    from ockd_ros.bag_cli import cli as bag_cli
    from ockd_ros.training.scenes import main as gen_main

    said = []
    for command in (
        lambda size: bag_cli(["record-synthetic", "--out", "unused", "--size", size]),
        lambda size: gen_main(["--out", "unused", "--size", size]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            command("640by480")
        assert exit_info.value.code == 2  # argparse's: a malformed command line
        said.append(capsys.readouterr().err.splitlines()[-1].split(": error: ")[1])
    assert said[0] == said[1] == "argument --size: size must look like 640x480, got '640by480'"
