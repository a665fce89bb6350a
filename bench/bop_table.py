"""Pose accuracy on a BOP dataset for several backends in one run, shaped like the paper's
Table 3 (YCB-Video, ADD and ADD-S AUC up to 10 cm, PoseCNN protocol): per object, each backend
of this run side by side, with the paper's figures for its method beside them where the
object is one of its YCB-Video objects.

    python bench/bop_table.py --dataset ../shared/data/ycbv --baselines sift \
        [--checkpoint PT [PT ...]] [--config overrides.yaml] [--out outputs/ycbv_table]

Each backend's full evaluation (report, metrics.json, plots, overlays) lands in OUT/<label>/,
the table in OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from backend_runs import add_arguments, backend_runs
from tables import emit_table

from ockd_ros.eval.bop import BopDataset
from ockd_ros.eval.bop_eval import BopEvalConfig, evaluate_bop

# The paper's Table 3 (its method on YCB-Video, ADD / ADD-S AUC), by YCB-Video object id.
PAPER = {
    1: ("master_chef_can", 48.2, 77.5),
    2: ("cracker_box", 35.4, 60.3),
    3: ("sugar_box", 74.6, 86.3),
    4: ("tomato_soup_can", None, None),
    5: ("mustard_bottle", 54.5, 72.8),
    6: ("tuna_fish_can", 53.6, 73.5),
    9: ("potted_meat_can", 51.9, 70.5),
}
PAPER_ALL = (42.2, 61.9)  # over its 21 objects


def run_backends(args: argparse.Namespace) -> dict[str, dict]:
    """label → metrics.json of that backend's evaluation, all in this process."""
    metrics = {}
    for run in backend_runs(args):
        conf = BopEvalConfig(
            dataset=str(args.dataset),
            max_frames=args.max_frames,
            overlays=args.overlays,
            estimator=run.config(),
        )
        out = args.out / _slug(run.label)
        evaluate_bop(conf, out, command=f"bench/bop_table.py ({run.label})")
        metrics[run.label] = json.loads((out / "metrics.json").read_text())
    return metrics


def table_rows(metrics: dict[str, dict], names: dict[str, int], ycbv: bool) -> list[list[str]]:
    """Per object and pooled: found/instances, ADD / ADD-S AUC and ADD(-S) < 0.1d per backend."""
    summaries = {
        label: {s["name"]: s for s in data["summaries"]} for label, data in metrics.items()
    }
    rows = []
    for name in [*sorted(names, key=names.get), "all"]:
        row = [_object_label(name, names, ycbv)]
        for per_object in summaries.values():
            s = per_object.get(name)
            row.append(
                "–"
                if s is None
                else f"{s['found']}/{s['instances']}, {s['add_auc']:.1f} / {s['adds_auc']:.1f}, "
                f"{s['recall']:.0f} %"
            )
        if ycbv:
            row.append(_paper(name, names))
        rows.append(row)
    return rows


def _object_label(name: str, names: dict[str, int], ycbv: bool) -> str:
    if name == "all":
        return "**all**"
    obj_id = names[name]
    return f"{obj_id} {PAPER[obj_id][0]}" if ycbv and obj_id in PAPER else name


def _paper(name: str, names: dict[str, int]) -> str:
    if name == "all":
        return f"{PAPER_ALL[0]} / {PAPER_ALL[1]} (21 objects)"
    add, adds = PAPER.get(names[name], (None, None, None))[1:]
    return "–" if add is None else f"{add} / {adds}"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=Path("../shared/data/ycbv"))
    add_arguments(parser)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--overlays", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("outputs/bop_table"))
    args = parser.parse_args()
    dataset = BopDataset(args.dataset)
    names = {model.name: obj_id for obj_id, model in dataset.models.items()}
    metrics = run_backends(args)
    ycbv = "ycbv" in args.dataset.resolve().name
    header = [
        "object",
        *(f"{label}: found, ADD / ADD-S AUC, < 0.1d" for label in metrics),
        *(["paper, its method: ADD / ADD-S AUC"] if ycbv else []),
    ]
    times = {label: data["estimate_ms"]["mean"] for label, data in metrics.items()}
    note = "mean time per frame: " + ", ".join(f"{k} {v:.0f} ms" for k, v in times.items())
    lines = [
        f"Pose on {args.dataset}; {note}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in table_rows(metrics, names, ycbv)),
    ]
    emit_table(lines, args.out / "table.md")


if __name__ == "__main__":
    main()
