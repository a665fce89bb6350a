"""The main demo at this stage: render default objects over a photo, extract keypoints with each
feature backend, write an overlay PNG and print counts and timings.

    python -m ockd_ros.demo --out outputs/demo
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ockd_ros.features import BACKENDS, create_extractor
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene
from ockd_ros.visualize import caption, draw_keypoints, side_by_side, write_rgb


@dataclass(frozen=True)
class DemoConfig:
    objects: tuple[str, ...] = ("cream_cheese", "ketchup", "macaroni_and_cheese")
    size: tuple[int, int] = (640, 480)
    device: str = "auto"
    repeats: int = 3  # timed extractions per backend after one warm-up


def main(conf: DemoConfig, out_dir: Path) -> Path:
    """Run the demo; returns the path of the overlay PNG."""
    out_dir.mkdir(parents=True, exist_ok=True)
    objects = [load_object(name) for name in conf.objects]
    with Renderer() as renderer:
        scene = render_sample_scene(renderer, objects, conf.size)
    on_object = scene.view.labels > 0
    panels, rows = [], []
    for name in BACKENDS:
        extractor = create_extractor(name, {"device": conf.device} if name == "ockd" else None)
        features, seconds = _timed_extract(extractor, scene.rgb, conf.repeats)
        keypoints = np.round(features.keypoints).astype(int)
        on_objects = int(on_object[keypoints[:, 1], keypoints[:, 0]].sum()) if len(features) else 0
        rows.append((name, len(features), on_objects, seconds))
        text = f"{name}: {len(features)} keypoints, {1000 * seconds:.0f} ms"
        panels.append(caption(draw_keypoints(scene.rgb, features), text))
    overlay = out_dir / "keypoints.png"
    write_rgb(overlay, side_by_side(panels))
    _print_table(rows, conf)
    print(f"overlay: {overlay}")
    return overlay


def _timed_extract(extractor, rgb: np.ndarray, repeats: int):
    features = extractor.extract(rgb)  # warm-up: first call pays for allocation and tuning
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        features = extractor.extract(rgb)
        times.append(time.perf_counter() - start)
    return features, float(np.median(times))


def _print_table(rows, conf: DemoConfig) -> None:
    width, height = conf.size
    print(f"objects: {', '.join(conf.objects)} rendered at {width}×{height} over a photo")
    print(f"{'backend':<8} {'keypoints':>9} {'on objects':>10} {'time (ms)':>9}")
    for name, count, on_objects, seconds in rows:
        print(f"{name:<8} {count:>9} {on_objects:>10} {1000 * seconds:>9.1f}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1")
    parser.add_argument("--objects", nargs="+", default=list(DemoConfig.objects))
    args = parser.parse_args(argv)
    main(DemoConfig(objects=tuple(args.objects), device=args.device), args.out)


if __name__ == "__main__":
    cli()
