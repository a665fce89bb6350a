"""How far each backend is from a pose on real frames, even with a perfect front end.

On a BOP dataset (default: the LM-O frames beside the checkout), for every annotated instance
and each backend with its defaults (`ockd` and the SIFT baseline, same frames, same run):

- **pose**: found and right (ADD(-S) < 10 % of the diameter) as `ockd-eval bop` looks for it,
  and again with the true visible region given (`Estimator.estimate(regions=...)`: the
  instance rendered at its true pose among the others, dilated by 8 px), the best an object
  mask could do;
- **nearest template**: the template whose view is nearest the true one, matched alone against
  the keypoints in the true region: its matches, the share within 5 px of where the true pose
  projects their 3D points, at how many different frame pixels, and its rank among all
  templates by match count (what template selection would have to find);
- with `--zoom`, the true region and the nearest template are measured on features of the true
  region's box alone, resized so that the object shows at its templates' size
  (`Estimator.template_scale` at the true pose): what a front end that also knew the object's
  distance would give;
- **object selection** (backends with inter-object descriptors): the share of the frame
  keypoints inside the true region and outside it whose inter-object cosine to the object's
  mean descriptor reaches the selection threshold, and the ROC AUC of that cosine.

    python bench/pose_oracle.py [--dataset DIR] [--checkpoint PT [PT ...]] [--baselines sift]
        [--zoom] [--max-frames N] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from backend_runs import BackendRun, add_arguments, backend_runs
from scipy.stats import rankdata
from tables import emit_table

from ockd_ros.eval.bop import BopDataset, BopFrame
from ockd_ros.eval.metrics import add_error, adds_error
from ockd_ros.features.ockd import OckdConfig
from ockd_ros.features.types import Features
from ockd_ros.geometry import make_pose
from ockd_ros.meshes import ObjectMesh, load_object
from ockd_ros.pose import Estimator
from ockd_ros.pose.estimator import MAX_SCALE, MIN_SCALE, PreparedFrame
from ockd_ros.pose.matching import BankDescriptors, match_templates
from ockd_ros.progress import progress_bar
from ockd_ros.render import Renderer

CORRECT_PX = 5.0  # a match is correct when the true pose projects its 3D point this close
REGION_MARGIN_PX = 8  # the true visible region grown by this, as a mask would be
PNP_PIXELS = 12  # different correct pixels a template needs for a pose to have a chance
SCALES = (MIN_SCALE, MAX_SCALE)  # --zoom: the resize factors an image may take
SELECTION_THRESHOLD = OckdConfig().mask_threshold  # inter-object cosine that selects a keypoint


@dataclass
class InstanceOutcome:
    obj: str
    found: bool  # without a region, as ockd-eval bop runs
    right: bool
    found_in_region: bool  # with the true visible region
    right_in_region: bool
    matches: int  # of the nearest template, inside the true region
    correct: int
    correct_pixels: int
    rank: int  # of the nearest template among all, by match count (0: most matches)
    templates: int  # in the object's bank
    selection: Selection | None  # None for backends without inter-object descriptors


@dataclass
class Selection:
    """How the inter-object descriptor picks the object: shares of the keypoints inside the true
    region (object) and outside it (background, other objects included) whose cosine to the
    object's mean descriptor reaches the threshold, and the area under the ROC curve of that
    cosine (0.5: no better than chance; 1: a threshold separates them perfectly)."""

    object_share: float
    background_share: float
    roc_auc: float


def main(
    dataset_dir: Path,
    runs: list[BackendRun],
    max_frames: int | None,
    out: Path | None,
    zoom: bool = False,
) -> str:
    dataset = BopDataset(dataset_dir)
    frames = dataset.frames()[:max_frames]
    objects = {obj_id: load_object(model.spec()) for obj_id, model in dataset.models.items()}
    points = {obj_id: model.eval_points() for obj_id, model in dataset.models.items()}
    outcomes = {}
    with Renderer() as renderer:
        regions = [true_regions(renderer, frame, objects) for frame in frames]
        for run in runs:
            estimator = Estimator(
                run.config(), list(objects.values()), renderer=renderer, progress=True
            )
            outcomes[run.label] = [
                outcome
                for frame, frame_regions in progress_bar(
                    list(zip(frames, regions, strict=True)), desc=run.label, unit="frame"
                )
                for outcome in frame_outcomes(
                    estimator, frame, frame_regions, dataset, points, zoom
                )
            ]
    tables = [*summary_table(outcomes), "", *object_table(outcomes), "", *selection_table(outcomes)]
    return emit_table(tables, out)


def true_regions(
    renderer: Renderer, frame: BopFrame, objects: dict[int, ObjectMesh]
) -> list[np.ndarray]:
    """Per instance of `frame`, the H×W bool region where it is visible, grown by the margin."""
    height, width = cv2.imread(str(frame.rgb_path), cv2.IMREAD_UNCHANGED).shape[:2]
    view = renderer.render(
        [objects[i.obj_id] for i in frame.instances],
        [make_pose(i.R, i.t) for i in frame.instances],
        frame.K,
        (width, height),
    )
    kernel = np.ones((2 * REGION_MARGIN_PX + 1,) * 2, np.uint8)
    return [
        cv2.dilate(view.mask(k).astype(np.uint8), kernel).astype(bool)
        for k in range(len(frame.instances))
    ]


def frame_outcomes(
    estimator: Estimator,
    frame: BopFrame,
    regions: list[np.ndarray],
    dataset: BopDataset,
    points: dict[int, np.ndarray],
    zoom: bool,
) -> list[InstanceOutcome]:
    """One outcome per instance of an object that appears once in `frame` (the estimator gives
    one pose per object, so a region must name a single instance)."""
    rgb = frame.load_rgb()
    ids = [i.obj_id for i in frame.instances]
    single = [k for k, obj_id in enumerate(ids) if ids.count(obj_id) == 1 and regions[k].any()]
    names = {k: dataset.models[ids[k]].name for k in single}
    plain = {p.name: p for p in estimator.estimate(rgb, frame.K, objects=list(names.values()))}
    whole = estimator.prepare(rgb, frame.K)
    outcomes = []
    for k in single:
        instance, model, name = frame.instances[k], dataset.models[ids[k]], names[k]
        error = adds_error if model.symmetric else add_error

        def right(pose, instance=instance, model=model, error=error) -> bool:
            if pose is None:
                return False
            distance = error(pose.R, pose.t, instance.R, instance.t, points[model.obj_id])
            return distance < 0.1 * model.diameter

        prepared = zoomed(estimator, rgb, frame, k, regions[k], name) if zoom else whole
        in_region = estimator.search(prepared, [name], regions={name: regions[k]})
        nearest = nearest_template_matches(estimator, name, prepared, regions[k], frame, k)
        bank = estimator.banks[name]
        outcomes.append(
            InstanceOutcome(
                model.name,
                name in plain,
                right(plain.get(name)),
                bool(in_region),
                right(in_region[0] if in_region else None),
                *nearest,
                bank.num_templates,
                selection(whole.features, bank.inter_mean, regions[k]),
            )
        )
    return outcomes


def zoomed(
    estimator: Estimator, rgb: np.ndarray, frame: BopFrame, index: int, region, name: str
) -> PreparedFrame:
    """Features of the box of `region` (grown by the margin) alone, resized so that the instance
    shows at its templates' size."""
    instance = frame.instances[index]
    ys, xs = np.nonzero(region)
    height, width = region.shape
    box = (
        max(int(xs.min()) - REGION_MARGIN_PX, 0),
        max(int(ys.min()) - REGION_MARGIN_PX, 0),
        min(int(xs.max()) + REGION_MARGIN_PX + 1, width),
        min(int(ys.max()) + REGION_MARGIN_PX + 1, height),
    )
    scale = estimator.template_scale(name, instance.R, instance.t, frame.K)
    return estimator.prepare(rgb, frame.K, roi=box, scale=float(np.clip(scale, *SCALES)))


