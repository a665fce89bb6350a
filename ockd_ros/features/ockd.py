"""The `ockd` feature backend: object-centric keypoints from the network.

Keypoints are local maxima of the reliability map above `r_thr`, at most `max_keypoints` of them;
descriptors are sampled bilinearly from the lower-resolution descriptor maps at each keypoint.
With a reference inter-object descriptor, only keypoints on that object are kept.
The forward pass runs in torch or a CPU inference engine (`runtime`, see `features/runtime.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ockd_ros.features.runtime import create_runner
from ockd_ros.features.types import Features, check_image, in_region
from ockd_ros.model.checkpoint import load_checkpoint
from ockd_ros.model.network import OCKDNet

LOG = logging.getLogger(__name__)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "ockd_default.pt"


@dataclass(frozen=True)
class OckdConfig:
    checkpoint: str | None = None  # None: the shipped default checkpoint
    device: str = "auto"
    # Where the forward pass runs: auto, torch, openvino or onnxruntime (features/runtime.py).
    runtime: str = "auto"
    r_thr: float = 1.5  # reliability threshold
    nms_radius: int = 1  # 1 → 3×3 non-maximum suppression
    max_keypoints: int = 1024
    border: int = 4  # pixels at the image border never hold keypoints
    # > 0: keypoints on a regular grid every `grid_stride` pixels instead of detector maxima
    # (r_thr, nms_radius and max_keypoints then do not apply). The descriptors match well
    # across views where the detector fires on few pixels of an object, so pose uses the grid.
    grid_stride: int = 0
    mask_threshold: float = 0.5  # cosine to the reference inter-object descriptor
    test_time_bn: bool = False  # BatchNorm with the image's own statistics (paper's trick)


class OckdExtractor:
    name = "ockd"

    def __init__(self, conf: OckdConfig | None = None, model: OCKDNet | None = None):
        self.conf = conf or OckdConfig()
        conf = self.conf
        if conf.r_thr < 0 or conf.max_keypoints < 1 or conf.nms_radius < 0 or conf.grid_stride < 0:
            raise ValueError(f"invalid extractor config: {self.conf}")
        # The torch network stays the source of truth (its weights key the template banks).
        self.model = (model or _load_model(conf.checkpoint)).eval()
        self.network = create_runner(
            self.model, conf.runtime, conf.device, conf.test_time_bn, from_checkpoint=model is None
        )
        self.device, self.dtype = self.network.device, self.network.dtype

    def extract(self, image: np.ndarray, reference_inter: np.ndarray | None = None) -> Features:
        """Features of an H×W×3 uint8 RGB image.

        reference_inter: a D2 inter-object descriptor; when given, only keypoints whose inter
        descriptor has cosine ≥ `mask_threshold` with it (i.e. on that object) are returned.
        """
        check_image(image)
        features = self.extract_batch(image[None])[0]
        if reference_inter is not None:
            features = features.select(
                object_mask(features.desc_inter, reference_inter, self.conf.mask_threshold)
            )
        return features

    @torch.inference_mode()
    def extract_batch(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
    ) -> list[Features]:
        """Features of each of B same-size H×W×3 uint8 RGB images, in one forward pass.

        masks: B H×W bool; only keypoints inside its mask are kept from each image, before
        descriptors are sampled (a template keeps a tenth of its grid: sampling the rest
        took a fifth of a bank's build)."""
        images = [check_image(image) for image in images]
        if len({image.shape for image in images}) > 1:
            raise ValueError("a batch needs images of one size")
        if masks is not None and [mask.shape for mask in masks] != [i.shape[:2] for i in images]:
            raise ValueError("masks must be one H×W mask per image")
        out = self.network(np.stack(images) if len(images) > 1 else images[0][None])
        size = (images[0].shape[1], images[0].shape[0])
        return [
            self._features(
                out.reliability[b, 0],
                out.desc_intra[b],
                out.desc_inter[b],
                size,
                None if masks is None else masks[b],
            )
            for b in range(len(images))
        ]

    def _features(
        self,
        reliability: torch.Tensor,
        desc_intra: torch.Tensor,
        desc_inter: torch.Tensor,
        size: tuple[int, int],
        mask: np.ndarray | None = None,
    ) -> Features:
        """Keypoints of one image's H×W reliability map (inside `mask`, when given), with
        descriptors sampled at them."""
        if self.conf.grid_stride > 0:
            keypoints, scores = grid_keypoints(reliability, self.conf.grid_stride, self.conf.border)
        else:
            keypoints, scores = detect_keypoints(
                reliability,
                self.conf.r_thr,
                self.conf.nms_radius,
                self.conf.max_keypoints,
                self.conf.border,
            )
        if mask is not None:
            inside = torch.from_numpy(in_region(keypoints.cpu().numpy(), mask))
            inside = inside.to(keypoints.device)
            keypoints, scores = keypoints[inside], scores[inside]
        intra = sample_descriptors(desc_intra, keypoints, size)
        inter = sample_descriptors(desc_inter, keypoints, size)
        return Features(
            keypoints.cpu().numpy(),
            scores.cpu().numpy(),
            intra.cpu().numpy(),
            inter.cpu().numpy(),
            size,
        )


def detect_keypoints(
    reliability: torch.Tensor, r_thr: float, nms_radius: int, max_keypoints: int, border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local maxima of an H×W reliability map above `r_thr`, strongest first.

    Returns keypoints K×2 float32 (x, y) and their scores K, with K ≤ `max_keypoints`.
    """
    if reliability.ndim != 2:
        raise ValueError(f"expected an H×W reliability map, got shape {tuple(reliability.shape)}")
    window = 2 * nms_radius + 1
    pooled = F.max_pool2d(reliability[None, None], window, stride=1, padding=nms_radius)[0, 0]
    keep = (reliability == pooled) & (reliability >= r_thr)
    if border > 0:
        keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = (
            False,
            False,
            False,
            False,
        )
    ys, xs = torch.nonzero(keep, as_tuple=True)
    scores = reliability[ys, xs]
    if len(scores) > max_keypoints:
        scores, order = torch.topk(scores, max_keypoints)
    else:
        scores, order = torch.sort(scores, descending=True)
    keypoints = torch.stack([xs[order], ys[order]], dim=1).float()
    return keypoints, scores


def grid_keypoints(
    reliability: torch.Tensor, stride: int, border: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `stride`-th pixel of an H×W reliability map, at least `border` px inside, strongest
    first: keypoints K×2 float32 (x, y) and their reliabilities K."""
    if reliability.ndim != 2:
        raise ValueError(f"expected an H×W reliability map, got shape {tuple(reliability.shape)}")
    height, width = reliability.shape
    # Centred in the image, so the grid is symmetric about the principal point of a centred K.
    first_x = border + ((width - 2 * border - 1) % stride) // 2
    first_y = border + ((height - 2 * border - 1) % stride) // 2
    xs = torch.arange(first_x, width - border, stride, device=reliability.device)
    ys = torch.arange(first_y, height - border, stride, device=reliability.device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    scores = reliability[grid_y, grid_x].reshape(-1)
    scores, order = torch.sort(scores, descending=True)
    keypoints = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)[order].float()
    return keypoints, scores


def sample_descriptors(
    desc_map: torch.Tensor, keypoints: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """Sample a D×h×w descriptor map bilinearly at K×2 pixel keypoints of a W×H image → K×D.

    Rows are re-normalised to unit length.

    The map covers the whole image at a lower resolution; pixel centres line up as in
    `F.interpolate(..., align_corners=False)`.
    """
    if len(keypoints) == 0:
        return desc_map.new_zeros((0, desc_map.shape[0]))
    width, height = image_size
    grid = (keypoints + 0.5) / keypoints.new_tensor([width, height]) * 2 - 1
    samples = F.grid_sample(
        desc_map[None],
        grid[None, None],
        mode="bilinear",
        align_corners=False,
        padding_mode="border",
    )
    return F.normalize(samples[0, :, 0].t(), dim=1)


def object_mask(desc_inter: np.ndarray, reference: np.ndarray, threshold: float) -> np.ndarray:
    """N bool: rows of N×D2 `desc_inter` with cosine ≥ `threshold` to the D2 `reference`."""
    reference = np.asarray(reference, dtype=np.float32).reshape(-1)
    if reference.shape[0] != desc_inter.shape[1]:
        raise ValueError(
            f"reference descriptor has {reference.shape[0]} dims, "
            f"features have {desc_inter.shape[1]}"
        )
    norm = np.linalg.norm(reference)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("reference inter-object descriptor must be finite and non-zero")
    # In torch, not numpy: numpy's BLAS keeps its own threads spinning after a product this
    # size, and they take the cores from the torch matching that follows (2x slower here).
    desc = torch.from_numpy(np.ascontiguousarray(desc_inter, dtype=np.float32))
    return (desc @ torch.from_numpy(reference / norm) >= threshold).numpy()


def _load_model(checkpoint: str | None) -> OCKDNet:
    if checkpoint is not None:
        return load_checkpoint(checkpoint)
    if DEFAULT_CHECKPOINT.is_file():
        return load_checkpoint(DEFAULT_CHECKPOINT)
    LOG.warning(
        "no trained checkpoint at %s: the network is randomly initialised and its keypoints "
        "are meaningless until one is trained (see training/)",
        DEFAULT_CHECKPOINT,
    )
    return OCKDNet()
