"""Evaluation reports: per-object and overall ADD / ADD-S tables in Markdown, outline overlays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ockd_ros.eval.metrics import auc, recall
from ockd_ros.meshes import ObjectMesh
from ockd_ros.render import Renderer
from ockd_ros.visualize import caption

GT_COLOR = (0, 255, 0)
PREDICTION_COLOR = (255, 0, 255)
RECALL_FRACTION = 0.1  # ADD(-S) below 10 % of the diameter counts as correct


@dataclass(frozen=True)
class InstanceResult:
    """The errors (metres; inf when the object was not found) for one ground-truth instance."""

    scene_id: int
    im_id: int
    obj_id: int
    name: str
    symmetric: bool
    diameter: float
    add: float
    adds: float

    @property
    def found(self) -> bool:
        return bool(np.isfinite(self.add))

    @property
    def add_or_adds(self) -> float:
        """ADD-S for symmetric objects, ADD for the others."""
        return self.adds if self.symmetric else self.add


@dataclass(frozen=True)
class ObjectSummary:
    """Metrics of one object (or of all, `name` "all"); AUCs and recall in percent."""

    name: str
    symmetric: bool
    instances: int
    found: int
    add_auc: float
    adds_auc: float
    add_or_adds_auc: float
    recall: float


def summarize(results: Sequence[InstanceResult]) -> list[ObjectSummary]:
    """One summary per object (by name) and a last one, "all", over every instance pooled."""
    if not results:
        raise ValueError("no instances to summarize")
    names = sorted({r.name for r in results})
    rows = [_summary(name, [r for r in results if r.name == name]) for name in names]
    return [*rows, _summary("all", list(results))]


def _summary(name: str, results: list[InstanceResult]) -> ObjectSummary:
    add = [r.add for r in results]
    adds = [r.adds for r in results]
    either = [r.add_or_adds for r in results]
    return ObjectSummary(
        name=name,
        symmetric=name != "all" and results[0].symmetric,
        instances=len(results),
        found=sum(r.found for r in results),
        add_auc=auc(add),
        adds_auc=auc(adds),
        add_or_adds_auc=auc(either),
        recall=100.0 * recall(either, [RECALL_FRACTION * r.diameter for r in results]),
    )


def markdown_table(summaries: Sequence[ObjectSummary]) -> str:
    """The summaries as a Markdown table (AUC up to 10 cm, recall at 10 % of the diameter)."""
    lines = [
        "| object | symmetric | instances | found | ADD AUC | ADD-S AUC | ADD(-S) AUC "
        "| ADD(-S) < 0.1d (%) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        name = f"**{s.name}**" if s.name == "all" else s.name
        symmetric = "" if s.name == "all" else ("yes" if s.symmetric else "no")
        lines.append(
            f"| {name} | {symmetric} | {s.instances} | {s.found} | {s.add_auc:.1f} "
            f"| {s.adds_auc:.1f} | {s.add_or_adds_auc:.1f} | {s.recall:.1f} |"
        )
    return "\n".join(lines)


def outline_overlay(
    rgb: np.ndarray,
    renderer: Renderer,
    K: np.ndarray,
    ground_truth: Sequence[tuple[ObjectMesh, np.ndarray]],
    predicted: Sequence[tuple[ObjectMesh, np.ndarray]],
    title: str = "",
) -> np.ndarray:
    """A copy of `rgb` with the silhouette outlines of the objects at their true poses (green)
    and at the predicted poses (magenta, with the object name). Poses are 4×4 `T_cam_obj`."""
    canvas = rgb.copy()
    size = (rgb.shape[1], rgb.shape[0])
    for color, items in ((GT_COLOR, ground_truth), (PREDICTION_COLOR, predicted)):
        for obj, T in items:
            mask = renderer.render([obj], [T], K, size).labels == 1
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(canvas, contours, -1, color, 2, cv2.LINE_AA)
            if color == PREDICTION_COLOR and contours:
                x, y, _, _ = cv2.boundingRect(np.concatenate(contours))
                cv2.putText(
                    canvas, obj.name, (x, max(y - 4, 30)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    color, 1, cv2.LINE_AA,
                )  # fmt: skip
    legend = "green: ground truth, magenta: predicted"
    return caption(canvas, f"{title}  ({legend})" if title else legend)
