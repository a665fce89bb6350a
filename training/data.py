"""Training samples from generated scenes: frame pairs cropped, augmented and batched.

Wraps `pairs.PairDataset`. Scenes are split by folder order: the last `val_scenes` are held out
for validation. Each sample carries up to `i0_per_pair` clean renders (I0) of objects of I1,
cropped square around the object and resized to `i0_size`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ockd_ros.training.augment import AugmentConfig, augment_pair
from ockd_ros.training.objective import PairBatch
from ockd_ros.training.pairs import FramePair, PairConfig, PairDataset


@dataclass(frozen=True)
class DataConfig:
    crop: tuple[int, int] | None = None  # (width, height) random crop; None keeps whole frames
    i0_size: int = 128
    i0_per_pair: int = 2
    i0_margin: float = 0.1  # fraction of the object's box added around the I0 crop
    val_scenes: int = 2
    gap: int = 1  # frame distance within a training pair (the paper pairs adjacent frames)
    # Wider baselines: training pairs also span gap + 1 … max_gap frames (None: gap only), as
    # the templates a frame is matched against are up to tens of degrees away.
    max_gap: int | None = None
    # I0 crops turn by up to ± this and zoom by up to × (1 ± i0_zoom): templates show objects
    # upright at one scale, frames show them at any roll and size.
    i0_rotation_degrees: float = 0.0
    i0_zoom: float = 0.0
    val_gap: int = 3  # validation pairs are further apart: adjacent frames are too easy to score


class TrainingPairs(Dataset):
    """Samples as dicts of numpy arrays; `collate_pairs` turns a list of them into a PairBatch."""

    def __init__(
        self,
        root: str | Path,
        conf: DataConfig,
        augment: AugmentConfig | None,
        split: str,
        seed: int = 0,
    ):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"training data folder not found: {root}")
        gaps = (conf.gap, conf.max_gap) if split == "train" else (conf.val_gap, None)
        self.pairs = PairDataset(root, PairConfig(gap=gaps[0], max_gap=gaps[1]), strict=False)
        scenes = len(self.pairs.scenes)
        if scenes <= conf.val_scenes:
            raise ValueError(
                f"{root} holds {scenes} complete scenes; need more than val_scenes="
                f"{conf.val_scenes} (generate data with ockd-gen first)"
            )
        first_val = scenes - conf.val_scenes
        keep = (lambda s: s < first_val) if split == "train" else (lambda s: s >= first_val)
        self.indices = [i for i, (s, _, _) in enumerate(self.pairs.pairs) if keep(s)]
        self.conf, self.augment, self.seed = conf, augment, seed

    def __len__(self) -> int:
        return len(self.indices)

    def raw(self, index: int) -> dict:
        """The pair without crop or augmentation: image1, image2, corr12, valid12, ..."""
        return _as_sample(self.pairs[self.indices[index]])

    def __getitem__(self, index: int) -> dict:
        # A fresh stream per item and worker keeps runs reproducible for a seed.
        rng = np.random.default_rng([self.seed, index, torch.initial_seed() % 2**32])
        pair = self.pairs[self.indices[index]]
        sample = _as_sample(pair)
        if self.conf.crop is not None:
            sample = _crop(sample, self.conf.crop, rng)
        if self.augment is not None:
            sample = augment_pair(sample, self.augment, rng)
        sample["i0"] = _i0_crops(pair, sample["origin1"], self.conf, rng)
        return sample


def _as_sample(pair: FramePair) -> dict:
    objects = [inst.id for inst in pair.instances if inst.kind == "object"]
    return {
        "image1": pair.rgb1,
        "image2": pair.rgb2,
        "labels1": pair.labels1.astype(np.int64),
        "labels2": pair.labels2.astype(np.int64),
        "corr12": np.nan_to_num(pair.T12, nan=-1.0),
        "valid12": pair.valid & ~np.isnan(pair.T12).any(axis=-1),
        "object_ids": np.asarray(objects, dtype=np.int64),
        "origin1": np.zeros(2, np.float32),  # where the I1 crop starts in the full frame
    }


def _crop(sample: dict, size: tuple[int, int], rng: np.random.Generator) -> dict:
    """Random crop of I1; I2 cropped around where the I1 crop lands in it."""
    width, height = size
    full_h, full_w = sample["labels1"].shape
    if width > full_w or height > full_h:
        raise ValueError(f"crop {width}×{height} is larger than the frames ({full_w}×{full_h})")
    x1, y1 = int(rng.integers(0, full_w - width + 1)), int(rng.integers(0, full_h - height + 1))
    window = (slice(y1, y1 + height), slice(x1, x1 + width))
    corr, valid = sample["corr12"][window], sample["valid12"][window]
    centre = corr[valid].mean(axis=0) if valid.any() else np.array([full_w / 2, full_h / 2])
    x2 = int(np.clip(round(centre[0] - width / 2), 0, full_w - width))
    y2 = int(np.clip(round(centre[1] - height / 2), 0, full_h - height))
    corr = corr - np.array([x2, y2], np.float32)
    inside = np.all((corr >= 0) & (corr <= [width - 1, height - 1]), axis=-1)
    return sample | {
        "image1": sample["image1"][window],
        "labels1": sample["labels1"][window],
        "image2": sample["image2"][y2 : y2 + height, x2 : x2 + width],
        "labels2": sample["labels2"][y2 : y2 + height, x2 : x2 + width],
        "corr12": corr,
        "valid12": valid & inside,
        "origin1": np.array([x1, y1], np.float32),
    }


def _i0_crops(pair: FramePair, origin1: np.ndarray, conf: DataConfig, rng) -> list[dict]:
    """Up to `i0_per_pair` I0 renders of frame 1, square-cropped and resized to i0_size, turned
    and zoomed at random; "affine" (2×3) maps I1 crop pixels to I0 crop pixels."""
    renders = list(pair.i0_1.values())
    rng.shuffle(renders)
    crops = []
    for render in renders[: conf.i0_per_pair]:
        x0, y0, x1, y1 = render.box
        side = max(x1 - x0, y1 - y0) * (1 + conf.i0_margin)
        if side < 8:
            continue
        angle = rng.uniform(-conf.i0_rotation_degrees, conf.i0_rotation_degrees)
        zoom = conf.i0_size / side * rng.uniform(1 - conf.i0_zoom, 1 + conf.i0_zoom)
        # frame pixel → I0 pixel: turn and zoom about the box centre, which lands mid-crop
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        matrix = cv2.getRotationMatrix2D(tuple(centre), angle, zoom)
        matrix[:, 2] += conf.i0_size / 2 - centre
        shape = (conf.i0_size, conf.i0_size)
        background = tuple(int(c) for c in render.rgb[0, 0]) if not render.mask[0, 0] else 0
        mask = render.mask.astype(np.uint8)
        affine = matrix.copy()
        affine[:, 2] += matrix[:, :2] @ origin1  # I1 crop pixel p = frame pixel − origin1
        crops.append(
            {
                "rgb": cv2.warpAffine(render.rgb, matrix, shape, borderValue=background),
                "mask": cv2.warpAffine(mask, matrix, shape, flags=cv2.INTER_NEAREST) > 0,
                "object_id": render.instance_id,
                "affine": affine.astype(np.float32),
            }
        )
    return crops


def collate_pairs(samples: list[dict]) -> PairBatch:
    """Stack same-size samples into a `PairBatch`."""

    def images(key: str) -> torch.Tensor:
        stacked = np.stack([sample[key] for sample in samples])
        return torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([sample[key] for sample in samples]))

    i0 = [(b, crop) for b, sample in enumerate(samples) for crop in sample["i0"]]
    side = samples[0]["i0"][0]["rgb"].shape[0] if i0 else 1
    return PairBatch(
        image1=images("image1"),
        image2=images("image2"),
        labels1=stack("labels1"),
        labels2=stack("labels2"),
        corr12=stack("corr12").float(),
        valid12=stack("valid12"),
        object_ids=[torch.from_numpy(sample["object_ids"]) for sample in samples],
        i0=_stack_i0([c["rgb"] for _, c in i0], (0, side, side, 3)).permute(0, 3, 1, 2) / 255.0,
        i0_pair=torch.tensor([b for b, _ in i0], dtype=torch.long),
        i0_object=torch.tensor([c["object_id"] for _, c in i0], dtype=torch.long),
        i0_affine=_stack_i0([c["affine"] for _, c in i0], (0, 2, 3)),
        i0_mask=_stack_i0([c["mask"] for _, c in i0], (0, side, side)).bool(),
    )


def _stack_i0(arrays: list[np.ndarray], empty_shape: tuple[int, ...]) -> torch.Tensor:
    if not arrays:
        return torch.zeros(empty_shape)
    return torch.from_numpy(np.stack(arrays)).float()
