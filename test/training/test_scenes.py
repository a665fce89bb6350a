"""The PPDR generator: real pybullet drops, real rendering, small 128×128 scenes."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from ockd_ros.config import load_config, merge_config
from ockd_ros.geometry import look_at, make_pose
from ockd_ros.training.scene_format import list_scenes, read_frame, read_scene, scene_name
from ockd_ros.training.scenes import (
    Asset,
    CameraConfig,
    PhysicsConfig,
    SceneConfig,
    SceneGenerator,
    camera_problem,
    camera_trajectory,
    drop_on_table,
    generate,
    load_meshes,
    main,
    mesh_specs,
)

REPO = Path(__file__).resolve().parents[2]


def small_config(**overrides) -> SceneConfig:
    return merge_config(
        SceneConfig(),
        {
            "meshes": "ketchup,butter",
            "size": [128, 128],
            "frames_per_scene": 3,
            "objects_per_scene": 2,
            "distractors": [1, 1],
            "primitive_pool": 2,
            "max_texture_size": 256,
            "textures": {"max_size": 256},
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def generator():
    with SceneGenerator(small_config(scenes=3)) as gen:
        yield gen


def scene_files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def assert_same_scene(first: Path, again: Path) -> None:
    """Same files; the same bytes except colour images, which may differ by one level in a few
    pixels: llvmpipe does not promise bit-identical output across GL contexts (the first render
    of a new context has differed by one level in one pixel)."""
    files, other = scene_files(first), scene_files(again)
    assert sorted(files) == sorted(other)
    for name, data in files.items():
        if data == other[name]:
            continue
        assert name.startswith(("rgb/", "i0/")), f"{name} differs"
        a, b = (cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED) for root in (first, again))
        difference = np.abs(a.astype(int) - b.astype(int))
        assert difference.max() <= 1 and np.mean(difference > 0) < 1e-3, name


def test_a_seed_reproduces_the_same_scene(generator, tmp_path):
    first = generator.generate_scene(0, tmp_path / "a")
    with SceneGenerator(small_config(scenes=3)) as fresh:
        again = fresh.generate_scene(0, tmp_path / "b")
        other_seed = SceneGenerator(small_config(scenes=3, seed=1), renderer=fresh.renderer)
        with other_seed:
            different = other_seed.generate_scene(0, tmp_path / "c")
    assert_same_scene(first, again)
    poses = [i.T_world_obj for i in read_scene(first).instances]
    other = [i.T_world_obj for i in read_scene(different).instances]
    assert len(poses) != len(other) or not all(
        np.allclose(p, q) for p, q in zip(poses, other, strict=True)
    )


def test_shards_split_the_work_and_rerunning_skips_finished_scenes(generator, tmp_path):
    conf = generator.conf
    generate(conf, tmp_path, shard=(0, 2), progress=False, generator=generator)
    assert [p.name for p in list_scenes(tmp_path)] == [scene_name(0), scene_name(2)]
    stamps = {p.name: (p / "scene.json").stat().st_mtime_ns for p in list_scenes(tmp_path)}

    generate(conf, tmp_path, shard=(1, 2), progress=False, generator=generator)
    assert [p.name for p in list_scenes(tmp_path)] == [scene_name(i) for i in range(3)]
    for name, stamp in stamps.items():
        assert (tmp_path / name / "scene.json").stat().st_mtime_ns == stamp

    # A damaged scene and the leftovers of a crashed run of another one.
    (tmp_path / scene_name(1) / "scene.json").unlink()
    stale = tmp_path / f".{scene_name(1)}.tmp-host-123"
    stale.mkdir()
    for shard in ((0, 2), (1, 2)):
        generate(conf, tmp_path, shard=shard, progress=False, generator=generator)
    assert not stale.exists()
    for folder in list_scenes(tmp_path):
        read_scene(folder)
    for name, stamp in stamps.items():
        assert (tmp_path / name / "scene.json").stat().st_mtime_ns == stamp


def test_a_killed_run_leaves_no_scene_the_loader_accepts(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "ockd_ros.training.scenes",
        "--meshes",
        "ketchup,butter",
        "--size",
        "128x128",
        "--scenes",
        "50",
        "--frames-per-scene",
        "3",
        "--objects-per-scene",
        "2",
        "--out",
        str(out),
        "--quiet",
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / scene_name(1)).exists():
            assert process.poll() is None, "the generator exited early"
            assert time.monotonic() < deadline, "no scene published within 60 s"
            time.sleep(0.05)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    published = list_scenes(out)
    assert len(published) < 50
    for folder in published:
        meta = read_scene(folder)
        for index in range(len(meta.frames)):
            read_frame(folder, meta, index)


def test_cli_writes_scenes_without_i0_on_request(tmp_path):
    main(
        [
            "--meshes",
            "ketchup",
            "--size",
            "96x64",
            "--scenes",
            "1",
            "--frames-per-scene",
            "2",
            "--objects-per-scene",
            "1",
            "--no-i0",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    (folder,) = list_scenes(tmp_path)
    meta = read_scene(folder)
    assert meta.size == (96, 64) and len(meta.frames) == 2
    assert all(not frame.i0 for frame in meta.frames)
    assert not any((folder / "i0").iterdir())


def test_unusable_meshes_are_skipped_with_a_reason(tmp_path, caplog):
    good = trimesh.creation.box(extents=(40, 60, 80))  # millimetres
    good.export(tmp_path / "good_box.ply")
    (tmp_path / "broken.obj").write_text("v 1 2\nf 1 2 3 4 5\nthis is no mesh\n")
    flat = trimesh.Trimesh([[0, 0, 0], [10, 0, 0], [0, 10, 0]], [[0, 1, 2]])
    flat.export(tmp_path / "flat.ply")
    with caplog.at_level(logging.WARNING):
        specs = mesh_specs(f"{tmp_path},no_such_object,{tmp_path / 'missing.ply'}", units="mm")
        meshes = load_meshes(specs, max_texture_size=256)
    assert [m.name for m in meshes] == ["good_box"]
    assert np.allclose(meshes[0].mesh.extents, [0.04, 0.06, 0.08])
    log = caplog.text
    for name in ("broken.obj", "flat.ply", "no_such_object", "missing.ply"):
        assert name in log


def test_objects_that_fall_off_the_table_are_removed(generator):
    assets = generator.objects + generator.distractors
    result = drop_on_table(
        generator.client,
        assets,
        table_size=0.06,
        rng=np.random.default_rng(3),
        conf=PhysicsConfig(drop_spread=2.0),
    )
    fallen = [i for i, pose in enumerate(result.poses) if pose is None]
    assert fallen, "a 6 cm table cannot hold these objects"
    for i, pose in enumerate(result.poses):
        if pose is None:
            assert "fell off the table" in result.reasons[i]
        else:
            assert result.reasons[i] is None


def test_dropped_objects_come_to_rest_on_the_table(generator):
    assets = generator.objects + generator.distractors
    conf = PhysicsConfig()
    result = drop_on_table(generator.client, assets, 1.0, np.random.default_rng(0), conf)
    assert result.steps < conf.max_steps, "the pile never came to rest"
    assert all(pose is not None for pose in result.poses)
    lowest = [
        (asset.hull @ pose[:3, :3].T + pose[:3, 3])[:, 2].min()
        for asset, pose in zip(assets, result.poses, strict=True)
    ]
    assert min(lowest) < 0.005  # something lies on the table top (z = 0) ...
    assert min(lowest) > -0.005  # ... and nothing sank into it


def test_camera_path_is_smooth_and_looks_at_the_pile():
    rng = np.random.default_rng(0)
    conf = CameraConfig()
    K = np.array([[100.0, 0, 63.5], [0, 100, 63.5], [0, 0, 1]])
    center = np.array([0.05, -0.02, 0.04])
    poses = camera_trajectory(rng, center, 0.1, K, (128, 128), 12, conf)
    eyes = np.array([T[:3, 3] for T in poses])
    directions = (eyes - center) / np.linalg.norm(eyes - center, axis=1, keepdims=True)
    steps = np.degrees(np.arccos(np.clip((directions[1:] * directions[:-1]).sum(1), -1, 1)))
    assert np.all(steps > 0.5) and np.all(steps < 10)
    for T in poses:
        assert camera_problem(T, [(center, 0.1)], conf) is None
        center_cam = np.linalg.inv(T) @ np.append(center, 1)
        u, v, w = K @ center_cam[:3]
        assert 0 < u / w < 128 and 0 < v / w < 128


def test_degenerate_camera_poses_are_rejected():
    conf = CameraConfig()
    pile = [(np.zeros(3), 0.1)]
    good = look_at([0.4, 0.0, 0.4], [0, 0, 0])
    assert camera_problem(good, pile, conf) is None
    assert "below" in camera_problem(look_at([0.4, 0, 0.01], [0, 0, 0]), pile, conf)
    assert "inside" in camera_problem(look_at([0.05, 0, 0.06], [0, 0, 0]), pile, conf)
    assert "look down" in camera_problem(look_at([0.4, 0, 0.4], [0.8, 0, 0.9]), pile, conf)
    broken = good.copy()
    broken[0, 0] = np.nan
    assert "finite" in camera_problem(broken, pile, conf)
    squashed = good @ make_pose(np.diag([1.0, 1.0, 0.1]), np.zeros(3))
    assert "rotation" in camera_problem(squashed, pile, conf)


def test_asset_collision_hull_is_centred_and_bounded(generator):
    asset: Asset = generator.objects[0]
    assert len(asset.collision) <= PhysicsConfig().hull_points
    assert np.linalg.norm(asset.collision, axis=1).max() <= asset.radius + 1e-9
    assert asset.volume > 0


def test_the_cpu_recipe_loads():
    conf = load_config(SceneConfig(), REPO / "training" / "configs" / "generate_cpu.yaml")
    assert conf.i0 and conf.size == (320, 320)
    assert conf.scenes * conf.frames_per_scene >= 10_000


def test_a_scene_that_never_shows_an_object_is_not_written(generator, tmp_path, caplog):
    conf = small_config(min_visible=0.99, max_attempts=2)  # no object fills the whole image
    with (
        SceneGenerator(conf, renderer=generator.renderer) as strict,
        caplog.at_level(logging.INFO),
    ):
        assert strict.generate_scene(0, tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    assert "shows no object" in caplog.text and "all 2 draws were rejected" in caplog.text
