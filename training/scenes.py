"""PPDR scene generator: physically plausible, domain-randomised training scenes.

A scene is K objects (and a few distractors) dropped with pybullet onto a table so that they rest
touching and occluding each other, seen by a camera moving slowly over the upper hemisphere. Each
frame stores RGB, depth, instance labels, K, the camera pose, and per visible object a clean
render of that object alone (I0). The on-disk format is in `scene_format.py` / README.md.

Scene `i` depends only on (seed, i) and the mesh set: shards (`--shard i/n` takes the scenes with
index ≡ i mod n) are independent, and a re-run skips the scenes already published.

    ockd-gen --meshes hope,../shared/data/lmo/models@mm --scenes 1000 --frames-per-scene 10 \\
        --out data/ppdr --seed 0 --shard 0/2 --config training/configs/generate_cpu.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pybullet as pb
import trimesh
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from ockd_ros.command_line import one_line_errors, parse_size
from ockd_ros.config import load_config, merge_config
from ockd_ros.geometry import (
    UNIT_SCALE,
    invert_pose,
    look_at,
    make_pose,
    project,
    transform_points,
)
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
from ockd_ros.render import Lighting, RenderConfig, RenderedView, Renderer
from ockd_ros.training.randomization import (
    ColorJitter,
    IntrinsicsConfig,
    JitterConfig,
    LightingConfig,
    PlaneLook,
    SkyLook,
    TextureBank,
    TextureConfig,
    WorldLighting,
    apply_jitter,
    make_primitives,
    plane_view,
    sample_intrinsics,
    sample_jitter,
    sample_lighting,
    sample_plane_look,
    sample_sky_look,
    shadow_mask,
    sky_view,
    uniform,
)
from ockd_ros.training.scene_format import (
    DEFAULT_DEPTH_UNIT,
    SceneFormatError,
    SceneWriter,
    is_complete,
    pose_to_json,
    read_scene,
    scene_name,
)

LOG = logging.getLogger(__name__)
GENERATED = Path("<generated>")
# Render order: the table, then the floor, then objects and distractors; label = index + 1.
TABLE_ID, FLOOR_ID = 1, 2
TABLE_GREY = 160  # albedo of table and floor in the render: headroom so the shading does not clip
FLOOR_SIZE = 16.0  # metres; beyond it the background photo is seen


@dataclass(frozen=True)
class PhysicsConfig:
    table_sizes: tuple[float, ...] = (0.6, 1.0, 3.0)  # square table sides, metres
    table_height: tuple[float, float] = (0.5, 0.9)  # metres from the floor to the table top
    drop_spread: float = 0.6  # drop-area radius, × mean object diameter × sqrt(object count)
    drop_gap: float = 0.01  # vertical clearance between spawned bounding spheres (m)
    max_steps: int = 960  # 4 s at 240 Hz
    rest_speed: float = 0.01  # m/s: below this (and the same at the rim when turning) = at rest
    friction: float = 0.6
    rolling_friction: float = 0.002  # keeps spheres and cylinders from rolling forever
    density: float = 300.0  # kg/m³ over the convex hull
    hull_points: int = 96  # collision hull vertices per object: fewer is faster


@dataclass(frozen=True)
class CameraConfig:
    intrinsics: IntrinsicsConfig = field(default_factory=IntrinsicsConfig)
    elevation_deg: tuple[float, float] = (20.0, 80.0)  # above the table plane
    fill: tuple[float, float] = (0.6, 1.2)  # pile diameter / field of view at the pile
    step_deg: tuple[float, float] = (1.5, 4.0)  # azimuth change between consecutive frames
    wobble_deg: float = 6.0  # amplitude of the slow elevation change along the trajectory
    distance_wobble: float = 0.08  # relative amplitude of the slow distance change
    target_jitter: float = 0.3  # look-at point offset from the pile centre, × pile radius
    roll_deg: float = 15.0  # largest camera roll about the optical axis
    min_height: float = 0.05  # metres the camera stays above the table
    min_clearance: float = 0.03  # metres between the camera and any object's bounding sphere


@dataclass(frozen=True)
class SceneConfig:
    meshes: str = "hope"  # comma list: 'hope', names, mesh files, directories (see mesh_specs)
    units: str = "mm"  # units of mesh files and directories without an '@unit' suffix
    distractor_meshes: str = ""  # same syntax; rendered as distractors, never as objects
    scenes: int = 100
    frames_per_scene: int = 10
    seed: int = 0
    size: tuple[int, int] = (320, 320)  # width, height
    objects_per_scene: int = 6
    distractors: tuple[int, int] = (1, 4)  # inclusive range per scene
    primitive_pool: int = 16  # textured boxes, cylinders, spheres, capsules made at start-up
    min_objects: int = 1  # a scene with fewer objects left on the table is re-drawn
    min_visible: float = 0.001  # an object is visible with ≥ this fraction of the image
    i0: bool = True  # render each visible object alone (I0)
    i0_background: tuple[int, int, int] = (0, 0, 0)
    i0_scene_lighting: bool = False  # False: the template head light, like the template banks
    max_texture_size: int = 1024  # object textures are downscaled to this
    png_compression: int = 1  # 0–9: 1 is fast and still about halves the files
    depth_unit: float = DEFAULT_DEPTH_UNIT
    max_attempts: int = 5  # re-draws of a scene before giving up on it
    camera: CameraConfig = field(default_factory=CameraConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    lighting: LightingConfig = field(default_factory=LightingConfig)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    textures: TextureConfig = field(default_factory=TextureConfig)


class RejectedSceneError(RuntimeError):
    """A drawn scene is unusable (too few objects left, degenerate camera, nothing visible)."""


# ---------------------------------------------------------------------------------------------
# Mesh sets


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


# ---------------------------------------------------------------------------------------------
# Physics


@dataclass(frozen=True, eq=False)
class Asset:
    """A mesh ready to drop and render: convex hull, centre of mass, bounding radius."""

    mesh: ObjectMesh
    kind: str  # 'object' | 'distractor' | 'table' | 'floor'
    hull: np.ndarray = field(repr=False)  # N×3 convex hull vertices, object frame
    com: np.ndarray = field(repr=False)  # centre of mass of the hull, object frame
    radius: float  # bounding sphere about `com`
    collision: np.ndarray = field(repr=False)  # M×3 hull points about `com`, for pybullet
    volume: float  # of the collision hull, m³

    @classmethod
    def of(cls, mesh: ObjectMesh, kind: str, hull_points: int) -> Asset:
        hull = mesh.mesh.convex_hull
        com = np.asarray(hull.center_mass)
        vertices = np.asarray(hull.vertices)
        radius = float(np.linalg.norm(vertices - com, axis=1).max())
        collision = _farthest_points(vertices, hull_points) - com
        volume = float(trimesh.convex.convex_hull(collision).volume)
        return cls(mesh, kind, vertices, com, radius, collision, volume)


def _farthest_points(points: np.ndarray, count: int) -> np.ndarray:
    """A spread-out subset of `points`: pybullet's hull cost grows with the vertex count."""
    if len(points) <= count:
        return points
    chosen = [0]
    distance = np.linalg.norm(points - points[0], axis=1)
    for _ in range(count - 1):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return points[chosen]


