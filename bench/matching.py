"""Keypoint matching of `ockd` against SIFT in one run: MMA@5/7 and keypoint counts.

Three sources: held-out synthetic frame pairs (frames 3 apart, whole images, as in training);
held-out synthetic frames against a reference render; real frames of a BOP dataset (LM-O,
YCB-Video) against a reference render. A reference render is the object alone at its true
pose turned 15° about its centre, which is what pose estimation asks of the features (a
template never shows the scene).

    python bench/matching.py --data /work/data/ppdr_cpu --bop ../shared/data/lmo \
        [--checkpoint PT [PT ...]] [--baselines sift] [--pairs 40] [--out outputs/matching.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import numpy as np
from backend_runs import add_arguments, backend_runs
from tables import emit_table

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.keypoints import (
    MIN_VISIBLE_PIXELS,
    MatchingPair,
    bop_reference_pairs,
    random_turn,
    reference_pair,
    score_pairs,
)
from ockd_ros.eval.mma import spatial_ratio_matches
from ockd_ros.features import create_extractor
from ockd_ros.features.ockd import OckdExtractor
from ockd_ros.meshes import load_object
from ockd_ros.render import Renderer
from ockd_ros.training.data import DataConfig, TrainingPairs
from ockd_ros.training.scene_format import list_scenes, read_frame, read_scene
from ockd_ros.training.scenes import mesh_specs


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


def synthetic_reference_pairs(
    data_dir: Path,
    held_out_scenes: int,
    renderer: Renderer,
    frames_per_scene: int = 5,
    rotation_deg: float = 15.0,
):
    """Reference render → held-out synthetic frame, one pair per visible object of
    `frames_per_scene` evenly spaced frames of each held-out scene, scene after scene.

    Visibility and occlusion come from the frame's own labels and depth.
    """
    rng = np.random.default_rng(0)
    specs_by_source: dict[tuple[str, str], dict] = {}
    objects = {}
    for folder, meta, index in _held_out_frames(data_dir, held_out_scenes, frames_per_scene):
        frame = read_frame(folder, meta, index, with_i0=False)
        source = (meta.extra["generator"]["meshes"], meta.extra["generator"]["units"])
        if source not in specs_by_source:
            specs_by_source[source] = {spec.name: spec for spec in mesh_specs(*source)}
        for instance in meta.instances:
            visible = frame.labels == instance.id
            if instance.kind != "object" or visible.sum() < MIN_VISIBLE_PIXELS:
                continue
            if instance.name not in objects:
                objects[instance.name] = load_object(specs_by_source[source][instance.name])
            yield reference_pair(
                renderer, objects[instance.name], frame.info.object_pose(instance), frame.rgb,
                frame.info.K, visible, frame.depth, random_turn(rng, rotation_deg),
            )  # fmt: skip


def _held_out_frames(data_dir: Path, held_out_scenes: int, frames_per_scene: int):
    """(scene folder, its parsed scene.json, frame index) of evenly spaced frames: the first of
    every scene, then the second of every scene..., so that a prefix of the pairs covers all
    held-out scenes."""
    folders = list_scenes(data_dir)[-held_out_scenes:]
    metas = [read_scene(folder) for folder in folders]
    for rank in range(frames_per_scene):
        for folder, meta in zip(folders, metas, strict=True):
            yield folder, meta, (2 * rank + 1) * len(meta.frames) // (2 * frames_per_scene)


def main(args) -> str:
    # backend → (extractor, matcher): per ockd checkpoint its detector's keypoints with mutual
    # nearest neighbours and the 4-px grid the pose estimator uses, with its spatial ratio test.
    extractors = {}
    for run in backend_runs(args, args.device):
        extractor = create_extractor(run.backend, run.features)
        extractors[run.label] = (extractor, None)
        if run.backend == "ockd":
            grid = OckdExtractor(
                dataclasses.replace(extractor.conf, grid_stride=4), extractor.model
            )
            extractors[f"{run.label} grid"] = (grid, spatial_ratio_matches)
    lines = [
        "| data | backend | pairs | keypoints / image (in region) | matches | MMA@5 | MMA@7 |",
        "|---|---|---|---|---|---|---|",
    ]
    per_object: dict[tuple[str, str], dict[str, float]] = {}
    with Renderer() as renderer:
        sources = {}
        if args.data:
            sources["synthetic frame pairs"] = lambda: synthetic_pairs(
                args.data, args.pairs, args.held_out_scenes
            )
            sources["synthetic vs render"] = lambda: itertools.islice(
                synthetic_reference_pairs(args.data, args.held_out_scenes, renderer), args.pairs
            )
        if args.bop:
            dataset = BopDataset(args.bop)
            # named by the dataset's folder: lmo, ycbv...
            sources[f"real {args.bop.resolve().name} vs render"] = lambda: itertools.islice(
                bop_reference_pairs(dataset, renderer), args.pairs
            )
        for source, make_pairs in sources.items():
            for name, (extractor, matcher) in extractors.items():
                score = score_pairs(extractor, make_pairs(), matcher=matcher)
                lines.append(
                    f"| {source} | {name} | {len(score.keypoints)} | "
                    f"{np.mean(score.keypoints):.0f} | {sum(score.matches)} | "
                    f"{score.mean_mma(5):.3f} | "
                    f"{score.mean_mma(7):.3f} |"
                )
                if source != "synthetic frame pairs":
                    for label, values in sorted(score.by_label.items()):
                        per_object.setdefault((source, label), {})[name] = float(np.mean(values))
    if per_object:
        names = " | ".join(f"{name} MMA@5" for name in extractors)
        lines += ["", f"| data | object | {names} |", "|---|---|" + "---|" * len(extractors)]
        for (source, label), values in per_object.items():
            cells = " | ".join(f"{values.get(name, 0.0):.3f}" for name in extractors)
            lines.append(f"| {source} | {label} | {cells} |")
    return emit_table(lines, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="generated scenes (held-out split is used)")
    parser.add_argument("--bop", type=Path, help="BOP dataset with real frames: LM-O, YCB-Video")
    add_arguments(parser)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pairs", type=int, default=200, help="pairs per data source, at most")
    parser.add_argument(
        "--held-out-scenes", type=int, default=8, help="as val_scenes in the training config"
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    main(parser.parse_args())
