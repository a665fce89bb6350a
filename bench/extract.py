"""Feature extraction speed on this machine: each learned backend against OpenCV SIFT, same image.

Prints median times (after warm-up) of SIFT with 5000 features, then per `ockd` checkpoint of the
network forward and the full extraction (and of each other backend's extraction), their ratios
to SIFT, and the peak memory of the process.

    python bench/extract.py [--size 640 480] [--repeats 10] [--device cpu]
        [--checkpoint PT [PT ...]] [--baselines xfeat]
"""

from __future__ import annotations

import argparse

import torch
from backend_runs import BackendRun, add_arguments, backend_runs
from timing import median_seconds, peak_rss_mb

from ockd_ros.features import create_extractor
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene


def main(runs: list[BackendRun], size: tuple[int, int], repeats: int) -> None:
    objects = [load_object(name) for name in ("cream_cheese", "ketchup", "macaroni_and_cheese")]
    with Renderer() as renderer:
        rgb = render_sample_scene(renderer, objects, size).rgb
    sift = create_extractor("sift", {"max_keypoints": 5000})
    memory_before = peak_rss_mb()
    rows = [("sift (5000 features)", median_seconds(lambda: sift.extract(rgb), repeats, 2), sift)]
    for run in runs:
        if run.backend == "sift":
            continue
        extractor = create_extractor(run.backend, run.features)
        if run.backend == "ockd":
            rows.append((f"{run.label} forward", network_seconds(extractor, rgb, repeats), None))
        seconds = median_seconds(lambda e=extractor: e.extract(rgb), repeats, warmup=2)
        rows.append((f"{run.label} extraction", seconds, extractor))
    baseline = rows[0][1]
    print(f"image {size[0]}×{size[1]}, torch threads {torch.get_num_threads()}")
    width = max(len(name) for name, _, _ in rows)
    print(f"{'step':<{width}} {'median ms':>10} {'× sift':>7} {'keypoints':>9}")
    for name, seconds, extractor in rows:
        keypoints = f"{len(extractor.extract(rgb)):>9}" if extractor else ""
        print(f"{name:<{width}} {1000 * seconds:>10.1f} {seconds / baseline:>7.2f} {keypoints}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (after rendering and loading: {memory_before:.0f} MB)")


def network_seconds(ockd, rgb, repeats: int) -> float:
    """Median seconds of the network's forward pass alone, on the extractor's device and dtype."""
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
    tensor = tensor.to(ockd.device, ockd.dtype).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            ockd.model(tensor)

    return median_seconds(forward, repeats, warmup=2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    add_arguments(parser)
    args = parser.parse_args()
    main(backend_runs(args, args.device), tuple(args.size), args.repeats)