@dataclass
class DropResult:
    poses: list[np.ndarray | None]  # T_world_obj per asset; None when it left the table
    reasons: list[str | None]  # why an asset was dropped from the scene
    steps: int


def drop_on_table(
    client: int,
    assets: Sequence[Asset],
    table_size: float,
    rng: np.random.Generator,
    conf: PhysicsConfig,
) -> DropResult:
    """Drop `assets` from random poses onto a square table (top at z = 0) until they rest.

    Spawn points are stacked so bounding spheres never overlap, over a disc a little wider than
    the pile, so objects land on each other. Assets that end off the table are reported as None.
    """
    pb.resetSimulation(physicsClientId=client)
    pb.setGravity(0, 0, -9.81, physicsClientId=client)
    half = table_size / 2
    table_shape = pb.createCollisionShape(
        pb.GEOM_BOX, halfExtents=[half, half, 0.025], physicsClientId=client
    )
    table = pb.createMultiBody(0, table_shape, basePosition=[0, 0, -0.025], physicsClientId=client)
    pb.changeDynamics(table, -1, lateralFriction=conf.friction, physicsClientId=client)

    spawn = _spawn_points(assets, rng, conf)
    bodies = []
    for asset, position in zip(assets, spawn, strict=True):
        shape = pb.createCollisionShape(
            pb.GEOM_MESH, vertices=asset.collision.tolist(), physicsClientId=client
        )
        body = pb.createMultiBody(
            max(asset.volume * conf.density, 1e-3),
            shape,
            basePosition=position.tolist(),
            baseOrientation=Rotation.random(random_state=rng).as_quat().tolist(),
            physicsClientId=client,
        )
        pb.changeDynamics(
            body,
            -1,
            lateralFriction=conf.friction,
            rollingFriction=conf.rolling_friction,
            spinningFriction=conf.rolling_friction,
            restitution=0.1,
            angularDamping=0.1,
            physicsClientId=client,
        )
        bodies.append(body)

    steps = 0
    while steps < conf.max_steps:
        for _ in range(24):
            pb.stepSimulation(physicsClientId=client)
        steps += 24
        if _at_rest(client, bodies, assets, conf.rest_speed):
            break

    poses, reasons = [], []
    for asset, body in zip(assets, bodies, strict=True):
        position, quat = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        position = np.asarray(position)
        if np.any(np.abs(position[:2]) > half) or position[2] < 0:
            poses.append(None)
            reasons.append(f"fell off the table (centre at {np.round(position, 3).tolist()} m)")
            continue
        # The body frame sits at the hull's centre of mass; the object frame is offset from it.
        T_world_body = make_pose(Rotation.from_quat(quat).as_matrix(), position)
        poses.append(T_world_body @ make_pose(np.eye(3), -asset.com))
        reasons.append(None)
    return DropResult(poses, reasons, steps)


