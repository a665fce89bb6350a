"""Pair loader on real generated scenes: T12, occlusion, labels, I0 renders, dataset, preview."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from ockd_ros.config import merge_config
from ockd_ros.geometry import backproject, invert_pose, project, transform_points
from ockd_ros.meshes import load_object
from ockd_ros.training.pairs import (
    PairConfig,
    PairDataset,
    collate_pairs,
    correspondence,
    load_pair,
)
from ockd_ros.training.preview import contact_sheet
from ockd_ros.training.preview import main as preview_main
from ockd_ros.training.scene_format import list_scenes, read_frame, read_scene
from ockd_ros.training.scenes import SceneConfig, generate

SIZE = 128
OBJECTS = ("ketchup", "butter", "cream_cheese")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    conf = merge_config(
        SceneConfig(),
        {
            "meshes": ",".join(OBJECTS),
            "size": [SIZE, SIZE],
            "scenes": 2,
            "frames_per_scene": 3,
            "objects_per_scene": 3,
            "distractors": [1, 1],
            "primitive_pool": 2,
            "max_texture_size": 256,
            "textures": {"max_size": 256},
            # Bigger steps than the default so that the pair shows some occlusion change.
            "camera": {"step_deg": [6.0, 8.0]},
        },
    )
    out = tmp_path_factory.mktemp("ppdr")
    generate(conf, out, progress=False)
    assert len(list_scenes(out)) == 2
    return out


@pytest.fixture(scope="module")
def scene(root):
    return list_scenes(root)[0]


def test_t12_matches_projecting_the_3d_point_through_the_stored_poses(scene):
    pair = load_pair(scene, 0, 1)
    ys, xs = np.nonzero(pair.valid)
    assert len(ys) > 0.3 * SIZE * SIZE
    pick = np.random.default_rng(0).choice(len(ys), 300, replace=False)
    uv1 = np.stack([xs[pick], ys[pick]], axis=1).astype(float)
    points_cam1 = backproject(pair.K1, uv1, pair.depth1[ys[pick], xs[pick]])
    T_cam2_cam1 = invert_pose(pair.T_world_cam2) @ pair.T_world_cam1
    expected = project(pair.K2, transform_points(T_cam2_cam1, points_cam1))
    assert np.abs(pair.T12[ys[pick], xs[pick]] - expected).max() < 1e-3


def test_depth_and_object_poses_agree_with_the_meshes(scene):
    """Pixels of an object, lifted with the stored depth, lie on that object's mesh surface."""
    meta = read_scene(scene)
    frame = read_frame(scene, meta, 1)
    # Dense surface samples stand in for the surface (trimesh's exact query needs rtree).
    surfaces = {
        name: cKDTree(trimesh.sample.sample_surface(load_object(name, 64).mesh, 200_000, seed=0)[0])
        for name in OBJECTS
    }
    checked = 0
    for instance_id in frame.info.visible:
        instance = meta.instance(instance_id)
        # Keep away from silhouettes, where a pixel centre may miss the surface it is labelled by.
        inner = cv2.erode((frame.labels == instance_id).astype(np.uint8), np.ones((3, 3)))
        ys, xs = np.nonzero(inner)
        if len(ys) == 0:
            continue
        pick = np.random.default_rng(1).choice(len(ys), min(100, len(ys)), replace=False)
        uv = np.stack([xs[pick], ys[pick]], axis=1).astype(float)
        points_cam = backproject(frame.info.K, uv, frame.depth[ys[pick], xs[pick]])
        T_obj_cam = invert_pose(frame.info.object_pose(instance))
        points_obj = transform_points(T_obj_cam, points_cam)
        distance, _ = surfaces[instance.name].query(points_obj)
        assert np.median(distance) < 0.001 and np.percentile(distance, 95) < 0.0025
        checked += 1
    assert checked > 0


def test_occluded_pixels_are_marked_invalid(scene):
    pair = load_pair(scene, 0, 1, PairConfig(check_labels=False))
    # Put an occluder in front of everything inside a window of frame 2, 30 % nearer.
    occluded_depth2 = pair.depth2.copy()
    occluded_depth2[40:90, 40:90] *= 0.7
    T12, valid = correspondence(
        pair.depth1, pair.K1, pair.T_world_cam1, occluded_depth2, pair.K2, pair.T_world_cam2
    )
    nearest = np.round(np.nan_to_num(T12, nan=-10)).astype(int)
    lands_in_window = (
        (nearest[..., 0] >= 40) & (nearest[..., 0] < 90) & (nearest[..., 1] >= 40)
    ) & (nearest[..., 1] < 90)
    assert (pair.valid & lands_in_window).sum() > 500
    assert not valid[lands_in_window].any()
    assert np.array_equal(valid[~lands_in_window], pair.valid[~lands_in_window])
    assert np.array_equal(np.isnan(T12), np.isnan(pair.T12))


