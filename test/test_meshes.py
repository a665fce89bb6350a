import json
import logging

import numpy as np
import pytest
import trimesh

from ockd_ros.meshes import (
    MeshLoadError,
    ObjectSpec,
    default_objects,
    load_mesh,
    load_object,
    named_files,
    resolve_object,
)
from test.mesh_files import write_texture, write_textured_ply

# The README's list of default objects, and the visual mesh each one ships: eight as
# `textured.obj`, four under their own name; beside them lie collision hulls (`*_col.obj`,
# `hope_*_coll.obj`) that must never be picked.
DEFAULT_MESH_FILES = {
    "alphabet_soup": "textured.obj",
    "bbq_sauce": "bbq_sauce.obj",
    "butter": "butter.obj",
    "chocolate_pudding": "textured.obj",
    "cream_cheese": "cream_cheese.obj",
    "ketchup": "textured.obj",
    "macaroni_and_cheese": "textured.obj",
    "milk": "textured.obj",
    "orange_juice": "textured.obj",
    "popcorn": "popcorn.obj",
    "salad_dressing": "textured.obj",
    "tomato_sauce": "textured.obj",
}


def test_registry_holds_the_twelve_default_objects_with_their_visual_meshes():
    registry = default_objects()
    assert sorted(registry) == sorted(DEFAULT_MESH_FILES)
    for name, spec in registry.items():
        assert spec.name == name and spec.units == "cm" and not spec.symmetric
        assert spec.path.parent.name == name
        assert spec.path.name == DEFAULT_MESH_FILES[name]
        assert spec.path.is_file(), spec.path


@pytest.mark.parametrize(("units", "per_metre"), [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_the_same_box_in_any_unit_loads_to_the_same_size_in_metres(tmp_path, units, per_metre):
    path = tmp_path / f"box_{units}.ply"
    trimesh.creation.box(extents=np.array([0.04, 0.02, 0.01]) * per_metre).export(path)
    np.testing.assert_allclose(load_mesh(path, units).extents, [0.04, 0.02, 0.01], rtol=1e-6)


def test_hope_mesh_is_converted_from_centimetres(ketchup):
    raw = trimesh.load(ketchup.path, force="mesh", process=False)
    np.testing.assert_allclose(ketchup.mesh.extents, raw.extents * 0.01, rtol=1e-6)
    assert 0.05 < ketchup.diameter < 0.3  # a ketchup bottle, in metres
    assert ketchup.mesh.visual.kind == "texture"


def test_ply_with_vertex_colours_in_millimetres(tmp_path):
    box = trimesh.creation.box(extents=(40.0, 20.0, 10.0))
    box.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(box.vertices), 1))
    path = tmp_path / "box.ply"
    box.export(path)
    obj = load_object(resolve_object(str(path), units="mm"))
    assert obj.name == "box"
    np.testing.assert_allclose(obj.mesh.extents, [0.04, 0.02, 0.01], rtol=1e-6)
    assert obj.mesh.visual.kind == "vertex"
    assert obj.diameter == pytest.approx(np.linalg.norm([0.04, 0.02, 0.01]))


def test_content_hash_changes_with_the_file(tmp_path):
    path = tmp_path / "box.ply"
    trimesh.creation.box(extents=(1.0, 1.0, 1.0)).export(path)
    first = load_object(resolve_object(str(path))).content_hash
    trimesh.creation.box(extents=(1.0, 2.0, 1.0)).export(path)
    assert load_object(resolve_object(str(path))).content_hash != first


def test_missing_mesh_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.obj"):
        load_mesh(tmp_path / "nothere.obj", "mm")


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_corrupt_mesh_names_the_file(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00\x01 not a mesh at all \xff" * 10)
    with pytest.raises(MeshLoadError, match=f"broken{suffix}"):
        load_mesh(path, "mm")


def test_unknown_object_name_lists_the_defaults():
    with pytest.raises(KeyError, match="ketchup"):
        resolve_object("no_such_object")


def test_units_must_be_explicit_and_known(tmp_path):
    path = tmp_path / "box.ply"
    trimesh.creation.box().export(path)
    with pytest.raises(ValueError, match="unknown length unit"):
        load_mesh(path, "furlong")


def test_a_ply_loads_with_the_texture_it_names_and_its_hash_follows_that_texture(tmp_path):
    mesh = write_textured_ply(tmp_path / "box.ply", "box.png")
    write_texture(tmp_path / "box.png", seed=0)
    spec = resolve_object(str(mesh), units="mm")
    first = load_object(spec)
    assert first.mesh.visual.kind == "texture" and first.texture_size == (16, 16)
    assert first.source_files == ((tmp_path / "box.png").resolve(),)
    first_hash = first.content_hash
    write_texture(tmp_path / "box.png", seed=1)  # same names, another texture
    assert load_object(spec).content_hash != first_hash


def test_a_texture_the_mesh_names_but_that_cannot_be_read_is_an_error_naming_it(tmp_path, caplog):
    mesh = write_textured_ply(tmp_path / "box.ply", "box.png")
    with pytest.raises(MeshLoadError, match=r"box\.png does not exist"):
        load_object(resolve_object(str(mesh), units="mm"))
    (tmp_path / "box.png").write_bytes(b"\x89PNG but no image follows")
    with pytest.raises(MeshLoadError, match=r"box\.png is not a readable image"):
        load_mesh(mesh, "mm")
    # Untextured only when asked for: a warning names the file, the hash differs from textured.
    with caplog.at_level(logging.WARNING):
        untextured = load_object(ObjectSpec("box", mesh, "mm", allow_untextured=True))
    assert "box.png" in caplog.text and untextured.source_files == ()
    write_texture(tmp_path / "box.png", seed=0)
    assert load_object(ObjectSpec("box", mesh, "mm")).content_hash != untextured.content_hash


def test_an_obj_whose_material_names_a_missing_texture_is_an_error_naming_it(tmp_path):
    box = trimesh.creation.box(extents=(40.0, 20.0, 10.0))
    lines = ["mtllib box.mtl", "usemtl skin"]
    lines += [f"v {x} {y} {z}" for x, y, z in box.vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in box.faces]
    (tmp_path / "box.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "box.mtl").write_text("newmtl skin\nKd 0.8 0.8 0.8\nmap_Kd skin.jpg\n")
    with pytest.raises(MeshLoadError, match=r"skin\.jpg does not exist"):
        load_mesh(tmp_path / "box.obj", "mm")
    (tmp_path / "box.mtl").unlink()
    with pytest.raises(MeshLoadError, match=r"box\.mtl does not exist"):
        load_mesh(tmp_path / "box.obj", "mm")


def test_gltf_external_images_and_buffers_are_named_files(tmp_path):
    document = {
        "images": [{"uri": "skin%20map.png"}, {"uri": "data:image/png;base64,AAAA"}],
        "buffers": [{"uri": "box.bin", "byteLength": 4}],
    }
    (tmp_path / "box.gltf").write_text(json.dumps(document))
    assert named_files(tmp_path / "box.gltf") == [
        (tmp_path.resolve() / "skin map.png", "texture"),
        (tmp_path.resolve() / "box.bin", "buffer"),
    ]
    with pytest.raises(MeshLoadError, match=r"skin map\.png does not exist"):
        load_mesh(tmp_path / "box.gltf", "m")
