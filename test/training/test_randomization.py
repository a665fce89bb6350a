"""Domain randomisation pieces: photos, planes, shadows, lights, intrinsics, colour jitter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ockd_ros.geometry import invert_pose, look_at, project, transform_points
from ockd_ros.training.randomization import (
    ColorJitter,
    IntrinsicsConfig,
    LightingConfig,
    TextureBank,
    TextureConfig,
    apply_jitter,
    plane_view,
    sample_intrinsics,
    sample_lighting,
    sample_plane_look,
    shadow_mask,
)

SIZE = (96, 80)


@pytest.fixture(scope="module")
def bank():
    return TextureBank.from_system(TextureConfig(max_size=128))


def test_texture_bank_holds_real_photos(bank):
    assert len(bank.images) >= 10  # scikit-image ships about twenty
    for image in bank.images:
        assert image.dtype == np.uint8 and image.ndim == 3 and max(image.shape[:2]) <= 128
        assert len(np.unique(image)) >= 64  # photos, not text or binary masks


def test_plane_texture_stays_on_the_plane_when_the_camera_moves(bank):
    rng = np.random.default_rng(0)
    look = sample_plane_look(rng, bank, (0.3, 0.6))
    K = sample_intrinsics(rng, SIZE, IntrinsicsConfig())
    cameras = [look_at([0.5 * math.cos(a), 0.5 * math.sin(a), 0.6], [0, 0, 0]) for a in (0, 0.05)]
    views = [plane_view(bank, look, K, T, SIZE, height=-0.1) for T in cameras]
    points = np.column_stack([rng.uniform(-0.05, 0.05, (50, 2)), np.full(50, -0.1)])
    samples = []
    for T, view in zip(cameras, views, strict=True):
        uv = np.round(project(K, transform_points(invert_pose(T), points))).astype(int)
        samples.append(view[uv[:, 1], uv[:, 0]].astype(float))
    # Same plane points, same photo pixels, up to the one-pixel rounding of the projection.
    assert np.median(np.abs(samples[0] - samples[1])) < 12


def test_shadow_of_a_box_lit_from_above_is_its_footprint():
    K = np.array([[60.0, 0, 47.5], [0, 60, 39.5], [0, 0, 1]])
    T_world_cam = look_at([0.0, 0.0, 1.0], [0, 0, 0], up=(0, 1, 0))
    corners = np.array([[x, y, z] for x in (-0.1, 0.1) for y in (-0.1, 0.1) for z in (0.0, 0.1)])
    mask = shadow_mask([corners], np.array([0.0, 0.0, -1.0]), K, T_world_cam, SIZE, 0)
    footprint = project(K, transform_points(invert_pose(T_world_cam), corners[::2]))
    (u0, v0), (u1, v1) = footprint.min(0), footprint.max(0)
    inside = mask[int(v0) + 1 : int(v1), int(u0) + 1 : int(u1)]
    assert inside.min() > 0.99
    outside = np.ones_like(mask, bool)
    outside[int(v0) - 1 : int(v1) + 2, int(u0) - 1 : int(u1) + 2] = False  # ≤ 1 px of rasterising
    assert not mask[outside].any()
    # A slanted light moves the shadow away from the light; light from below casts none.
    slanted = shadow_mask([corners], np.array([1.0, 0.0, -1.0]), K, T_world_cam, SIZE, 0)
    moved = np.nonzero(slanted.sum(0))[0].mean() - np.nonzero(mask.sum(0))[0].mean()
    assert moved > 1
    below = shadow_mask([corners], np.array([0.0, 0.0, 1.0]), K, T_world_cam, SIZE, 0)
    assert not below.any()


def test_lights_come_from_above_and_follow_the_camera():
    conf = LightingConfig()
    lighting = sample_lighting(np.random.default_rng(1), conf)
    assert conf.count[0] <= len(lighting.lights) <= conf.count[1]
    for light in lighting.lights:
        assert light.direction[2] < 0  # travelling downwards
        assert all(isinstance(c, float) and 0 < c <= 1 for c in light.color)
    T_world_cam = look_at([0.3, 0.2, 0.5], [0, 0, 0])
    in_camera = lighting.in_camera(T_world_cam)
    for world, cam in zip(lighting.lights, in_camera.lights, strict=True):
        assert np.allclose(T_world_cam[:3, :3] @ cam.direction, world.direction)


def test_intrinsics_stay_in_the_configured_range():
    conf = IntrinsicsConfig()
    for seed in range(20):
        K = sample_intrinsics(np.random.default_rng(seed), SIZE, conf)
        hfov = 2 * math.degrees(math.atan(SIZE[0] / 2 / K[0, 0]))
        assert conf.hfov_deg[0] - 1e-9 <= hfov <= conf.hfov_deg[1] + 1e-9
        assert abs(K[1, 1] / K[0, 0] - 1) <= conf.aspect_jitter + 1e-9
        assert abs(K[0, 2] - (SIZE[0] - 1) / 2) <= conf.center_jitter * SIZE[0] + 1e-9


def test_colour_jitter_changes_only_the_jittered_instances():
    rng = np.random.default_rng(0)
    rgb = rng.integers(30, 200, (*SIZE[::-1], 3), dtype=np.uint8)
    labels = np.zeros(SIZE[::-1], np.int32)
    labels[10:40, 10:40] = 3
    labels[50:70, 50:90] = 4
    out = apply_jitter(rgb, labels, {3: ColorJitter((1.2, 1.1, 0.9), 0.5)})
    assert np.array_equal(out[labels != 3], rgb[labels != 3])
    assert np.abs(out[labels == 3].astype(int) - rgb[labels == 3]).mean() > 5