def nearest_template_matches(
    estimator: Estimator,
    name: str,
    prepared: PreparedFrame,
    region: np.ndarray,
    frame: BopFrame,
    index: int,
) -> tuple[int, int, int, int]:
    """Matches, correct matches, their different frame pixels and the rank of the template
    nearest the true view, matched against the frame keypoints in `region`."""
    instance = frame.instances[index]
    bank = estimator.banks[name]
    features = prepared.features
    inside = features.in_region(region)
    keypoints, desc = features.keypoints[inside], features.desc_intra[inside]
    matching = estimator.matching_at(prepared.scale)
    every_template = dataclasses.replace(matching, shortlist=0, preselect=0)
    descriptors = BankDescriptors(bank.descriptors, bank.template_ids, bank.num_templates)
    matches = match_templates(desc, descriptors, every_template, keypoints)
    template = int(np.argmin(bank.view_angles(instance.R, instance.t)))
    counts = matches.counts(bank.num_templates)
    own = matches.of_template(template)
    rank = int(np.sum(counts > counts[template]))
    if len(own) == 0:
        return 0, 0, 0, rank
    projected = cv2.projectPoints(
        bank.points[own.bank_index].astype(np.float64).reshape(-1, 1, 3),
        cv2.Rodrigues(instance.R)[0],
        instance.t,
        frame.K,
        None,
    )[0].reshape(-1, 2)
    correct = np.linalg.norm(projected - keypoints[own.frame_index], axis=1) < CORRECT_PX
    pixels = len(np.unique(own.frame_index[correct]))
    return len(own), int(correct.sum()), pixels, rank


