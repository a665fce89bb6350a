"""Bag evaluation speed: `ockd-bag eval` against the estimator alone on the same frames, same run.

Records a synthetic bag (default 20 frames of three default objects at 640×480; or uses `--bag`),
then alternates, `--rounds` times: the estimator alone over the frames decoded beforehand into
memory, and `evaluate_bag`'s streaming loop over the bag (reading, decoding, estimating, writing
the results bag; no overlays). The overhead of bag I/O is the loop's time over the estimator's
(goal ≤ 10 %); it is also given from inside the eval loop alone (its time outside `estimate`),
which another job on the machine disturbs less.

    python bench/bag_eval.py [--frames 20] [--size 640 480] [--backend sift] [--views 48]
                             [--rounds 3] [--storage sqlite3] [--bag BAG]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import peak_rss_mb

from ockd_ros.bags import (
    BagEvalConfig,
    BagSource,
    SyntheticBagConfig,
    evaluate_bag,
    record_synthetic,
)
from ockd_ros.config import merge_config
from ockd_ros.features import BACKENDS
from ockd_ros.meshes import load_object
from ockd_ros.pose import Estimator, default_config
from ockd_ros.render import Renderer

OBJECTS = ("cream_cheese", "ketchup", "macaroni_and_cheese")


def estimator_alone(estimator: Estimator, frames: list) -> float:
    """Seconds for `estimate` over the frames (already decoded: no bag in the loop)."""
    start = time.perf_counter()
    for rgb, K in frames:
        estimator.estimate(rgb, K)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(640, 480))
    parser.add_argument("--backend", default="sift", choices=sorted(BACKENDS))
    parser.add_argument("--views", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    parser.add_argument("--bag", type=Path, help="evaluate this bag instead of a synthetic one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bag_bench_") as tmp, Renderer() as renderer:
        bag = args.bag
        if bag is None:
            conf = SyntheticBagConfig(OBJECTS, args.frames, tuple(args.size), storage=args.storage)
            bag = record_synthetic(conf, Path(tmp) / "bag", renderer)
        with BagSource(bag) as source:
            names = source.gt_names or list(OBJECTS)
            frames = [(f.rgb, f.intrinsics.K) for f in source.frames()]
        est_conf = merge_config(
            default_config(args.backend),
            {"templates": {"views": args.views}, "cache_dir": str(Path(tmp) / "templates")},
        )
        estimator = Estimator(est_conf, [load_object(n) for n in names], renderer=renderer)
        estimator.estimate(*frames[0])  # warm-up: the first call allocates
        eval_conf = BagEvalConfig(objects=tuple(names), overlays=0, storage=args.storage,
                                  estimator=est_conf)  # fmt: skip
        alone, loop, per_frame, inside = [], [], [], []
        for k in range(args.rounds):
            alone.append(estimator_alone(estimator, frames))
            result = evaluate_bag(eval_conf, bag, Path(tmp) / f"out{k}", renderer=renderer)
            loop.append(result.loop_seconds)
            per_frame.append(result.frame_seconds)
            inside.append(result.estimate_seconds)

    n = len(frames)
    size = f"{frames[0][0].shape[1]}×{frames[0][0].shape[0]}"
    print(f"{n} frames {size}, {len(names)} objects, {args.backend} {args.views} views, "
          f"{args.storage}; medians of {args.rounds} rounds")  # fmt: skip
    print("| run | fps | ms / frame | × estimator alone |")
    print("|---|---|---|---|")
    base = float(np.median(alone))
    rows = (
        ("estimator alone (frames decoded in memory)", base),
        ("`ockd-bag eval` per frame (read, decode, estimate, write)", np.median(per_frame)),
        ("`ockd-bag eval` incl. opening and closing the bags", np.median(loop)),
        ("estimate calls inside the eval loop", np.median(inside)),
    )
    for label, seconds in rows:
        print(f"| {label} | {n / seconds:.2f} | {1000 * seconds / n:.1f} | {seconds / base:.3f} |")
    overhead = np.median([(f - i) / i for f, i in zip(per_frame, inside, strict=True)])
    against = 100 * (np.median(per_frame) / base - 1)
    print(f"bag I/O overhead per frame: {against:+.1f} % against the estimator alone, "
          f"{100 * overhead:+.1f} % within the eval loop (goal ≤ 10 %)")  # fmt: skip
    print(f"peak RSS: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
