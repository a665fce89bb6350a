import logging

import cv2
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from ockd_ros.features import create_extractor
from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.geometry import backproject, project, transform_points
from ockd_ros.meshes import load_object, resolve_object
from ockd_ros.model.network import NetworkConfig, OCKDNet
from ockd_ros.pose.templates import (
    TemplateConfig,
    backend_fingerprint,
    bank_key,
    build_bank,
    key_digest,
    load_or_build_bank,
    render_templates,
    sample_viewpoints,
    scaled_camera,
    spread_picks,
    template_poses,
)
from ockd_ros.samples import default_camera
from test.mesh_files import write_texture, write_textured_ply

SMALL = TemplateConfig(views=6, size=160)


@pytest.fixture(scope="module")
def sift():
    return create_extractor("sift")


@pytest.fixture(scope="module")
def macaroni():
    return load_object("macaroni_and_cheese")


@pytest.mark.parametrize("hemisphere", [False, True])
def test_viewpoints_are_unit_and_evenly_spread(hemisphere):
    views = sample_viewpoints(96, hemisphere)
    np.testing.assert_allclose(np.linalg.norm(views, axis=1), 1.0, atol=1e-12)
    if hemisphere:
        assert views[:, 2].min() >= 0
    cosines = views @ views.T - 2 * np.eye(96)
    nearest = np.degrees(np.arccos(np.clip(cosines.max(1), -1, 1)))
    # Even spread: every point has a neighbour near the lattice spacing, none much closer.
    area = (2 if hemisphere else 4) * np.pi
    spacing = np.degrees(np.sqrt(area / 96))
    assert 0.6 * spacing < nearest.min() and nearest.max() < 1.4 * spacing
    assert abs(views.mean(0)[:2]).max() < 0.05  # no side favoured


def test_templates_centre_the_object_and_fit_it_in_view(macaroni):
    conf = TemplateConfig(views=12, inplane=3, size=200, fill=0.8)
    K = default_camera((200, 200))
    poses = template_poses(macaroni, conf, K)
    assert poses.shape == (36, 4, 4)
    centre = macaroni.mesh.bounds.mean(0)
    for T in poses:
        np.testing.assert_allclose(project(K, transform_points(T, centre[None]))[0], K[:2, 2])
        uv = project(K, transform_points(T, macaroni.mesh.vertices[::10]))
        assert uv.min() >= 0 and uv.max() <= 199
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    # In-plane rotations of one viewpoint share the camera centre and differ by 120° about z.
    centres = [np.linalg.inv(T)[:3, 3] for T in poses[:3]]
    np.testing.assert_allclose(centres[0], centres[1], atol=1e-9)
    relative = poses[1][:3, :3] @ poses[0][:3, :3].T
    assert np.degrees(np.arccos((np.trace(relative) - 1) / 2)) == pytest.approx(120.0)
    assert relative[2, 2] == pytest.approx(1.0)


# Upright views, and two views turned in-plane (120° apart: rendered once, turned twice).
@pytest.mark.parametrize("conf", [SMALL, TemplateConfig(views=2, inplane=3, size=160)])
def test_bank_points_lie_on_the_mesh_and_reproject_onto_keypoints(renderer, sift, macaroni, conf):
    bank = build_bank(macaroni, sift, renderer, conf)
    assert bank.num_templates == 6 and len(bank.template_ids) > 50
    assert set(bank.template_ids.tolist()) == set(range(6))
    assert np.all(np.diff(bank.template_ids) >= 0)
    assert bank.inter_mean is None  # SIFT has no inter-object descriptor
    for t in range(bank.num_templates):
        rows = bank.template_ids == t
        assert rows.sum() <= conf.max_keypoints
        uv = project(bank.K, transform_points(bank.poses[t], bank.points[rows]))
        np.testing.assert_allclose(uv, bank.keypoints[rows], atol=1e-3)
    # Depth-lifted points sit on the surface: near a dense (≈1.5 mm spacing) surface sampling.
    surface = cKDTree(macaroni.sample_points(30000))
    assert np.percentile(surface.query(bank.points)[0], 95) < 0.003


def test_spread_picks_start_from_the_strongest_and_go_farthest_first():
    # Template 0: five rows clustered at the origin (strongest first), then two far apart;
    # template 1: two rows only; template 2: its far row lies beyond its pool of 2.
    keypoints = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 2], [100, 0], [0, 50],
                          [5, 5], [6, 6],
                          [0, 0], [1, 1], [200, 200]], np.float32)  # fmt: skip
    template_ids = np.repeat([0, 1, 2], [7, 2, 3])
    within = np.concatenate([np.arange(7), np.arange(2), np.arange(3)])
    picked = spread_picks(keypoints, template_ids, within, 3, np.array([7, 2, 2]))
    assert picked[:7].tolist() == [0, -1, -1, -1, -1, 1, 2]  # the far rows right after the first
    assert picked[7:9].tolist() == [0, 1]  # fewer rows than picks: all of them
    assert picked[9:].tolist() == [0, 1, -1]


