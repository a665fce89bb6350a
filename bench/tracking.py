"""Tracking against a full search in every frame, same bag, same run, each backend.

Records (once, then reuses) a moving-camera synthetic bag of three default objects with
`ockd-bag record-synthetic`, then runs `ockd-bag eval` over it per backend with tracking off
(the full search in every frame), on, and on with zoom (each object's box resized to its
templates' scale), and prints per run: poses found, poses found around the previous one,
ADD(-S) AUC and recall at 10 % of the diameter, and the median estimator time per frame with
its ratio to the full search of the same backend (goal: a tracked frame ≤ 1/3 of a full
search, at equal or better accuracy).

    python bench/tracking.py [--frames 60] [--modes on zoom] [--checkpoint PT [PT ...]]
        [--baselines sift] [--out outputs/bench_tracking/table.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from backend_runs import add_arguments, backend_runs
from tables import emit_table

from ockd_ros.bags import BagEvalConfig, SyntheticBagConfig, evaluate_bag, record_synthetic
from ockd_ros.pose.tracking import TrackingConfig
from ockd_ros.render import Renderer

WORK = Path("outputs/bench_tracking")
# Tracking off (the full search in every frame, the baseline of each backend), on as the node
# runs it by default, and on with each object's box resized to its templates' scale.
MODES = {
    "off": TrackingConfig(enabled=False),
    "on": TrackingConfig(),
    "zoom": TrackingConfig(zoom=True),
}


def main(args: argparse.Namespace) -> str:
    lines = [
        "| backend | tracking | frames | poses found | found around the previous pose "
        "| ADD(-S) AUC | ADD(-S) < 0.1d (%) | median ms per frame | × full search |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with Renderer() as renderer:
        bag = args.work / f"synthetic_{args.frames}"
        if not bag.exists():
            record_synthetic(SyntheticBagConfig(frames=args.frames, seed=args.seed), bag, renderer)
        for run in backend_runs(args):
            full_ms = None
            for mode in ["off", *args.modes]:
                out = args.work / f"{run.label.replace(' ', '_').replace('/', '_')}_{mode}"
                shutil.rmtree(out, ignore_errors=True)
                conf = BagEvalConfig(overlays=2, estimator=run.config(), tracking=MODES[mode])
                evaluate_bag(conf, bag, out, renderer=renderer)
                metrics = json.loads((out / "metrics.json").read_text())
                overall = metrics["summaries"][-1]
                median_ms = metrics["estimate_ms"]["median"]
                full_ms = full_ms or median_ms
                lines.append(
                    f"| {run.label} | {mode} | {metrics['frames']} "
                    f"| {metrics['poses_found']} | {metrics['poses_tracked']} "
                    f"| {overall['add_or_adds_auc']:.1f} | {overall['recall']:.1f} "
                    f"| {median_ms:.0f} | {median_ms / full_ms:.2f} |"
                )
    return emit_table(lines, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0, help="of the synthetic scene")
    parser.add_argument("--work", type=Path, default=WORK, help="bag and evaluation folders")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=[m for m in MODES if m != "off"],
        default=["on", "zoom"],
        help="tracking modes measured against the full search",
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    main(parser.parse_args())
