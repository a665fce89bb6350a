"""Loss curves of a training run as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

LOSS_TERMS = ("total", "intra", "inter", "template", "repeatability", "intra_nce", "inter_nce")


def _columns(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    with path.open() as stream:
        rows = list(csv.DictReader(stream))
    return (
        {key: [float(row[key]) for row in rows if row.get(key)] for key in rows[0]} if rows else {}
    )


def plot_losses(log_csv: Path, validation_csv: Path, out_png: Path) -> Path:
    """Loss terms against steps (left) and validation MMA (right)."""
    losses, validation = _columns(log_csv), _columns(validation_csv)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for term in LOSS_TERMS:
        if term in losses and len(losses[term]) == len(losses["step"]):
            left.plot(losses["step"], losses[term], label=term)
    left.set(xlabel="step", ylabel="loss", title="training losses")
    left.legend()
    labels = {
        "mma5": "synthetic MMA@5",
        "mma7": "synthetic MMA@7",
        "real_mma5": "real vs render, grid MMA@5",
        "real_mma7": "real vs render, grid MMA@7",
    }
    for metric, label in labels.items():
        if metric in validation and len(validation[metric]) == len(validation["step"]):
            right.plot(validation["step"], validation[metric], marker="o", label=label)
    right.set(xlabel="step", ylabel="MMA", title="validation (held-out, never trained on)")
    right.set_ylim(0, 1)
    right.legend()
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
    return out_png