def test_spread_banks_reorder_whole_rows_within_each_template(renderer, sift, macaroni):
    bank = build_bank(macaroni, sift, renderer, SMALL)
    spread = bank.spread(4, 0.5)
    np.testing.assert_array_equal(spread.template_ids, bank.template_ids)
    for t in range(bank.num_templates):
        rows, moved = (
            np.flatnonzero(bank.template_ids == t),
            np.flatnonzero(spread.template_ids == t),
        )
        # The same rows, whole: each keypoint keeps its descriptor, point and colour.
        assert _row_set(bank, rows) == _row_set(spread, moved)
        if len(rows) >= 8:  # the first four lie farther apart than the four strongest
            np.testing.assert_array_equal(spread.keypoints[moved[0]], bank.keypoints[rows[0]])
            spread_gap = _closest_pair(spread.keypoints[moved[:4]])
            assert spread_gap >= _closest_pair(bank.keypoints[rows[:4]])
            assert np.all(np.isin(moved[:4], rows[: len(rows) // 2]))  # from the strongest half
    assert bank.spread(0, 0.5) is bank


def _row_set(bank, rows: np.ndarray) -> list[bytes]:
    arrays = (bank.keypoints, bank.descriptors, bank.points, bank.colors)
    return sorted(b"".join(a[row].tobytes() for a in arrays) for row in rows)


def _closest_pair(pixels: np.ndarray) -> float:
    distances = np.linalg.norm(pixels[:, None] - pixels[None], axis=2)
    return float(distances[~np.eye(len(pixels), dtype=bool)].min())


def test_smaller_scales_keep_every_view_with_points_on_the_mesh(renderer, sift, macaroni):
    conf = TemplateConfig(views=4, size=192, scales=(1.0, 0.5))
    bank = build_bank(macaroni, sift, renderer, conf)
    assert bank.num_templates == 8
    np.testing.assert_array_equal(bank.scales, [1.0] * 4 + [0.5] * 4)
    np.testing.assert_array_equal(bank.poses[:4], bank.poses[4:])  # same views, scale-major
    assert set(bank.template_ids.tolist()) == set(range(8))
    surface = cKDTree(macaroni.sample_points(30000))
    for t in range(bank.num_templates):
        rows = bank.template_ids == t
        side = round(conf.size * bank.scales[t])
        K = scaled_camera(bank.K, (side, side), bank.size)
        uv = project(K, transform_points(bank.poses[t], bank.points[rows]))
        np.testing.assert_allclose(uv, bank.keypoints[rows], atol=1e-3)
        assert bank.keypoints[rows].max() < side
        # A shrunk template's pixel spans twice the surface: points stay within two of them.
        assert np.percentile(surface.query(bank.points[rows])[0], 95) < 0.006
    # The object spans half the pixels, so the shrunk views keep fewer keypoints.
    assert (bank.template_ids >= 4).sum() < (bank.template_ids < 4).sum()


def test_a_scaled_camera_sees_what_resizing_the_image_shows():
    K = default_camera((160, 120))
    points = np.array([[0.05, -0.02, 0.6], [-0.1, 0.07, 0.9], [0.0, 0.0, 1.0]])
    for size in ((80, 60), (57, 43), (320, 240)):
        sx, sy = size[0] / 160, size[1] / 120
        resized = (project(K, points) + 0.5) * [sx, sy] - 0.5  # cv2.resize's pixel-centre map
        np.testing.assert_allclose(project(scaled_camera(K, size, (160, 120)), points), resized)


@pytest.mark.parametrize("inplane", [4, 8])
def test_turned_templates_agree_with_rendering_each_turn(renderer, ketchup, inplane):
    """A viewpoint is rendered once and its image turned for the in-plane turns: silhouettes and
    depths, so the 3D points a bank lifts, agree with rendering every turn within a pixel's
    worth (here exactly for quarter turns, whose pixels map onto pixels)."""
    conf = TemplateConfig(views=2, inplane=inplane, size=160)
    K = default_camera((conf.size, conf.size))
    poses = template_poses(ketchup, conf, K)
    turned = list(render_templates(ketchup, renderer, poses, K, conf))
    assert len(turned) == len(poses)
    for index, (pose, view) in enumerate(zip(poses, turned, strict=True)):
        direct = renderer.render([ketchup], [pose], K, (conf.size, conf.size))
        mask, direct_mask = view.labels == 1, direct.labels == 1
        assert (mask & direct_mask).sum() / (mask | direct_mask).sum() > 0.97
        # Inside both silhouettes (depth at the very edge mixes object and background).
        inside = cv2.erode((mask & direct_mask).astype(np.uint8), np.ones((5, 5), np.uint8))
        rows, columns = np.nonzero(inside)
        pixels = np.stack([columns, rows], axis=1).astype(np.float64)
        to_object = np.linalg.inv(pose)
        points = transform_points(to_object, backproject(K, pixels, view.depth[rows, columns]))
        truth = transform_points(to_object, backproject(K, pixels, direct.depth[rows, columns]))
        footprint = direct.depth[rows, columns] / K[0, 0]  # metres one pixel spans there
        error = np.linalg.norm(points - truth, axis=1) / footprint
        assert np.median(error) < 0.5 and np.percentile(error, 95) < 1.5, index
        if (index % inplane) * 360 // inplane % 90 == 0:  # upright and quarter turns
            assert np.median(error) == 0.0


def _textured_box(path, extents):
    """A box in millimetres with random vertex colours: texture SIFT can find."""
    box = trimesh.creation.box(extents=extents).subdivide().subdivide().subdivide()
    colors = np.random.default_rng(1).integers(0, 255, (len(box.vertices), 4))
    colors[:, 3] = 255
    box.visual.vertex_colors = colors
    box.export(path)
    return load_object(resolve_object(str(path), units="mm"))


def test_cache_reuses_rebuilds_on_change_and_survives_corruption(renderer, sift, tmp_path, caplog):
    mesh_path = tmp_path / "box.ply"
    cache = tmp_path / "cache"
    conf = TemplateConfig(views=3, size=96)
    obj = _textured_box(mesh_path, (60.0, 40.0, 30.0))

    def load(obj, conf=conf):
        return load_or_build_bank(obj, sift, conf, cache, lambda: renderer)

    first, built = load(obj)
    assert built and len(list(cache.rglob("*.npz"))) == 1
    again, built = load(obj)
    assert not built and again.key == first.key
    np.testing.assert_array_equal(again.points, first.points)
    np.testing.assert_array_equal(again.descriptors, first.descriptors)

    changed = _textured_box(mesh_path, (60.0, 40.0, 50.0))  # same file name, new geometry
    rebuilt, built = load(changed)
    assert built and rebuilt.key != first.key
    _, built = load(changed, TemplateConfig(views=4, size=96))
    assert built  # other settings, other bank

    path = next(p for p in cache.rglob("*.npz") if rebuilt.key[:16] in p.name)
    path.write_bytes(b"not an npz file")
    with caplog.at_level(logging.WARNING):
        repaired, built = load(changed)
    assert built and "rebuilding" in caplog.text
    np.testing.assert_array_equal(repaired.points, rebuilt.points)
    assert not load(changed)[1]  # the repaired file is used next time


def test_a_changed_ply_texture_builds_a_new_bank(renderer, sift, tmp_path):
    """BOP models name their texture in the PLY header; the cache must see it change."""
    cache = tmp_path / "cache"
    conf = TemplateConfig(views=3, size=96)
    spec = resolve_object(str(write_textured_ply(tmp_path / "box.ply", "box.png")), units="mm")
    write_texture(tmp_path / "box.png", seed=0, size=64)
    first, built = load_or_build_bank(load_object(spec), sift, conf, cache, lambda: renderer)
    assert built
    write_texture(tmp_path / "box.png", seed=1, size=64)  # same file names, another look
    second, built = load_or_build_bank(load_object(spec), sift, conf, cache, lambda: renderer)
    assert built and second.key != first.key
    assert len(list(cache.rglob("*.npz"))) == 2
    assert not np.array_equal(first.colors, second.colors)


def test_the_bank_key_follows_the_texture_size_the_mesh_was_loaded_with(sift, tmp_path):
    spec = resolve_object(str(write_textured_ply(tmp_path / "box.ply", "box.png")), units="mm")
    write_texture(tmp_path / "box.png", seed=0, size=64)
    keys = {
        key_digest(bank_key(load_object(spec, size), backend_fingerprint(sift), SMALL))
        for size in (64, 32)
    }
    assert len(keys) == 2


def test_invalid_template_settings():
    for bad in (
        TemplateConfig(views=0),
        TemplateConfig(size=8),
        TemplateConfig(fill=1.5),
        TemplateConfig(up=(0.0, 0.0, 0.0)),
        TemplateConfig(scales=()),
        TemplateConfig(scales=(1.0, 0.05)),
        TemplateConfig(scales=(1.5,)),
    ):
        with pytest.raises(ValueError):
            bad.validate()


def test_backend_fingerprint_follows_the_network_weights():
    torch.manual_seed(0)
    conf = OckdConfig(device="cpu")
    small = NetworkConfig(decoder_channels=(16, 8))
    first = OckdExtractor(conf, model=OCKDNet(small))
    same = backend_fingerprint(first)
    # Another network object with the same weights, named by another checkpoint path and
    # another device setting, computes the same features: it keeps the banks.
    copy = OCKDNet(small)
    copy.load_state_dict(first.model.state_dict())
    moved = OckdConfig(device="auto", checkpoint="elsewhere.pt")
    assert backend_fingerprint(OckdExtractor(moved, model=copy)) == same
    other = OckdExtractor(conf, model=OCKDNet(small))  # new random weights
    assert backend_fingerprint(other)["weights_sha1"] != same["weights_sha1"]
    assert backend_fingerprint(create_extractor("sift"))["weights_sha1"] is None
    stricter = OckdExtractor(OckdConfig(device="cpu", r_thr=2.0), model=first.model)
    assert backend_fingerprint(stricter)["conf"] != same["conf"]
