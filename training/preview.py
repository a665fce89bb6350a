"""Contact sheet of one generated scene, to check a generator run by eye.

One row per shown frame: RGB, instance labels, depth, and the frame's I0 renders (crops tiled);
a last row draws correspondences T12 between the first two shown frames (green: valid, red:
rejected by the occlusion check).

    ockd-preview data/ppdr/scene_000000 --out scene_000000.png
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ockd_ros.command_line import one_line_errors
from ockd_ros.training.pairs import PairConfig, load_pair
from ockd_ros.training.scene_format import SceneMeta, read_frame, read_scene

LOG = logging.getLogger(__name__)
TEXT_COLOR = (255, 255, 255)


def contact_sheet(
    folder: str | Path,
    frames: int = 4,
    matches: int = 30,
    gap: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """H×W×3 uint8 RGB sheet of the scene in `folder` (see the module docstring)."""
    folder = Path(folder)
    meta = read_scene(folder)
    shown = np.linspace(0, len(meta.frames) - 1, min(frames, len(meta.frames))).round()
    rows = [_frame_row(folder, meta, int(index)) for index in dict.fromkeys(shown.astype(int))]
    if len(meta.frames) > gap:
        rows.append(_match_row(folder, meta, gap, matches, seed))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    return np.vstack(rows)


def _frame_row(folder: Path, meta: SceneMeta, index: int) -> np.ndarray:
    frame = read_frame(folder, meta, index)
    width, height = meta.size
    things = [i.id for i in meta.instances if i.kind in ("object", "distractor")]
    tiles = [
        _caption(frame.rgb, f"frame {index}"),
        _caption(colorize_labels(frame.labels), f"labels ({len(frame.info.visible)} visible)"),
        _caption(colorize_depth(frame.depth, np.isin(frame.labels, things)), "depth"),
    ]
    crops = [rgb for rgb, _, _ in frame.i0.values()]
    tiles.append(_caption(_tile(crops, (width, height)), f"I0 ×{len(crops)}"))
    return np.hstack(tiles)


def _match_row(folder: Path, meta: SceneMeta, gap: int, matches: int, seed: int) -> np.ndarray:
    pair = load_pair(folder, 0, gap, PairConfig(gap=gap, with_i0=False), meta)
    width = meta.size[0]
    canvas = np.hstack([pair.rgb1, pair.rgb2]).copy()
    rng = np.random.default_rng(seed)
    # Prefer points on objects: the table and the background are not what the model learns.
    objects = [i.id for i in meta.instances if i.kind == "object"]
    on_object = np.isin(pair.labels1, objects) & np.isfinite(pair.T12[..., 0])
    candidates = np.argwhere(on_object)
    if len(candidates) == 0:
        candidates = np.argwhere(np.isfinite(pair.T12[..., 0]))
    if len(candidates):
        picks = candidates[rng.choice(len(candidates), min(matches, len(candidates)), False)]
        for y, x in picks:
            color = (0, 220, 0) if pair.valid[y, x] else (230, 0, 0)
            u2, v2 = pair.T12[y, x]
            cv2.circle(canvas, (int(x), int(y)), 2, color, -1, cv2.LINE_AA)
            end = (round(float(u2)) + width, round(float(v2)))
            cv2.line(canvas, (int(x), int(y)), end, color, 1, cv2.LINE_AA)
    share = pair.valid.sum() / max(np.isfinite(pair.T12[..., 0]).sum(), 1)
    return _caption(canvas, f"T12 frame 0 -> {gap}: {share:.0%} of pixels with depth valid")


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """H×W ids → H×W×3 uint8, a fixed pseudo-random colour per id, black for 0."""
    palette = np.random.default_rng(7).integers(40, 256, (int(labels.max(initial=0)) + 1, 3))
    palette[0] = 0
    return palette[labels].astype(np.uint8)


def colorize_depth(depth: np.ndarray, focus: np.ndarray | None = None) -> np.ndarray:
    """H×W metres → H×W×3 uint8 (near bright, black where there is no depth).

    The colour range spans the depths under the H×W bool `focus` (e.g. the objects, so that a
    far floor does not flatten them), or all depths without it.
    """
    has = depth > 0
    out = np.zeros((*depth.shape, 3), np.uint8)
    span = has & focus if focus is not None and (has & focus).any() else has
    if has.any():
        near, far = np.percentile(depth[span], [1, 99])
        scaled = 1 - np.clip((depth - near) / max(far - near, 1e-6), 0, 1)
        colored = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
        out[has] = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)[has]
    return out


def _tile(images: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Images resized into a grid filling a width × height tile."""
    width, height = size
    out = np.zeros((height, width, 3), np.uint8)
    if not images:
        return out
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    cell_w, cell_h = width // cols, height // rows
    for k, image in enumerate(images):
        scale = min(cell_w / image.shape[1], cell_h / image.shape[0])
        w, h = max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))
        y, x = (k // cols) * cell_h, (k % cols) * cell_w
        out[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out


def _caption(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, TEXT_COLOR, 1, cv2.LINE_AA)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ockd-preview", description="Write a contact sheet PNG of a generated scene."
    )
    parser.add_argument("scene", type=Path, help="a scene folder (scene_NNNNNN)")
    parser.add_argument("--out", type=Path, help="PNG path (default: <scene>.png beside it)")
    parser.add_argument("--frames", type=int, default=4, help="frames shown (default 4)")
    parser.add_argument("--matches", type=int, default=30, help="correspondences drawn")
    parser.add_argument("--gap", type=int, default=1, help="frame gap of the drawn pair")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with one_line_errors("ockd-preview"):
        sheet = contact_sheet(args.scene, args.frames, args.matches, args.gap)
        out = args.out or args.scene.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {out}")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
