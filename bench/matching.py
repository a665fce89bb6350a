"""Keypoint matching of `ockd` against SIFT in one run: MMA@5/7 and keypoint counts on held-out
synthetic pairs and on real LM-O frames (reference = the object rendered 15° off its true pose).

    python bench/matching.py --data /work/data/ppdr_cpu --bop ../shared/data/lmo \
        [--checkpoint ockd_ros/weights/ockd_default.pt] [--pairs 40] [--out outputs/matching.md]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.keypoints import MatchingPair, bop_reference_pairs, score_pairs
from ockd_ros.features import create_extractor
from ockd_ros.render import Renderer
from ockd_ros.training.data import DataConfig, TrainingPairs


def synthetic_pairs(data_dir: Path, count: int, held_out_scenes: int):
    """Held-out pairs (the data's last scenes, frames 3 apart, as in training), whole images."""
    conf = DataConfig(val_scenes=held_out_scenes, val_gap=3)
    pairs = TrainingPairs(data_dir, conf, None, split="val")
    for index in range(min(count, len(pairs))):
        raw = pairs.raw(index)
        everywhere = np.ones(raw["labels1"].shape, bool)
        yield MatchingPair(
            "synthetic", raw["image1"], raw["image2"], raw["corr12"], raw["valid12"],
            everywhere, everywhere,
        )  # fmt: skip


def main(args) -> str:
    extractors = {
        "ockd": create_extractor("ockd", {"checkpoint": args.checkpoint, "device": args.device}),
        "sift": create_extractor("sift"),
    }
    lines = [
        "| data | backend | pairs | keypoints / image (in region) | MMA@5 | MMA@7 |",
        "|---|---|---|---|---|---|",
    ]
    per_object: dict[str, dict[str, float]] = {}
    with Renderer() as renderer:
        sources = {}
        if args.data:
            sources["synthetic (held out)"] = lambda: synthetic_pairs(
                args.data, args.pairs, args.held_out_scenes
            )
        if args.bop:
            dataset = BopDataset(args.bop)
            sources["LM-O real"] = lambda: itertools.islice(
                bop_reference_pairs(dataset, renderer), args.pairs
            )
        for source, make_pairs in sources.items():
            for name, extractor in extractors.items():
                score = score_pairs(extractor, make_pairs())
                lines.append(
                    f"| {source} | {name} | {len(score.keypoints)} | "
                    f"{np.mean(score.keypoints):.0f} | {score.mean_mma(5):.3f} | "
                    f"{score.mean_mma(7):.3f} |"
                )
                if source == "LM-O real":
                    for label, values in sorted(score.by_label.items()):
                        per_object.setdefault(label, {})[name] = float(np.mean(values))
    if per_object:
        lines += ["", "| LM-O object | ockd MMA@5 | sift MMA@5 |", "|---|---|---|"]
        for label, values in per_object.items():
            lines.append(f"| {label} | {values.get('ockd', 0):.3f} | {values.get('sift', 0):.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="generated scenes (held-out split is used)")
    parser.add_argument("--bop", type=Path, help="BOP dataset with real frames, e.g. LM-O")
    parser.add_argument("--checkpoint", help="ockd checkpoint (default: the shipped one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pairs", type=int, default=40, help="pairs per data source")
    parser.add_argument(
        "--held-out-scenes", type=int, default=8, help="as val_scenes in the training config"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    main(parser.parse_args())
