"""Physics of a scene: objects dropped with pybullet onto a table until they rest.

Each mesh becomes an `Asset` (convex hull, centre of mass, bounding radius, a collision hull of a
few dozen points); `drop_on_table` stacks the assets above the table without overlap, lets them
fall and settle, and returns where each came to rest, or why it left the scene.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pybullet as pb
import trimesh
from scipy.spatial.transform import Rotation

from ockd_ros.geometry import make_pose
from ockd_ros.meshes import ObjectMesh


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
