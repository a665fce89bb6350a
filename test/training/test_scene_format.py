"""The on-disk scene format: round trip, atomic publication, clear errors for corrupt folders."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from ockd_ros.geometry import look_at
from ockd_ros.training.pairs import PairDataset
from ockd_ros.training.scene_format import (
    FORMAT_VERSION,
    SceneFormatError,
    SceneWriter,
    is_complete,
    list_scenes,
    read_frame,
    read_scene,
    scene_name,
)

WIDTH, HEIGHT = 40, 30


def write_scene(root, index=0, frames=2, rng=None):
    """A small scene written through the real writer, from arrays instead of renders."""
    rng = rng or np.random.default_rng(index)
    arrays = []
    frame_meta = []
    with SceneWriter(root, scene_name(index)) as writer:
        for f in range(frames):
            rgb = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            depth = rng.uniform(0.2, 2.0, (HEIGHT, WIDTH)).astype(np.float32)
            depth[:5] = 0
            labels = rng.integers(0, 3, (HEIGHT, WIDTH))
            writer.write_frame(f, rgb, depth, labels)
            crop_rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            crop_mask = rng.uniform(size=(6, 8)) > 0.5
            rel = writer.write_i0(f, 2, crop_rgb, crop_mask)
            arrays.append((rgb, depth, labels, crop_rgb, crop_mask))
            frame_meta.append(
                {
                    "index": f,
                    "K": [[50.0, 0, 19.5], [0, 50, 14.5], [0, 0, 1]],
                    "T_world_cam": look_at([0.3, 0.1 * f, 0.5], [0, 0, 0]).tolist(),
                    "visible": [2],
                    "i0": [{"id": 2, "box": [10, 12, 18, 18], "file": rel}],
                }
            )
        folder = writer.commit(
            {
                "index": index,
                "seed": 0,
                "size": [WIDTH, HEIGHT],
                "i0_background": [0, 0, 0],
                "instances": [
                    {
                        "id": 1,
                        "name": "table",
                        "kind": "table",
                        "mesh": "<generated>",
                        "symmetric": False,
                        "T_world_obj": np.eye(4).tolist(),
                    },
                    {
                        "id": 2,
                        "name": "thing",
                        "kind": "object",
                        "mesh": "thing.ply",
                        "symmetric": False,
                        "T_world_obj": np.eye(4).tolist(),
                    },
                ],
                "frames": frame_meta,
            }
        )
    return folder, arrays


def test_round_trip(tmp_path):
    folder, arrays = write_scene(tmp_path)
    meta = read_scene(folder)
    assert meta.size == (WIDTH, HEIGHT) and len(meta.frames) == 2
    for f, (rgb, depth, labels, crop_rgb, crop_mask) in enumerate(arrays):
        frame = read_frame(folder, meta, f)
        assert np.array_equal(frame.rgb, rgb)
        assert np.array_equal(frame.labels, labels)
        assert np.abs(frame.depth - depth).max() <= meta.depth_unit / 2 + 1e-6
        assert np.array_equal(frame.depth == 0, depth == 0)
        i0_rgb, i0_mask, box = frame.i0[2]
        assert np.array_equal(i0_rgb, crop_rgb) and np.array_equal(i0_mask, crop_mask)
        assert box == (10, 12, 18, 18)
    pose = meta.frames[1].object_pose(meta.instance(2))
    assert np.allclose(pose, np.linalg.inv(meta.frames[1].T_world_cam))


def test_an_interrupted_writer_publishes_nothing(tmp_path):
    with pytest.raises(RuntimeError), SceneWriter(tmp_path, scene_name(3)) as writer:
        writer.write_frame(0, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4)), np.zeros((4, 4)))
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    # A hard crash leaves the hidden temporary folder: it is never listed as a scene.
    (tmp_path / f".{scene_name(3)}.tmp-host-1" / "rgb").mkdir(parents=True)
    assert list_scenes(tmp_path) == []
    assert len(PairDataset(tmp_path)) == 0


def corrupt(folder, how):
    meta_path = folder / "scene.json"
    raw = json.loads(meta_path.read_text())
    if how == "no scene.json":
        meta_path.unlink()
    elif how == "truncated json":
        meta_path.write_text(meta_path.read_text()[:100])
    elif how == "other version":
        raw["format_version"] = FORMAT_VERSION + 1
        meta_path.write_text(json.dumps(raw))
    elif how == "missing key":
        del raw["frames"][1]["K"]
        meta_path.write_text(json.dumps(raw))
    elif how == "non-rigid pose":
        raw["frames"][0]["T_world_cam"][0][0] = 3.0
        meta_path.write_text(json.dumps(raw))
    elif how == "box outside":
        raw["frames"][0]["i0"][0]["box"] = [30, 20, 60, 25]
        meta_path.write_text(json.dumps(raw))
    elif how == "missing rgb":
        (folder / "rgb" / "000001.png").unlink()
    else:
        raise ValueError(how)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no scene.json", "no scene.json"),
        ("truncated json", "not readable JSON"),
        ("other version", "format version"),
        ("missing key", "missing key 'K'"),
        ("non-rigid pose", "not a rigid transform"),
        ("box outside", "outside"),
        ("missing rgb", "missing file rgb/000001.png"),
    ],
)
def test_corrupt_scene_folders_are_rejected_with_a_clear_error(tmp_path, how, message):
    folder, _ = write_scene(tmp_path)
    corrupt(folder, how)
    with pytest.raises(SceneFormatError) as error:
        read_scene(folder)
    assert str(folder) in str(error.value) and message in str(error.value)
    assert not is_complete(folder)
    with pytest.raises(SceneFormatError, match=re.escape(message)):
        PairDataset(tmp_path)


def test_unreadable_or_wrong_images_are_rejected_when_loaded(tmp_path):
    folder, _ = write_scene(tmp_path)
    meta = read_scene(folder)
    (folder / "depth" / "000000.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(SceneFormatError, match=re.escape("depth/000000.png is missing or not")):
        read_frame(folder, meta, 0)
    shutil.copy(folder / "i0" / "000000_002.png", folder / "labels" / "000001.png")
    with pytest.raises(SceneFormatError, match=re.escape("labels/000001.png is")):
        read_frame(folder, meta, 1)


def test_lenient_dataset_skips_corrupt_scenes(tmp_path, caplog):
    good, _ = write_scene(tmp_path, index=0)
    bad, _ = write_scene(tmp_path, index=1)
    corrupt(bad, "truncated json")
    dataset = PairDataset(tmp_path, strict=False)
    assert [folder for folder, _ in dataset.scenes] == [good]
    assert len(dataset) == 1
    assert str(bad) in caplog.text