def _spawn_points(
    assets: Sequence[Asset], rng: np.random.Generator, conf: PhysicsConfig
) -> list[np.ndarray]:
    """Spawn centres: random in a disc, each as low as it can be without touching earlier ones."""
    mean_diameter = 2 * float(np.mean([a.radius for a in assets]))
    disc = conf.drop_spread * mean_diameter * math.sqrt(len(assets))
    placed: list[tuple[np.ndarray, float]] = []
    for asset in assets:
        angle, dist = rng.uniform(0, 2 * math.pi), disc * math.sqrt(rng.uniform())
        xy = np.array([math.cos(angle), math.sin(angle)]) * dist
        z = asset.radius + conf.drop_gap
        for other, radius in placed:
            reach = asset.radius + radius + conf.drop_gap
            gap = np.linalg.norm(xy - other[:2])
            if gap < reach:
                z = max(z, other[2] + math.sqrt(reach**2 - gap**2))
        placed.append((np.array([xy[0], xy[1], z]), asset.radius))
    return [point for point, _ in placed]


def _at_rest(client: int, bodies: list[int], assets: Sequence[Asset], speed: float) -> bool:
    for body, asset in zip(bodies, assets, strict=True):
        if pb.getBasePositionAndOrientation(body, physicsClientId=client)[0][2] < -asset.radius:
            continue  # fell off the table: it will never rest, and it leaves the scene anyway
        linear, angular = pb.getBaseVelocity(body, physicsClientId=client)
        if np.linalg.norm(linear) > speed or np.linalg.norm(angular) * asset.radius > speed:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Camera trajectory


