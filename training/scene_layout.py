"""Drawing a scene: which assets, dropped where, seen from which cameras, looking how.

`draw_layout` picks objects and distractors, drops them on a table of random size (`physics`),
samples intrinsics and a camera path over the pile (`camera_path`) and the look of the scene
(lights, table, floor and sky photos, colour jitter: `randomization`). Everything comes from the
`rng` passed in, in a fixed order, so a scene depends only on its seed and the assets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ockd_ros.geometry import make_pose, transform_points
from ockd_ros.meshes import ObjectMesh
from ockd_ros.training.camera_path import camera_problem, camera_trajectory
from ockd_ros.training.physics import Asset, drop_on_table
from ockd_ros.training.randomization import (
    ColorJitter,
    PlaneLook,
    SkyLook,
    TextureBank,
    WorldLighting,
    sample_intrinsics,
    sample_jitter,
    sample_lighting,
    sample_plane_look,
    sample_sky_look,
    uniform,
)
from ockd_ros.training.scene_config import SceneConfig

LOG = logging.getLogger(__name__)
GENERATED = Path("<generated>")  # the `path` of meshes made in memory (planes, primitives)
# Render order: the table, then the floor, then objects and distractors; label = index + 1.
TABLE_ID, FLOOR_ID = 1, 2
TABLE_GREY = 160  # albedo of table and floor in the render: headroom so the shading does not clip
FLOOR_SIZE = 16.0  # metres; beyond it the background photo is seen


class RejectedSceneError(RuntimeError):
    """A drawn scene is unusable (too few objects left, degenerate camera, nothing visible)."""


@dataclass
class SceneLayout:
    """A drawn, settled scene: what is where, and how it looks."""

    assets: list[Asset]  # rendered in this order: id = index + 1; the table, the floor, the rest
    poses: list[np.ndarray]  # T_world_obj
    table_size: float
    table_height: float
    K: np.ndarray
    cameras: list[np.ndarray]  # T_world_cam per frame
    lighting: WorldLighting
    table_look: PlaneLook
    floor_look: PlaneLook
    sky_look: SkyLook
    jitters: dict[int, ColorJitter]
    notes: list[str]  # what was removed and why


def draw_layout(
    rng: np.random.Generator,
    conf: SceneConfig,
    client: int,
    textures: TextureBank,
    *,
    objects: Sequence[Asset],
    distractors: Sequence[Asset],
    tables: dict[float, Asset],
    floor: Asset,
) -> SceneLayout:
    """Pick and drop the assets, then sample the camera path and the look of the scene.

    client: the pybullet client to drop in. tables: a table asset per size of
    `conf.physics.table_sizes`. Raises `RejectedSceneError` when the draw is unusable.
    """
    count = min(conf.objects_per_scene, len(objects))
    chosen = [objects[i] for i in rng.choice(len(objects), count, replace=False)]
    low, high = conf.distractors
    n_distractors = min(int(rng.integers(low, high + 1)), len(distractors))
    chosen += [distractors[i] for i in rng.choice(len(distractors), n_distractors, replace=False)]
    table_size = float(rng.choice(conf.physics.table_sizes))
    result = drop_on_table(client, chosen, table_size, rng, conf.physics)
    notes = [
        f"{asset.kind} {asset.mesh.name} {reason}"
        for asset, reason in zip(chosen, result.reasons, strict=True)
        if reason
    ]
    for note in notes:
        LOG.info("removed %s", note)
    kept = [(a, p) for a, p in zip(chosen, result.poses, strict=True) if p is not None]
    n_objects = sum(asset.kind == "object" for asset, _ in kept)
    if n_objects < conf.min_objects:
        raise RejectedSceneError(f"{n_objects} objects left on the table, need {conf.min_objects}")

    spheres = [(transform_points(p, a.com[None])[0], a.radius) for a, p in kept]
    pile = [s for (a, _), s in zip(kept, spheres, strict=True) if a.kind == "object"]
    center = np.mean([c for c, _ in pile], axis=0)
    radius = max(np.linalg.norm(c - center) + r for c, r in pile)
    K = sample_intrinsics(rng, conf.size, conf.camera.intrinsics)
    for _ in range(conf.max_attempts):
        cameras = camera_trajectory(
            rng, center, radius, K, conf.size, conf.frames_per_scene, conf.camera
        )
        problems = [camera_problem(T, spheres, conf.camera) for T in cameras]
        problem = next((p for p in problems if p), None)
        if problem is None:
            break
        LOG.info("camera path rejected: %s", problem)
    else:
        raise RejectedSceneError(f"no usable camera path: {problem}")

    table_height = uniform(rng, conf.physics.table_height)
    assets = [tables[table_size], floor] + [a for a, _ in kept]
    floor_pose = make_pose(np.eye(3), [0.0, 0.0, -table_height])
    jitters = {i + 1: sample_jitter(rng, conf.jitter) for i in range(len(assets))}
    return SceneLayout(
        assets=assets,
        poses=[np.eye(4), floor_pose] + [p for _, p in kept],
        table_size=table_size,
        table_height=table_height,
        K=K,
        cameras=cameras,
        lighting=sample_lighting(rng, conf.lighting),
        table_look=sample_plane_look(rng, textures, conf.textures.table_span_m),
        floor_look=sample_plane_look(rng, textures, conf.textures.floor_span_m),
        sky_look=sample_sky_look(rng, textures, conf.textures),
        jitters=jitters,
        notes=notes,
    )


def plane_asset(name: str, kind: str, size: float) -> Asset:
    """A grey square of side `size` in the plane z = 0 (photos are composited onto it)."""
    half = size / 2
    vertices = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * half
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)
    mesh.visual = trimesh.visual.ColorVisuals(
        mesh, vertex_colors=np.tile([TABLE_GREY, TABLE_GREY, TABLE_GREY, 255], (4, 1))
    )
    plane = ObjectMesh(name, mesh, GENERATED)
    return Asset(plane, kind, vertices, np.zeros(3), float(np.sqrt(2) * half), vertices, 0.0)
