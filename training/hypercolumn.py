"""The starting projection of the encoder's hypercolumn into the intra-object descriptor.

`OCKDNet` sends its pretrained multi-scale features straight to the descriptor through a 1×1
projection (`descriptor_skips`). A random orthogonal projection keeps 64 random directions of
the 176-d hypercolumn. The principal directions of the hypercolumn over the training frames,
each scaled to unit variance (a whitened PCA), keep the directions the features vary along and
weigh rare ones as much as common ones. Before any training this alone raised the real-frame
MMA@5 of the validation pairs from 0.409 to 0.44–0.47 (issue 13).

No labels are used: only the training frames' pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ockd_ros.model.network import OCKDNet

METHODS = ("orthogonal", "whitened_pca")


@dataclass(frozen=True)
class HypercolumnInit:
    method: str = "orthogonal"  # 'orthogonal' (the network's own) or 'whitened_pca'
    frames: int = 120  # training frames whose pixels give the statistics
    pixels_per_frame: int = 2000
    # Per entry of `descriptor_skips`, how much its unit-length features count (() = all 1).
    stride_weights: tuple[float, ...] = ()

    def validate(self, skips: int) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"hypercolumn_init.method must be one of {METHODS}, got {self.method!r}"
            )
        if self.frames < 1 or self.pixels_per_frame < 1:
            raise ValueError("hypercolumn_init.frames and pixels_per_frame must be ≥ 1")
        if self.stride_weights and len(self.stride_weights) != skips:
            raise ValueError(
                f"hypercolumn_init.stride_weights has {len(self.stride_weights)} entries for "
                f"{skips} descriptor_skips"
            )
        if any(weight <= 0 for weight in self.stride_weights):
            raise ValueError("hypercolumn_init.stride_weights must be positive")


def hypercolumn_samples(
    model: OCKDNet, images: list[np.ndarray], per_image: int, generator: torch.Generator
) -> torch.Tensor:
    """S×C hypercolumns at random output pixels of H×W×3 uint8 RGB `images`.

    The network runs in eval mode: in train mode every forward pass would overwrite the
    encoder's BatchNorm running statistics (ImageNet's) with those of one synthetic frame.
    """
    samples = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for image in images:
                batch = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
                columns = model.hypercolumn(batch)[0].flatten(1).T
                pick = torch.randperm(len(columns), generator=generator)[:per_image]
                samples.append(columns[pick])
    finally:
        model.train(was_training)
    return torch.cat(samples)


def whitened_pca(samples: torch.Tensor, dims: int, weights: torch.Tensor) -> torch.Tensor:
    """dims×C projection: the `dims` strongest eigenvectors of the second-moment matrix of
    S×C `samples` (each channel scaled by `weights`), divided by the square root of their
    eigenvalues, with the channel weights folded in."""
    if dims > samples.shape[1]:
        raise ValueError(f"cannot keep {dims} directions of a {samples.shape[1]}-d hypercolumn")
    weighted = samples.double() * weights.double()
    moments = weighted.T @ weighted / len(weighted)
    eigenvalues, eigenvectors = torch.linalg.eigh(moments)  # ascending
    eigenvalues = eigenvalues.flip(0)[:dims].clamp_min(1e-12)
    eigenvectors = eigenvectors.flip(1)[:, :dims]
    return ((eigenvectors / eigenvalues.sqrt()).T * weights.double()).float()


def initialise_hypercolumn(
    model: OCKDNet, images: list[np.ndarray], conf: HypercolumnInit, seed: int
) -> None:
    """Set the intra-object rows of `model.skip_head` as `conf` asks: the fixed part's rows when
    the network has one (`intra_fixed_dim`), else all intra rows; the others keep their random
    orthogonal start."""
    conf.validate(len(model.skip_levels))
    if conf.method == "orthogonal":
        return
    generator = torch.Generator().manual_seed(seed)
    samples = hypercolumn_samples(model, images, conf.pixels_per_frame, generator)
    channels = [model.encoder.channels[level] for level in model.skip_levels]
    stride_weights = conf.stride_weights or (1.0,) * len(channels)
    weights = torch.cat(
        [
            torch.full((count,), float(weight))
            for count, weight in zip(channels, stride_weights, strict=True)
        ]
    )
    rows = model.conf.intra_fixed_dim or model.conf.intra_dim
    projection = whitened_pca(samples, rows, weights)
    with torch.no_grad():
        model.skip_head.weight[:rows, :, 0, 0] = projection