def camera_trajectory(
    rng: np.random.Generator,
    center: np.ndarray,
    radius: float,
    K: np.ndarray,
    size: tuple[int, int],
    frames: int,
    conf: CameraConfig,
) -> list[np.ndarray]:
    """T_world_cam of `frames` cameras on a smooth path over the upper hemisphere.

    The camera circles the pile (`center`, bounding `radius`) by a few degrees per frame while
    its elevation, distance, look-at point and roll drift slowly, so adjacent frames show the same
    scene with small motion.
    """
    width, height = size
    half_fov = min(math.atan(width / 2 / K[0, 0]), math.atan(height / 2 / K[1, 1]))
    distance = radius / (uniform(rng, conf.fill) * math.tan(half_fov))
    low, high = (math.radians(v) for v in conf.elevation_deg)
    wobble = math.radians(conf.wobble_deg)
    elevation0 = rng.uniform(low + wobble, max(low + wobble, high - wobble))
    azimuth0 = rng.uniform(0, 2 * math.pi)
    step = math.radians(uniform(rng, conf.step_deg)) * rng.choice([-1.0, 1.0])
    # Slow drifts: one sinusoid each, with a random phase and at most one period per scene.
    phases = rng.uniform(0, 2 * math.pi, 4)
    periods = rng.uniform(1.0, 3.0, 4) * max(frames, 2)
    target_offset = rng.normal(size=3) * np.array([1.0, 1.0, 0.3])
    target_offset *= conf.target_jitter * radius / max(np.linalg.norm(target_offset), 1e-9)
    roll0 = math.radians(rng.uniform(-conf.roll_deg, conf.roll_deg))

    poses = []
    for i in range(frames):
        drift = np.sin(2 * math.pi * i / periods + phases)
        elevation = elevation0 + wobble * drift[0]
        azimuth = azimuth0 + step * i
        d = distance * (1 + conf.distance_wobble * drift[1])
        eye = center + d * np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        target = center + target_offset * (0.7 + 0.3 * drift[2])
        roll = roll0 + math.radians(conf.roll_deg) * 0.3 * drift[3]
        T_world_cam = look_at(eye, target) @ make_pose(
            Rotation.from_euler("z", roll).as_matrix(), np.zeros(3)
        )
        poses.append(T_world_cam)
    return poses


