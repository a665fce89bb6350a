"""The plots of an evaluation report: time per frame and accuracy against the ADD(-S) threshold.

Figures are made with matplotlib's object API and saved by its Agg canvas, without pyplot: no
display is needed and the global backend of a process that imports this is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ockd_ros.eval.metrics import AUC_MAX_THRESHOLD
from ockd_ros.eval.report import InstanceResult

FIGSIZE = (7, 4)  # inches, at 100 dpi


def plot_times(path: Path, frame_ms: Sequence[float], estimate_ms: Sequence[float]) -> Path | None:
    """Histogram of the time per frame: the estimator alone, and the whole frame (reading,
    decoding and writing included). None when there is no frame."""
    if not frame_ms:
        return None
    figure = Figure(figsize=FIGSIZE)
    axes = figure.subplots()
    bins = np.linspace(0, 1.05 * max(max(frame_ms), 1.0), 21)
    axes.hist(
        [estimate_ms, frame_ms], bins=bins, label=["estimator", "whole frame"], histtype="bar"
    )
    axes.set(xlabel="time per frame (ms)", ylabel="frames", title="time per frame")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend()
    return _save(figure, path)


def plot_accuracy(path: Path, instances: Sequence[InstanceResult]) -> Path:
    """Per object, the share of instances with ADD(-S) below a threshold from 0 to 10 cm: the
    curves whose area is the ADD(-S) AUC."""
    figure = Figure(figsize=FIGSIZE)
    axes = figure.subplots()
    thresholds = np.linspace(0, AUC_MAX_THRESHOLD, 101)
    for name in sorted({r.name for r in instances}):
        errors = np.array([r.add_or_adds for r in instances if r.name == name])
        axes.plot(100 * thresholds, [(errors <= t).mean() for t in thresholds], label=name)
    axes.set(
        xlabel="ADD(-S) threshold (cm)",
        ylabel="accuracy",
        title="accuracy against the ADD(-S) threshold",
        ylim=(0, 1.02),
    )
    axes.legend(fontsize="small")
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path
