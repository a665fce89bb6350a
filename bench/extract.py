"""Feature extraction speed on this machine: each learned backend against OpenCV SIFT, same image.

Prints median times (after warm-up) of SIFT with 5000 features, then per `ockd` checkpoint and
runtime (torch, openvino, onnxruntime; auto: what `ockd` picks here) of the network forward and
the full extraction (and of each other backend's extraction), their ratios to SIFT, and the peak
memory of the process.

    python bench/extract.py [--size 640 480] [--repeats 10] [--device cpu]
        [--checkpoint PT [PT ...]] [--runtimes torch openvino onnxruntime] [--baselines xfeat]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from backend_runs import BackendRun, add_arguments, backend_runs
from timing import median_seconds, peak_rss_mb

from ockd_ros.features import create_extractor
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene


def main(runs: list[BackendRun], size: tuple[int, int], repeats: int, runtimes: list[str]) -> None:
    objects = [load_object(name) for name in ("cream_cheese", "ketchup", "macaroni_and_cheese")]
    with Renderer() as renderer:
        rgb = render_sample_scene(renderer, objects, size).rgb
    sift = create_extractor("sift", {"max_keypoints": 5000})
    memory_before = peak_rss_mb()
    rows = [("sift (5000 features)", median_seconds(lambda: sift.extract(rgb), repeats, 2), sift)]
    for run in runs:
        if run.backend == "sift":
            continue
        for runtime in runtimes if run.backend == "ockd" else [None]:
            features = run.features if runtime is None else {**run.features, "runtime": runtime}
            extractor = create_extractor(run.backend, features)
            label = run.label
            if run.backend == "ockd":
                label = f"{run.label} {runtime}→{extractor.network.name}"
                rows.append((f"{label} forward", network_seconds(extractor, rgb, repeats), None))
            seconds = median_seconds(lambda e=extractor: e.extract(rgb), repeats, warmup=2)
            rows.append((f"{label} extraction", seconds, extractor))
    baseline = rows[0][1]
    print(f"image {size[0]}×{size[1]}, torch threads {torch.get_num_threads()}")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'step':<{width}} {'median ms':>10} {'× sift':>7} {'keypoints':>9}")
    for name, seconds, extractor in rows:
        keypoints = f"{len(extractor.extract(rgb)):>9}" if extractor else ""
        print(f"{name:<{width}} {1000 * seconds:>10.1f} {seconds / baseline:>7.2f} {keypoints}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (after rendering and loading: {memory_before:.0f} MB)")


def network_seconds(ockd, rgb: np.ndarray, repeats: int) -> float:
    """Median seconds of the network's forward pass alone, on the extractor's runtime."""
    return median_seconds(lambda: ockd.network(rgb[None]), repeats, warmup=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--runtimes",
        nargs="+",
        default=["auto"],
        choices=["auto", "torch", "openvino", "onnxruntime"],
        help="ockd runtimes, one row each (default: auto)",
    )
    add_arguments(parser)
    args = parser.parse_args()
    main(backend_runs(args, args.device), tuple(args.size), args.repeats, args.runtimes)