def camera_problem(
    T_world_cam: np.ndarray,
    spheres: Sequence[tuple[np.ndarray, float]],
    conf: CameraConfig,
) -> str | None:
    """Why a camera pose is unusable (below the table, inside an object, ...), or None."""
    if T_world_cam.shape != (4, 4) or not np.all(np.isfinite(T_world_cam)):
        return "camera pose is not a finite 4×4 matrix"
    R = T_world_cam[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0.5:
        return "camera rotation is not a rotation"
    eye = T_world_cam[:3, 3]
    if eye[2] < conf.min_height:
        return f"camera {eye[2]:.3f} m above the table, below the minimum {conf.min_height} m"
    for center, radius in spheres:
        if np.linalg.norm(eye - center) < radius + conf.min_clearance:
            return "camera inside or touching an object"
    if R[2, 2] > -0.05:
        return "camera does not look down at the table"
    return None


# ---------------------------------------------------------------------------------------------
# Scene generation


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


class SceneGenerator:
    """Draws, simulates, renders and writes scenes; holds the meshes, textures and renderer.

    One per process (it owns a GL context and a pybullet client); `close()` frees both.
    """

    def __init__(
        self,
        conf: SceneConfig,
        objects: Sequence[ObjectMesh] | None = None,
        renderer: Renderer | None = None,
    ):
        _check_config(conf)
        self.conf = conf
        if objects is None:
            objects = load_meshes(mesh_specs(conf.meshes, conf.units), conf.max_texture_size)
        if not objects:
            raise ValueError(f"no usable object meshes in {conf.meshes!r}")
        hull_points = conf.physics.hull_points
        self.objects = [Asset.of(mesh, "object", hull_points) for mesh in objects]
        self.textures = TextureBank.from_system(conf.textures)
        # The pool depends on the seed only, so every shard and every re-run sees the same one.
        pool_rng = np.random.default_rng([conf.seed, 0x7E47])
        primitives = make_primitives(pool_rng, self.textures, conf.primitive_pool)
        distractors = [
            ObjectMesh(f"primitive_{i:02d}", mesh, GENERATED) for i, mesh in enumerate(primitives)
        ]
        if conf.distractor_meshes:
            distractors += load_meshes(
                mesh_specs(conf.distractor_meshes, conf.units), conf.max_texture_size
            )
        self.distractors = [Asset.of(mesh, "distractor", hull_points) for mesh in distractors]
        self.tables = {
            size: _plane_asset(f"table_{size:g}m", "table", size)
            for size in conf.physics.table_sizes
        }
        self.floor = _plane_asset("floor", "floor", FLOOR_SIZE)
        self.renderer = renderer or Renderer(RenderConfig())
        self._own_renderer = renderer is None
        self.client = pb.connect(pb.DIRECT)

    def close(self) -> None:
        if self.client >= 0:
            pb.disconnect(physicsClientId=self.client)
            self.client = -1
        if self._own_renderer:
            self.renderer.close()

    def __enter__(self) -> SceneGenerator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def preload(self) -> None:
        """Upload every mesh to the renderer now, instead of at its first use in a scene."""
        assets = [*self.objects, *self.distractors, *self.tables.values(), self.floor]
        ahead = make_pose(np.eye(3), [0.0, 0.0, 5.0])
        K = sample_intrinsics(np.random.default_rng(0), self.conf.size, IntrinsicsConfig())
        self.renderer.render([a.mesh for a in assets], [ahead] * len(assets), K, self.conf.size)

    def generate_scene(self, index: int, out_dir: str | Path) -> Path | None:
        """Draw scene `index` and publish it under `out_dir`; None when every draw was rejected."""
        rng = np.random.default_rng([self.conf.seed, 0x5CE7E, index])
        for attempt in range(self.conf.max_attempts):
            try:
                layout = self.draw_layout(rng)
                return self._render_and_write(index, layout, Path(out_dir))
            except RejectedSceneError as error:
                LOG.info("scene %d, draw %d rejected: %s", index, attempt + 1, error)
        LOG.warning("scene %d skipped: all %d draws were rejected", index, self.conf.max_attempts)
        return None

    def draw_layout(self, rng: np.random.Generator) -> SceneLayout:
        """Pick and drop the assets, then sample the camera path and the look of the scene."""
        conf = self.conf
        count = min(conf.objects_per_scene, len(self.objects))
        chosen = [self.objects[i] for i in rng.choice(len(self.objects), count, replace=False)]
        low, high = conf.distractors
        n_distractors = min(int(rng.integers(low, high + 1)), len(self.distractors))
        chosen += [
            self.distractors[i]
            for i in rng.choice(len(self.distractors), n_distractors, replace=False)
        ]
        table_size = float(rng.choice(conf.physics.table_sizes))
        result = drop_on_table(self.client, chosen, table_size, rng, conf.physics)
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
            raise RejectedSceneError(
                f"{n_objects} objects left on the table, need {conf.min_objects}"
            )

        spheres = [(transform_points(p, a.com[None])[0], a.radius) for a, p in kept]
        objects = [s for (a, _), s in zip(kept, spheres, strict=True) if a.kind == "object"]
        center = np.mean([c for c, _ in objects], axis=0)
        radius = max(np.linalg.norm(c - center) + r for c, r in objects)
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
        assets = [self.tables[table_size], self.floor] + [a for a, _ in kept]
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
            table_look=sample_plane_look(rng, self.textures, conf.textures.table_span_m),
            floor_look=sample_plane_look(rng, self.textures, conf.textures.floor_span_m),
            sky_look=sample_sky_look(rng, self.textures, conf.textures),
            jitters=jitters,
            notes=notes,
        )

    def _render_and_write(self, index: int, layout: SceneLayout, out_dir: Path) -> Path:
        conf = self.conf
        width, height = conf.size
        min_pixels = max(1, round(conf.min_visible * width * height))
        meshes = [asset.mesh for asset in layout.assets]
        frames_meta = []
        shading = self._plane_shading(layout)
        hulls = [
            transform_points(pose, asset.hull)
            for asset, pose in zip(layout.assets, layout.poses, strict=True)
            if asset.kind in ("object", "distractor")
        ]
        ever_visible: set[int] = set()
        with SceneWriter(out_dir, scene_name(index), conf.depth_unit, conf.png_compression) as w:
            for f, T_world_cam in enumerate(layout.cameras):
                T_cam_world = invert_pose(T_world_cam)
                poses = [T_cam_world @ T for T in layout.poses]
                lighting = layout.lighting.in_camera(T_world_cam)
                view = self.renderer.render(meshes, poses, layout.K, conf.size, lighting)
                counts = np.bincount(view.labels.ravel(), minlength=len(meshes) + 1)
                visible = [
                    i + 1
                    for i, asset in enumerate(layout.assets)
                    if asset.kind == "object" and counts[i + 1] >= min_pixels
                ]
                if not visible:
                    raise RejectedSceneError(f"frame {f} shows no object")
                ever_visible.update(visible)
                rgb = self._composite(view, layout, T_world_cam, shading, hulls)
                w.write_frame(f, rgb, view.depth, view.labels)
                crops = []
                if conf.i0:
                    crops = self._write_i0(w, f, layout, poses, visible, lighting)
                frames_meta.append(
                    {
                        "index": f,
                        "K": layout.K.tolist(),
                        "T_world_cam": pose_to_json(T_world_cam),
                        "visible": visible,
                        "visible_pixels": [int(counts[i]) for i in visible],
                        "i0": crops,
                    }
                )
            for i, asset in enumerate(layout.assets):
                if asset.kind == "object" and i + 1 not in ever_visible:
                    LOG.info("object %s is never visible in scene %d", asset.mesh.name, index)
                    layout.notes.append(f"object {asset.mesh.name} never visible")
            return w.commit(self._scene_meta(index, layout, frames_meta))

    def _composite(
        self,
        view: RenderedView,
        layout: SceneLayout,
        T_world_cam: np.ndarray,
        shading: PlaneShading,
        hulls: list[np.ndarray],
    ) -> np.ndarray:
        """Photos on the background, floor and table (with shadows), colour jitter on the rest."""
        size, K, labels = self.conf.size, layout.K, view.labels
        rgb = apply_jitter(view.rgb, labels, layout.jitters)
        sky = labels == 0
        if sky.any():
            rgb[sky] = sky_view(self.textures, layout.sky_look, K, T_world_cam, size)[sky]
        light = view.rgb.astype(np.float32) * shading.gain
        table = labels == TABLE_ID
        if table.any():
            for direction, share in zip(shading.directions, shading.shares, strict=True):
                soft = 0.004 * size[0]
                mask = shadow_mask(hulls, direction, K, T_world_cam, size, soft)
                light *= (1.0 - share * mask)[..., None]
        for instance_id, look, height in (
            (TABLE_ID, layout.table_look, 0.0),
            (FLOOR_ID, layout.floor_look, -layout.table_height),
        ):
            region = labels == instance_id
            if region.any():
                photo = plane_view(self.textures, look, K, T_world_cam, size, height)
                gain = np.asarray(layout.jitters[instance_id].gain, np.float32)
                lit = photo[region] * light[region] * gain
                rgb[region] = np.clip(lit + 0.5, 0, 255).astype(np.uint8)
        return rgb

    def _plane_shading(self, layout: SceneLayout) -> PlaneShading:
        """How the scene's lights shade a horizontal plane, from renders of the table alone.

        With flat shading and directional lights the table is evenly lit, so one render per
        light (that light off) gives the share of the light a shadow of that light removes.
        """
        T_world_cam = layout.cameras[0]
        pose = [invert_pose(T_world_cam)]
        table = [layout.assets[0].mesh]
        lighting = layout.lighting.in_camera(T_world_cam)

        def brightness(lights: tuple) -> float:
            view = self.renderer.render(
                table, pose, layout.K, self.conf.size, Lighting(lighting.ambient, lights)
            )
            values = view.rgb[view.labels == 1]
            return float(np.median(values.mean(axis=1))) if len(values) else float(TABLE_GREY)

        full = max(brightness(lighting.lights), 1.0)
        shares = []
        for k in range(len(lighting.lights)):
            others = lighting.lights[:k] + lighting.lights[k + 1 :]
            shares.append(float(np.clip(1.0 - brightness(others) / full, 0.0, 0.9)))
        directions = [np.asarray(light.direction) for light in layout.lighting.lights]
        return PlaneShading(0.85 / full, directions, shares)

    def _write_i0(
        self,
        writer: SceneWriter,
        frame: int,
        layout: SceneLayout,
        poses: list[np.ndarray],
        visible: list[int],
        scene_lighting: Lighting,
    ) -> list[dict]:
        """Render each visible object alone (I0) and store the crop of its box.

        Objects whose projected boxes are disjoint cannot touch each other's pixels (no shadows
        in the renderer), so they share one render call. Every call is full-frame: with OSMesa a
        change of image size rebuilds the GL context and re-uploads every texture.
        """
        conf = self.conf
        lighting = scene_lighting if conf.i0_scene_lighting else Lighting()
        boxes = {
            i: _projected_box(layout.assets[i - 1].hull, poses[i - 1], layout.K, conf.size)
            for i in visible
        }
        crops = []
        for group in _disjoint_groups(boxes):
            view = self.renderer.render(
                [layout.assets[i - 1].mesh for i in group],
                [poses[i - 1] for i in group],
                layout.K,
                conf.size,
                lighting,
                conf.i0_background,
            )
            for slot, instance_id in enumerate(group):
                x0, y0, x1, y1 = boxes[instance_id]
                mask = view.labels[y0:y1, x0:x1] == slot + 1
                if not mask.any():
                    continue
                rgb = view.rgb[y0:y1, x0:x1].copy()
                rgb[~mask] = conf.i0_background
                rel = writer.write_i0(frame, instance_id, rgb, mask)
                crops.append({"id": instance_id, "box": list(boxes[instance_id]), "file": rel})
        return sorted(crops, key=lambda crop: crop["id"])

    def _scene_meta(self, index: int, layout: SceneLayout, frames: list[dict]) -> dict:
        textures = self.textures.sources
        instances = [
            {
                "id": i + 1,
                "name": asset.mesh.name,
                "kind": asset.kind,
                "mesh": str(asset.mesh.path),
                "symmetric": asset.mesh.symmetric,
                "T_world_obj": pose_to_json(pose),
            }
            for i, (asset, pose) in enumerate(zip(layout.assets, layout.poses, strict=True))
        ]
        return {
            "index": index,
            "seed": self.conf.seed,
            "size": list(self.conf.size),
            "instances": instances,
            "frames": frames,
            "i0_background": list(self.conf.i0_background),
            "table": {
                "size": layout.table_size,
                "height": layout.table_height,
                "photo": textures[layout.table_look.photo] if textures else None,
                "floor_photo": textures[layout.floor_look.photo] if textures else None,
            },
            "sky": {"photo": textures[layout.sky_look.photo] if textures else None},
            "lighting": dataclasses.asdict(layout.lighting),
            "jitter": {str(k): dataclasses.asdict(v) for k, v in layout.jitters.items()},
            "notes": layout.notes,
            "generator": dataclasses.asdict(self.conf),
        }


