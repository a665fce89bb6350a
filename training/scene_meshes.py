"""The meshes of a scene generator: a comma list of entries ('hope', names, files, folders)
resolved to object specs, and loaded, skipping with a reason those that cannot be used."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from ockd_ros.geometry import UNIT_SCALE
from ockd_ros.meshes import (
    HOPE_OBJECTS,
    MESH_SUFFIXES,
    MeshLoadError,
    ObjectMesh,
    ObjectSpec,
    default_objects,
    load_object,
    resolve_object,
)

LOG = logging.getLogger(__name__)


def mesh_specs(spec: str, units: str = "mm") -> list[ObjectSpec]:
    """Objects named by a comma list of entries.

    An entry is 'hope' (all default objects), a default object name, a mesh file, or a directory
    whose mesh files (*.obj, *.ply, ...; not HOPE-style '*_col.*' collision meshes) are all used.
    Files and directories are in `units` unless the entry ends in '@mm', '@cm' or '@m'. In a BOP
    models directory, models_info.json marks the symmetric objects.
    """
    specs: list[ObjectSpec] = []
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        entry_units = units
        if entry.rsplit("@", 1)[-1] in UNIT_SCALE and "@" in entry:
            entry, entry_units = entry.rsplit("@", 1)
        path = Path(entry)
        try:
            if entry == "hope":
                specs += default_objects().values()
            elif entry in HOPE_OBJECTS:
                specs.append(default_objects()[entry])
            elif path.is_dir():
                specs += _directory_specs(path, entry_units)
            else:
                specs.append(resolve_object(entry, units=entry_units))
        except (KeyError, MeshLoadError, ValueError) as error:
            LOG.warning("skipping meshes %r: %s", entry, error)
    return specs


def _directory_specs(folder: Path, units: str) -> list[ObjectSpec]:
    symmetric = _bop_symmetric(folder)
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in MESH_SUFFIXES and not p.stem.endswith("_col")
    )
    if not files:
        LOG.warning("no mesh files (%s) in %s", ", ".join(MESH_SUFFIXES), folder)
    # BOP datasets all number their objects obj_000001...: the dataset's folder tells them apart.
    prefix = f"{folder.resolve().parent.name}_" if (folder / "models_info.json").is_file() else ""
    return [ObjectSpec(prefix + p.stem, p, units, p.stem in symmetric) for p in files]


def _bop_symmetric(folder: Path) -> set[str]:
    info = folder / "models_info.json"
    if not info.is_file():
        return set()
    try:
        models = json.loads(info.read_text())
    except (OSError, json.JSONDecodeError) as error:
        LOG.warning("ignoring unreadable %s: %s", info, error)
        return set()
    return {
        f"obj_{int(key):06d}"
        for key, value in models.items()
        if value.get("symmetries_discrete") or value.get("symmetries_continuous")
    }


def load_meshes(specs: Sequence[ObjectSpec], max_texture_size: int) -> list[ObjectMesh]:
    """Load every spec, skipping (with the reason logged) those that cannot be used."""
    meshes, names = [], set()
    for spec in specs:
        if spec.name in names:
            LOG.warning("skipping mesh %s: another object is named %r", spec.path, spec.name)
            continue
        try:
            mesh = load_object(spec, max_texture_size)
            # Dropping needs a convex hull with volume; qhull raises on flat or degenerate meshes.
            flat = mesh.mesh.convex_hull.volume <= 1e-9
        except Exception as error:  # trimesh/qhull raise many types; all mean "unusable mesh"
            LOG.warning("skipping mesh %s: %s", spec.path, error)
            continue
        if flat:
            LOG.warning("skipping mesh %s: it is flat (its convex hull has no volume)", spec.path)
            continue
        meshes.append(mesh)
        names.add(spec.name)
    return meshes
