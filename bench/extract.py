"""Feature extraction speed on this machine: the `ockd` network against OpenCV SIFT, same image.

Prints median times (after warm-up) of the network forward, of the full `ockd` extraction and of
SIFT with 5000 features, their ratios, and the peak memory of the process.

    python bench/extract.py [--size 640 480] [--repeats 10] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch
from timing import median_seconds, peak_rss_mb

from ockd_ros.features import create_extractor
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.samples import render_sample_scene


def main(size: tuple[int, int], repeats: int, device: str) -> None:
    objects = [load_object(name) for name in ("cream_cheese", "ketchup", "macaroni_and_cheese")]
    with Renderer() as renderer:
        rgb = render_sample_scene(renderer, objects, size).rgb
    sift = create_extractor("sift", {"max_keypoints": 5000})
    ockd = create_extractor("ockd", {"device": device})
    tensor = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255)
    tensor = tensor.to(ockd.device, ockd.dtype).contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.inference_mode():
            ockd.model(tensor)

    memory_before = peak_rss_mb()
    rows = [
        ("sift (5000 features)", median_seconds(lambda: sift.extract(rgb), repeats, warmup=2)),
        ("ockd network forward", median_seconds(forward, repeats, warmup=2)),
        ("ockd full extraction", median_seconds(lambda: ockd.extract(rgb), repeats, warmup=2)),
    ]
    baseline = rows[0][1]
    print(
        f"image {size[0]}×{size[1]}, device {ockd.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'step':<22} {'median ms':>10} {'× sift':>7}")
    for name, seconds in rows:
        print(f"{name:<22} {1000 * seconds:>10.1f} {seconds / baseline:>7.2f}")
    print(f"keypoints: sift {len(sift.extract(rgb))}, ockd {len(ockd.extract(rgb))}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (after rendering and loading: {memory_before:.0f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    main(tuple(args.size), args.repeats, args.device)
