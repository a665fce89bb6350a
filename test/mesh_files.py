"""Small textured meshes written by the tests, in the layouts real models use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image


def write_texture(path: Path, seed: int, size: int = 16) -> Path:
    """A `size`² PNG of random colour blocks: corners for SIFT, different for every seed."""
    blocks = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((size // 4, size // 4, 1), np.uint8))
    Image.fromarray(pixels).save(path)
    return path


def write_textured_ply(path: Path, texture_name: str, extents=(60.0, 40.0, 30.0)) -> Path:
    """A box (millimetres) as BOP ships models: an ASCII PLY with per-vertex texture_u/v and
    `comment TextureFile`, the texture spread over the box by x and y."""
    box = trimesh.creation.box(extents=extents)
    uv = (box.vertices[:, :2] - box.bounds[0, :2]) / box.extents[:2]
    header = [
        "ply",
        "format ascii 1.0",
        f"comment TextureFile {texture_name}",
        f"element vertex {len(box.vertices)}",
        *(f"property float {name}" for name in ("x", "y", "z", "texture_u", "texture_v")),
        f"element face {len(box.faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    rows = zip(box.vertices, uv, strict=True)
    vertices = [" ".join(f"{v:.6f}" for v in (*p, *t)) for p, t in rows]
    faces = [f"3 {a} {b} {c}" for a, b, c in box.faces]
    path.write_text("\n".join([*header, *vertices, *faces]) + "\n")
    return path
