"""PPDR scene generator: physically plausible, domain-randomised training scenes.

A scene is K objects (and a few distractors) dropped with pybullet onto a table so that they rest
touching and occluding each other, seen by a camera moving slowly over the upper hemisphere. Each
frame stores RGB, depth, instance labels, K, the camera pose, and per visible object a clean
render of that object alone (I0). The on-disk format is in `scene_format.py` / README.md.

Scene `i` depends only on (seed, i) and the mesh set: shards (`--shard i/n` takes the scenes with
index ≡ i mod n) are independent, and a re-run skips the scenes already published.

    ockd-gen --meshes hope,../shared/data/lmo/models@mm --scenes 1000 --frames-per-scene 10 \\
        --out data/ppdr --seed 0 --shard 0/2 --config training/configs/generate_cpu.yaml

This module is the entry point (`SceneGenerator`, `generate`, the `ockd-gen` command); the parts
live beside it, by role:
- `scene_config`: `SceneConfig`, the generator's settings;
- `scene_meshes`: which meshes (`mesh_specs`, `load_meshes`);
- `scene_layout`: drawing a scene (`draw_layout`), with `physics` (the pybullet drop) and
  `camera_path` (the camera trajectory), and the look from `randomization`;
- `scene_render`: rendering, compositing and I0 renders of a drawn scene, written through
  `scene_format`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pybullet as pb

from ockd_ros.command_line import one_line_errors, parse_size
from ockd_ros.config import load_config, merge_config
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import ObjectMesh
from ockd_ros.progress import progress_bar
from ockd_ros.render import RenderConfig, Renderer
from ockd_ros.training.camera_path import CameraConfig, camera_problem, camera_trajectory
from ockd_ros.training.physics import Asset, PhysicsConfig, drop_on_table
from ockd_ros.training.randomization import (
    IntrinsicsConfig,
    TextureBank,
    make_primitives,
    sample_intrinsics,
)
from ockd_ros.training.scene_config import SceneConfig
from ockd_ros.training.scene_format import (
    SceneFormatError,
    is_complete,
    read_scene,
    scene_name,
)
from ockd_ros.training.scene_layout import (
    FLOOR_SIZE,
    GENERATED,
    RejectedSceneError,
    SceneLayout,
    draw_layout,
    plane_asset,
)
from ockd_ros.training.scene_meshes import load_meshes, mesh_specs
from ockd_ros.training.scene_render import SceneRenderer

# The generator's public names, importable from here as before the parts moved out.
__all__ = [
    "Asset",
    "CameraConfig",
    "PhysicsConfig",
    "RejectedSceneError",
    "SceneConfig",
    "SceneGenerator",
    "SceneLayout",
    "camera_problem",
    "camera_trajectory",
    "drop_on_table",
    "generate",
    "load_meshes",
    "main",
    "mesh_specs",
    "parse_shard",
    "parse_size",
    "shard_indices",
]

LOG = logging.getLogger(__name__)


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
        conf.validate()
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
            size: plane_asset(f"table_{size:g}m", "table", size)
            for size in conf.physics.table_sizes
        }
        self.floor = plane_asset("floor", "floor", FLOOR_SIZE)
        self.renderer = renderer or Renderer(RenderConfig())
        self._own_renderer = renderer is None
        self._scene_renderer = SceneRenderer(conf, self.renderer, self.textures)
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
                return self._scene_renderer.render_and_write(index, layout, Path(out_dir))
            except RejectedSceneError as error:
                LOG.info("scene %d, draw %d rejected: %s", index, attempt + 1, error)
        LOG.warning("scene %d skipped: all %d draws were rejected", index, self.conf.max_attempts)
        return None

    def draw_layout(self, rng: np.random.Generator) -> SceneLayout:
        """Pick and drop the assets, then sample the camera path and the look of the scene."""
        return draw_layout(
            rng,
            self.conf,
            self.client,
            self.textures,
            objects=self.objects,
            distractors=self.distractors,
            tables=self.tables,
            floor=self.floor,
        )


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
        frames = len(todo) * conf.frames_per_scene
        with progress_bar(total=frames, desc="frames", unit="frame", enabled=progress) as bar:
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
