from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import backproject, intrinsics, invert_pose, make_pose, transform_points
from ockd_ros.meshes import ObjectMesh
from ockd_ros.render import DirectionalLight, Lighting

K = intrinsics(500.0, 500.0, 159.5, 119.5)
SIZE = (320, 240)


def _pose(euler_deg, t):
    return make_pose(Rotation.from_euler("xyz", euler_deg, degrees=True).as_matrix(), t)


def test_depth_back_projects_onto_the_mesh_surface(renderer, ketchup):
    pose = _pose([20, 30, 10], [0.01, -0.01, 0.45])
    view = renderer.render([ketchup], [pose], K, SIZE)
    ys, xs = np.nonzero(view.mask(0))
    assert len(ys) > 500
    points_cam = backproject(K, np.column_stack([xs, ys]).astype(float), view.depth[ys, xs])
    points_obj = transform_points(invert_pose(pose), points_cam)
    surface, _ = trimesh.sample.sample_surface(ketchup.mesh, 200_000, seed=0)
    distance, _ = cKDTree(surface).query(points_obj)
    assert np.median(distance) < 0.5e-3  # well under a millimetre: K, pose and pixel grid agree


def test_labels_depth_and_background_agree(renderer, ketchup, milk):
    poses = [_pose([0, 0, 0], [-0.06, 0.0, 0.5]), _pose([0, 0, 0], [0.06, 0.0, 0.5])]
    view = renderer.render([ketchup, milk], poses, K, SIZE, background=(10, 20, 30))
    assert view.rgb.shape == (240, 320, 3) and view.rgb.dtype == np.uint8
    assert view.depth.dtype == np.float32 and view.labels.dtype == np.int32
    assert set(np.unique(view.labels)) == {0, 1, 2}
    np.testing.assert_array_equal(view.depth > 0, view.labels > 0)
    assert np.all(view.rgb[view.labels == 0] == (10, 20, 30))
    # ketchup (label 1) sits left of the image centre, milk (label 2) right
    assert np.nonzero(view.mask(0))[1].mean() < 160 < np.nonzero(view.mask(1))[1].mean()


def test_nearer_object_occludes_the_farther_one(renderer, ketchup, milk):
    poses = [_pose([0, 0, 0], [0.0, 0.0, 0.35]), _pose([0, 0, 0], [0.0, 0.0, 0.6])]
    both = renderer.render([ketchup, milk], poses, K, SIZE)
    milk_alone = renderer.render([milk], poses[1:], K, SIZE)
    hidden = milk_alone.mask(0) & both.mask(0)
    assert hidden.sum() > 100
    np.testing.assert_array_less(both.depth[hidden], milk_alone.depth[hidden])


def test_objects_not_in_the_call_are_hidden(renderer, ketchup, milk):
    renderer.render([ketchup, milk], [_pose([0, 0, 0], [0, 0, 0.5])] * 2, K, SIZE)
    view = renderer.render([milk], [_pose([0, 0, 0], [0, 0, 0.5])], K, SIZE)
    assert set(np.unique(view.labels)) == {0, 1}


def test_any_image_size_and_principal_point(renderer, ketchup):
    K_wide = intrinsics(300.0, 300.0, 100.0, 50.0)
    view = renderer.render([ketchup], [_pose([0, 0, 0], [0, 0, 0.5])], K_wide, (200, 100))
    assert view.rgb.shape == (100, 200, 3)
    ys, xs = np.nonzero(view.mask(0))
    # the object origin projects to the principal point
    assert abs(xs.mean() - 100) < 10 and abs(ys.mean() - 50) < 15


def test_lighting_changes_brightness(renderer, ketchup):
    pose = [_pose([0, 0, 0], [0, 0, 0.5])]
    dim = Lighting(ambient=(0.1, 0.1, 0.1), lights=())
    bright = Lighting(ambient=(0.5, 0.5, 0.5), lights=(DirectionalLight(intensity=6.0),))
    dark_view = renderer.render([ketchup], pose, K, SIZE, lighting=dim)
    bright_view = renderer.render([ketchup], pose, K, SIZE, lighting=bright)
    mask = dark_view.mask(0)
    assert bright_view.rgb[mask].mean() > dark_view.rgb[mask].mean() + 20


@pytest.mark.parametrize("srgb", [(109, 44, 31), (20, 200, 90)])  # LM-O's ape; a green
def test_vertex_colours_are_rendered_as_the_srgb_they_are(renderer, srgb):
    """Under white ambient light alone a surface shows its own colour. pyrender decodes sRGB
    textures but not vertex colours (BOP's PLY scans), which came out washed out (the ape's
    brown as (173, 115, 98)) until the renderer decoded them itself."""
    box = trimesh.creation.box((0.1, 0.1, 0.1))
    box.visual = trimesh.visual.ColorVisuals(box, vertex_colors=srgb)
    coloured = ObjectMesh(f"box_{srgb}", box, Path("box.ply"))
    white = Lighting(ambient=(1.0, 1.0, 1.0), lights=())
    view = renderer.render([coloured], [_pose([30, 40, 0], [0, 0, 0.5])], K, SIZE, lighting=white)
    shown = view.rgb[view.mask(0)].astype(int)
    assert len(shown) > 1000
    assert np.abs(shown - srgb).max() <= 8


def test_empty_scene_renders_background(renderer):
    view = renderer.render([], [], K, SIZE, background=(5, 5, 5))
    assert not view.labels.any() and not view.depth.any()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"K": np.zeros((3, 3))}, "focal"),
        ({"size": (0, 240)}, "positive"),
        ({"poses": [np.full((4, 4), np.nan)]}, "finite"),
        ({"poses": []}, "1 objects but 0 poses"),
    ],
)
def test_bad_arguments_are_refused(renderer, ketchup, kwargs, message):
    args = {"objects": [ketchup], "poses": [np.eye(4)], "K": K, "size": SIZE} | kwargs
    with pytest.raises(ValueError, match=message):
        renderer.render(**args)