@dataclass
class PlaneShading:
    gain: float  # rendered grey → shading factor, about 0.85 on the lit table
    directions: list[np.ndarray]  # world directions of the scene's lights
    shares: list[float]  # fraction of the table's light that each light contributes


def _plane_asset(name: str, kind: str, size: float) -> Asset:
    """A grey square of side `size` in the plane z = 0 (photos are composited onto it)."""
    half = size / 2
    vertices = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]) * half
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)
    mesh.visual = trimesh.visual.ColorVisuals(
        mesh, vertex_colors=np.tile([TABLE_GREY, TABLE_GREY, TABLE_GREY, 255], (4, 1))
    )
    plane = ObjectMesh(name, mesh, GENERATED)
    return Asset(plane, kind, vertices, np.zeros(3), float(np.sqrt(2) * half), vertices, 0.0)


def _disjoint_groups(boxes: dict[int, tuple[int, int, int, int]]) -> list[list[int]]:
    """Greedy partition of box ids into groups whose boxes do not overlap."""
    groups: list[list[int]] = []
    for key, box in boxes.items():
        for group in groups:
            if all(not _overlap(box, boxes[other]) for other in group):
                group.append(key)
                break
        else:
            groups.append([key])
    return groups


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _projected_box(
    hull: np.ndarray, T_cam_obj: np.ndarray, K: np.ndarray, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end exclusive, around the whole object, clipped to the image."""
    width, height = size
    points = transform_points(T_cam_obj, hull)
    if np.any(points[:, 2] <= 1e-3):
        return 0, 0, width, height  # partly behind the camera: the box is unbounded
    uv = project(K, points)
    x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def _check_config(conf: SceneConfig) -> None:
    problems = []
    if conf.scenes < 0 or conf.frames_per_scene < 1:
        problems.append("scenes must be ≥ 0 and frames_per_scene ≥ 1")
    if min(conf.size) < 16:
        problems.append(f"size {conf.size} is too small")
    if conf.objects_per_scene < 1 or conf.min_objects < 1:
        problems.append("objects_per_scene and min_objects must be ≥ 1")
    if not 0 <= conf.distractors[0] <= conf.distractors[1]:
        problems.append(f"distractors range {conf.distractors} is not 0 ≤ low ≤ high")
    if not conf.physics.table_sizes or min(conf.physics.table_sizes) <= 0:
        problems.append("physics.table_sizes must hold positive sizes")
    if problems:
        raise ValueError("invalid SceneConfig: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# Entry points


def shard_indices(scenes: int, shard: tuple[int, int]) -> range:
    """Scene indices of shard (i, n): i, i + n, i + 2n, ..."""
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be i/n with 0 ≤ i < n, got {i}/{n}")
    return range(i, scenes, n)


def generate(
    conf: SceneConfig,
    out_dir: str | Path,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    generator: SceneGenerator | None = None,
) -> Path:
    """Generate this shard's scenes of `conf` into `out_dir`, skipping published ones.

    A folder named like a scene that does not validate (damaged after publication) is replaced.
    Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    indices = shard_indices(conf.scenes, shard)
    todo = []
    for index in indices:
        folder = out_dir / scene_name(index)
        if is_complete(folder):
            continue
        if folder.exists():
            LOG.warning("replacing %s: %s", folder, _why_invalid(folder))
            shutil.rmtree(folder)
        todo.append(index)
    LOG.info(
        "shard %d/%d: %d scenes, %d already done", *shard, len(indices), len(indices) - len(todo)
    )
    if not todo:
        return out_dir
    owned = generator is None
    generator = generator or SceneGenerator(conf)
    failed = 0
    try:
        with tqdm(
            total=len(todo) * conf.frames_per_scene, unit="frame", disable=not progress
        ) as bar:
            for index in todo:
                if generator.generate_scene(index, out_dir) is None:
                    failed += 1
                bar.update(conf.frames_per_scene)
    finally:
        if owned:
            generator.close()
    if failed:
        LOG.warning("%d of %d scenes could not be generated (see the log)", failed, len(todo))
    return out_dir


def _why_invalid(folder: Path) -> str:
    try:
        read_scene(folder)
    except SceneFormatError as error:
        return error.problem
    return "valid"


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"shard must look like 0/4, got {text!r}") from error
    shard_indices(0, (i, n))
    return i, n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ockd-gen", description="Generate PPDR training scenes (see training/README.md)."
    )
    parser.add_argument("--config", type=Path, help="YAML overrides of SceneConfig")
    parser.add_argument("--meshes", help="comma list: hope, object names, mesh files, dirs[@mm]")
    parser.add_argument("--units", help="units of mesh files/dirs without @unit (default mm)")
    parser.add_argument("--distractors", help="extra distractor meshes, same syntax as --meshes")
    parser.add_argument("--scenes", type=int)
    parser.add_argument("--frames-per-scene", type=int)
    parser.add_argument("--objects-per-scene", type=int)
    parser.add_argument("--size", type=parse_size, help="WxH, e.g. 320x320")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-i0", action="store_true", help="skip the I0 renders")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shard", type=parse_shard, default=(0, 1), help="i/n (default 0/1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")

    overrides = {
        "meshes": args.meshes,
        "units": args.units,
        "distractor_meshes": args.distractors,
        "scenes": args.scenes,
        "frames_per_scene": args.frames_per_scene,
        "objects_per_scene": args.objects_per_scene,
        "size": args.size,
        "seed": args.seed,
        "i0": False if args.no_i0 else None,
    }
    with one_line_errors("ockd-gen"):  # bad config or no usable mesh: a message, no traceback
        conf = load_config(SceneConfig(), args.config) if args.config else SceneConfig()
        conf = merge_config(conf, {k: v for k, v in overrides.items() if v is not None})
        generate(conf, args.out, args.shard, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
