"""Scene generation speed on this machine: frames per second at 320×320 and 640×480, ± I0 renders.

Settings are the CPU recipe (training/configs/generate_cpu.yaml) except for the image size and
I0. Every row is measured in this run, on the same scenes (same seed): the full generator
(physics, rendering, compositing, I0, PNG writing) against the bare renderer drawing the same
scene once per frame (the floor). A last row runs two shards in parallel processes, one per core,
as the recipe does, and projects the time for 10,000 frames with I0. Other jobs on the machine
skew every number: the load average is printed with the table.

    python bench/generate.py [--meshes hope] [--scenes 3] [--frames 10]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from ockd_ros.config import load_config, merge_config
from ockd_ros.geometry import invert_pose
from ockd_ros.render import Renderer
from ockd_ros.training.scenes import SceneConfig, SceneGenerator, load_meshes, mesh_specs

RECIPE = Path(__file__).resolve().parents[1] / "training" / "configs" / "generate_cpu.yaml"
SIZES = ((320, 320), (640, 480))
TARGET_FRAMES = 10_000
WARMUP_INDEX = 1_000_000  # a scene index the timed runs never use


def bench_config(meshes: str, frames: int, size: tuple[int, int], i0: bool) -> SceneConfig:
    recipe = load_config(SceneConfig(), RECIPE)
    overrides = {"meshes": meshes, "frames_per_scene": frames, "size": size, "i0": i0, "seed": 0}
    return merge_config(recipe, overrides)


def time_generator(generator: SceneGenerator, scenes: int, out: Path) -> tuple[float, int]:
    """Seconds per frame over `scenes` scenes, and the frames actually written."""
    generator.preload()
    generator.generate_scene(WARMUP_INDEX, out / "warmup")  # first-call costs of every step
    start = time.perf_counter()
    written = [generator.generate_scene(index, out) for index in range(scenes)]
    seconds = time.perf_counter() - start
    frames = sum(generator.conf.frames_per_scene for path in written if path is not None)
    return seconds / max(frames, 1), frames


def time_bare_render(generator: SceneGenerator, scenes: int) -> float:
    """Seconds per frame of one renderer call per frame on the same scenes (no I0, no writing)."""
    conf = generator.conf
    renders, seconds = 0, 0.0
    for index in range(scenes):
        layout = generator.draw_layout(np.random.default_rng([conf.seed, 0x5CE7E, index]))
        meshes = [asset.mesh for asset in layout.assets]
        for T_world_cam in layout.cameras:
            poses = [invert_pose(T_world_cam) @ T for T in layout.poses]
            start = time.perf_counter()
            generator.renderer.render(meshes, poses, layout.K, conf.size)
            seconds += time.perf_counter() - start
            renders += 1
    return seconds / max(renders, 1)


def _shard_worker(conf: SceneConfig, out: str, shard: int, scenes: int, barrier, results) -> None:
    with SceneGenerator(conf) as generator:
        generator.preload()
        generator.generate_scene(WARMUP_INDEX + shard, Path(out) / "warmup")
        barrier.wait()
        start = time.perf_counter()
        frames = 0
        for index in range(shard, 2 * scenes, 2):
            if generator.generate_scene(index, out) is not None:
                frames += conf.frames_per_scene
        results.put((start, time.perf_counter(), frames))


def time_two_shards(conf: SceneConfig, scenes: int, out: Path) -> tuple[float, int]:
    """Wall seconds per frame of two processes, each generating `scenes` scenes."""
    context = mp.get_context("spawn")  # a GL context must not be forked
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_shard_worker, args=(conf, str(out), s, scenes, barrier, results))
        for s in range(2)
    ]
    for worker in workers:
        worker.start()
    spans = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    frames = sum(span[2] for span in spans)
    wall = max(span[1] for span in spans) - min(span[0] for span in spans)
    return wall / max(frames, 1), frames


def main(meshes: str | None, scenes: int, frames: int) -> None:
    meshes = meshes or load_config(SceneConfig(), RECIPE).meshes
    load_before = os.getloadavg()[0]
    template = bench_config(meshes, frames, SIZES[0], True)
    objects = load_meshes(mesh_specs(meshes, template.units), template.max_texture_size)
    rows = []
    with Renderer() as renderer, tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            for i0 in (False, True):
                conf = bench_config(meshes, frames, size, i0)
                out = Path(tmp) / f"{size[0]}x{size[1]}_{i0}"
                with SceneGenerator(conf, objects=objects, renderer=renderer) as generator:
                    per_frame, count = time_generator(generator, scenes, out)
                    floor = time_bare_render(generator, scenes)
                name = f"{size[0]}×{size[1]}"
                rows.append((name, "yes" if i0 else "no", per_frame, floor, count))
        conf = bench_config(meshes, frames, SIZES[0], True)
        parallel, parallel_frames = time_two_shards(conf, scenes, Path(tmp) / "parallel")

    print(f"meshes {meshes!r} ({len(objects)} objects), {scenes} scenes × {frames} frames per row")
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, 2 cores")
    header = ("size", "I0", "frames/s", "s/frame", "× bare render", "frames")
    print("{:<9} {:<4} {:>8} {:>8} {:>13} {:>6}".format(*header))
    for size, i0, per_frame, floor, count in rows:
        print(
            f"{size:<9} {i0:<4} {1 / per_frame:>8.2f} {per_frame:>8.3f} "
            f"{per_frame / floor:>13.1f} {count:>6}"
        )
    print(
        f"{'320×320':<9} {'yes':<4} {1 / parallel:>8.2f} {parallel:>8.3f} {'':>13} "
        f"{parallel_frames:>6}  ← 2 shards in parallel (wall clock)"
    )
    minutes = TARGET_FRAMES * parallel / 60
    verdict = "meets" if minutes <= 60 else "misses"
    print(
        f"projected: {TARGET_FRAMES:,} frames with I0 at 320×320 on 2 shards in {minutes:.0f} min "
        f"({verdict} the 60 min goal)"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"peak RSS of this process {peak_mb:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meshes", help="default: the recipe's mesh set")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    main(args.meshes, args.scenes, args.frames)