def selection(
    features: Features, inter_mean: np.ndarray | None, region: np.ndarray
) -> Selection | None:
    if features.desc_inter is None or inter_mean is None:
        return None
    cosine = features.desc_inter @ inter_mean
    inside = features.in_region(region)
    if inside.all() or not inside.any():
        return None
    chosen = cosine >= SELECTION_THRESHOLD
    # ROC AUC as the Mann-Whitney statistic: how often an object keypoint outscores a background one
    ranks = rankdata(cosine)
    positives, negatives = int(inside.sum()), int((~inside).sum())
    auc = (ranks[inside].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    return Selection(float(chosen[inside].mean()), float(chosen[~inside].mean()), float(auc))


def summary_table(outcomes: dict[str, list[InstanceOutcome]]) -> list[str]:
    lines = [
        "| backend | instances | found / right | true region: found / right "
        "| nearest template: matches | correct share | correct pixels: total | × sift "
        f"| median | instances with ≥ {PNP_PIXELS} | rank (median) of templates |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sift_pixels = sum(r.correct_pixels for r in outcomes.get("sift", []))
    for backend, rows in outcomes.items():
        pixels = sum(r.correct_pixels for r in rows)
        lines.append(
            f"| {backend} | {len(rows)} "
            f"| {sum(r.found for r in rows)} / {sum(r.right for r in rows)} "
            f"| {sum(r.found_in_region for r in rows)} / {sum(r.right_in_region for r in rows)} "
            f"| {sum(r.matches for r in rows)} | {_correct_share(rows):.3f} | {pixels} "
            f"| {pixels / sift_pixels if sift_pixels else float('inf'):.1f} "
            f"| {np.median([r.correct_pixels for r in rows]):.0f} "
            f"| {sum(r.correct_pixels >= PNP_PIXELS for r in rows)} "
            f"| {np.median([r.rank for r in rows]):.0f} of {rows[0].templates} |"
        )
    return lines


def object_table(outcomes: dict[str, list[InstanceOutcome]]) -> list[str]:
    backends = list(outcomes)
    header = " | ".join(f"{b} correct share | {b} correct pixels | {b} rank" for b in backends)
    lines = [f"| object | instances | {header} |", "|---|---|" + "---|---|---|" * len(backends)]
    for obj in sorted({r.obj for r in outcomes[backends[0]]}):
        cells = []
        for backend in backends:
            rows = [r for r in outcomes[backend] if r.obj == obj]
            cells.append(
                f"{_correct_share(rows):.3f} | {np.median([r.correct_pixels for r in rows]):.0f} "
                f"| {np.median([r.rank for r in rows]):.0f}"
            )
        lines.append(f"| {obj} | {len(rows)} | {' | '.join(cells)} |")
    return lines


def selection_table(outcomes: dict[str, list[InstanceOutcome]]) -> list[str]:
    """Per object and backend with inter-object descriptors: the mean shares selected at the
    threshold and the mean ROC AUC over its instances."""
    lines = [
        f"| backend | object | instances | object selected (cos ≥ {SELECTION_THRESHOLD}) "
        "| background selected | ROC AUC |",
        "|---|---|---|---|---|---|",
    ]
    for backend, rows in outcomes.items():
        measured = [r for r in rows if r.selection is not None]
        for obj in sorted({r.obj for r in measured}):
            picks = [r.selection for r in measured if r.obj == obj]
            lines.append(
                f"| {backend} | {obj} | {len(picks)} "
                f"| {np.mean([p.object_share for p in picks]):.3f} "
                f"| {np.mean([p.background_share for p in picks]):.3f} "
                f"| {np.mean([p.roc_auc for p in picks]):.3f} |"
            )
    return lines


def _correct_share(rows: list[InstanceOutcome]) -> float:
    matches = sum(r.matches for r in rows)
    return sum(r.correct for r in rows) / matches if matches else 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "lmo"
    parser.add_argument("--dataset", type=Path, default=default, help="BOP dataset folder")
    add_arguments(parser)
    parser.add_argument(
        "--zoom",
        action="store_true",
        help="measure the true region on its box alone, resized to the templates' scale",
    )
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables here")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    main(args.dataset, backend_runs(args), args.max_frames, args.out, args.zoom)