def test_valid_means_seen_from_both_cameras(scene):
    """Every valid pixel passes the depth test; every rejected pixel with depth fails it."""
    pair = load_pair(scene, 0, 2, PairConfig(gap=2, check_labels=False))
    conf = PairConfig()
    has_depth = pair.depth1 > 0
    ys, xs = np.nonzero(has_depth)
    points = backproject(pair.K1, np.stack([xs, ys], 1).astype(float), pair.depth1[ys, xs])
    points2 = transform_points(invert_pose(pair.T_world_cam2) @ pair.T_world_cam1, points)
    uv2 = np.round(project(pair.K2, points2)).astype(int)
    inside = np.all((uv2 >= 0) & (uv2 < SIZE), axis=1) & (points2[:, 2] > 0)
    seen = np.zeros(len(ys))
    seen[inside] = pair.depth2[uv2[inside, 1], uv2[inside, 0]]
    tolerance = np.maximum(conf.depth_tolerance, conf.relative_tolerance * points2[:, 2])
    expected = inside & (seen > 0) & (np.abs(seen - points2[:, 2]) <= tolerance)
    assert np.array_equal(pair.valid[ys, xs], expected)
    assert not pair.valid[~has_depth].any() and np.isnan(pair.T12[~has_depth]).all()
    assert (~expected).sum() > 0  # the pair does show pixels leaving the view or hidden


def test_labels_agree_across_the_pair(scene):
    unchecked = load_pair(scene, 0, 1, PairConfig(check_labels=False))
    ys, xs = np.nonzero(unchecked.valid)
    target = np.round(unchecked.T12[ys, xs]).astype(int)
    same = unchecked.labels1[ys, xs] == unchecked.labels2[target[:, 1], target[:, 0]]
    assert same.mean() > 0.98  # the depth test alone already keeps instances apart
    checked = load_pair(scene, 0, 1)
    assert checked.valid.sum() >= 0.98 * unchecked.valid.sum()
    ys, xs = np.nonzero(checked.valid)
    target = np.round(checked.T12[ys, xs]).astype(int)
    assert np.array_equal(checked.labels1[ys, xs], checked.labels2[target[:, 1], target[:, 0]])


def test_i0_covers_the_label_region_and_is_hidden_only_by_occluders(root):
    checked = 0
    for scene in list_scenes(root):
        meta = read_scene(scene)
        kinds = {i.id: i.kind for i in meta.instances}
        pair = load_pair(scene, 0, 1, meta=meta)
        assert set(pair.i0_1) == set(meta.frames[0].visible)
        for instance_id, render in pair.i0_1.items():
            region = pair.labels1 == instance_id
            # Where the object is unoccluded in the scene, I0 shows it too ...
            assert not (region & ~render.mask).any()
            # ... and where I0 shows it but the scene does not, something stands in front.
            hidden = render.mask & ~region
            blockers = {
                kinds.get(int(label), "nothing") for label in np.unique(pair.labels1[hidden])
            }
            assert blockers <= {"object", "distractor"}
            assert np.all(pair.depth1[hidden] > 0)
            assert np.all(render.rgb[~render.mask] == meta.i0_background)
            checked += 1
    assert checked >= 2


def test_dataset_yields_adjacent_pairs_that_collate(root):
    dataset = PairDataset(root)
    assert len(dataset) == 2 * (3 - 1)
    assert [(p[1], p[2]) for p in dataset.pairs[:2]] == [(0, 1), (1, 2)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_pairs)
    batch = next(iter(loader))
    assert batch["rgb1"].shape == (2, 3, SIZE, SIZE)
    assert batch["T12"].shape == (2, SIZE, SIZE, 2) and batch["valid"].dtype == torch.bool
    assert not torch.isnan(batch["T12"]).any()
    assert len(batch["i0_1"]) == 2 and all(isinstance(r, dict) for r in batch["i0_1"])


def test_preview_writes_a_contact_sheet(scene, tmp_path):
    sheet = contact_sheet(scene, frames=3)
    assert sheet.shape[1] == 4 * SIZE and sheet.shape[0] == 4 * SIZE
    out = tmp_path / "sheet.png"
    assert preview_main([str(scene), "--out", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (*sheet.shape[:2], 3)


def test_max_gap_adds_the_wider_pairs_and_rejects_a_smaller_one(root):
    dataset = PairDataset(root, PairConfig(gap=1, max_gap=2))
    assert sorted((a, b) for s, a, b in dataset.pairs if s == 0) == [(0, 1), (0, 2), (1, 2)]
    with pytest.raises(ValueError, match="gap ≤ max_gap"):
        PairDataset(root, PairConfig(gap=2, max_gap=1))
