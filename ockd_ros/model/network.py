"""Object-centric keypoint network: an encoder (`encoders`), a U-Net decoder and two heads.

Per pixel the network predicts a keypoint reliability (detector) and a descriptor split into an
intra-object part (which point of the object) and an inter-object part (which object), each
L2-normalised. Following the speed table in docs, the decoder stops at 1/`output_stride` of the
input: reliability is upsampled bilinearly to full resolution, descriptors are sampled at keypoints.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ockd_ros.model.encoders import ENCODERS, INPUT_NORMALISATION, build_encoder


@dataclass(frozen=True)
class NetworkConfig:
    encoder: str = "resnet18"  # one of encoders.ENCODERS
    encoder_stages: int = 3  # stages after the stride-2 stem: 3 stops at stride 16
    decoder_channels: tuple[int, ...] = (128, 64)  # one entry per upsampling step from the bottom
    intra_dim: int = 64
    inter_dim: int = 32
    # Encoder strides whose features, each L2-normalised and resized to the output stride, reach
    # the descriptor head directly through a 1×1 projection (a hypercolumn): pretrained multi-scale
    # features match real frames well before any training, and the decoder adds to them.
    descriptor_skips: tuple[int, ...] = ()
    # > 0: the first `intra_fixed_dim` intra channels are the hypercolumn's projection alone (no
    # decoder), normalised apart from the rest, which the decoder learns. Cosines of the whole
    # intra descriptor are then `intra_fixed_weight` × the fixed part's + the rest × the learned
    # part's: ImageNet features that transfer to real frames beside features learned on
    # synthetic ones, each kept from washing out the other (issue 13).
    intra_fixed_dim: int = 0
    intra_fixed_weight: float = 0.5

    @property
    def output_stride(self) -> int:
        return 2 ** (self.encoder_stages + 1 - len(self.decoder_channels))

    @property
    def descriptor_dim(self) -> int:
        return self.intra_dim + self.inter_dim

    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if not 1 <= self.encoder_stages <= 4:
            raise ValueError(f"encoder_stages must be 1..4, got {self.encoder_stages}")
        if not 1 <= len(self.decoder_channels) <= self.encoder_stages + 1:
            raise ValueError(
                f"decoder_channels needs 1..{self.encoder_stages + 1} entries for "
                f"{self.encoder_stages} encoder stages, got {self.decoder_channels}"
            )
        if self.intra_dim < 1 or self.inter_dim < 1:
            raise ValueError("intra_dim and inter_dim must be positive")
        if not 0 <= self.intra_fixed_dim < self.intra_dim:
            raise ValueError(
                f"intra_fixed_dim must be in [0, intra_dim={self.intra_dim}), "
                f"got {self.intra_fixed_dim}"
            )
        if self.intra_fixed_dim and not self.descriptor_skips:
            raise ValueError("intra_fixed_dim needs descriptor_skips (the hypercolumn)")
        if not 0.0 < self.intra_fixed_weight < 1.0:
            raise ValueError(f"intra_fixed_weight must be in (0, 1), got {self.intra_fixed_weight}")
        strides = [2 ** (level + 1) for level in range(self.encoder_stages + 1)]
        unknown = [stride for stride in self.descriptor_skips if stride not in strides]
        if unknown:
            raise ValueError(f"descriptor_skips {unknown} are not encoder strides {strides}")


@dataclass
class NetworkOutput:
    """Dense predictions for a batch of B images of size H×W.

    reliability: B×1×H×W, non-negative (softplus); keypoints are its local maxima.
    desc_intra: B×D1×h×w and desc_inter: B×D2×h×w, unit length along the channel axis, at
    h = H / output_stride (rounded up).
    """

    reliability: torch.Tensor
    desc_intra: torch.Tensor
    desc_inter: torch.Tensor


class ConvBlock(nn.Module):
    """3×3 convolution, BatchNorm, ELU: monodepth2's decoder unit."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class UNetDecoder(nn.Module):
    """Per channel entry: upsample ×2, concatenate the encoder skip of that stride, convolve."""

    def __init__(self, encoder_channels: tuple[int, ...], decoder_channels: tuple[int, ...]):
        super().__init__()
        self.reduce = nn.ModuleList()
        self.fuse = nn.ModuleList()
        in_channels = encoder_channels[-1]
        # The stem (stride 2) is the shallowest skip; a last step to full resolution has none.
        skips = (*encoder_channels[-2::-1], 0)
        for out_channels, skip_channels in zip(decoder_channels, skips, strict=False):
            self.reduce.append(ConvBlock(in_channels, out_channels))
            self.fuse.append(ConvBlock(out_channels + skip_channels, out_channels))
            in_channels = out_channels
        self.out_channels = in_channels

    def forward(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        x = features[-1]
        skips = features[-2::-1]
        for step, (reduce, fuse) in enumerate(zip(self.reduce, self.fuse, strict=True)):
            skip = skips[step] if step < len(skips) else None
            size = image_size if skip is None else skip.shape[-2:]
            x = F.interpolate(reduce(x), size=size, mode="nearest")
            x = fuse(x if skip is None else torch.cat([x, skip], dim=1))
        return x


class OCKDNet(nn.Module):
    """Images B×3×H×W (RGB in [0, 1]) → `NetworkOutput`."""

    def __init__(self, conf: NetworkConfig | None = None):
        super().__init__()
        self.conf = conf or NetworkConfig()
        self.conf.validate()
        self.encoder = build_encoder(self.conf.encoder, self.conf.encoder_stages)
        self.decoder = UNetDecoder(self.encoder.channels, self.conf.decoder_channels)
        width = self.decoder.out_channels
        self.reliability_head = nn.Conv2d(width, 1, 3, 1, 1)
        fixed = self.conf.intra_fixed_dim
        self.descriptor_head = nn.Conv2d(width, self.conf.descriptor_dim - fixed, 3, 1, 1)
        self.skip_levels = tuple(int(math.log2(s)) - 1 for s in self.conf.descriptor_skips)
        if self.skip_levels:
            skip_channels = sum(self.encoder.channels[level] for level in self.skip_levels)
            self.skip_head = nn.Conv2d(skip_channels, self.conf.descriptor_dim, 1, bias=False)
            # At initialisation the descriptor is a random orthogonal projection of the
            # hypercolumn, which keeps its cosines; the decoder's share starts at zero and grows.
            nn.init.orthogonal_(self.skip_head.weight)
            nn.init.zeros_(self.descriptor_head.weight)
            nn.init.zeros_(self.descriptor_head.bias)
        mean, std = INPUT_NORMALISATION[self.conf.encoder]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> NetworkOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images B×3×H×W, got shape {tuple(image.shape)}")
        features = self._encode(image)
        x = self.decoder(features, image.shape[-2:])
        reliability = F.softplus(
            F.interpolate(
                self.reliability_head(x),
                size=image.shape[-2:],
                mode="bilinear",
                align_corners=False,
            )
        )
        desc = self.descriptor_head(x)
        fixed = self.conf.intra_fixed_dim
        if self.skip_levels:
            projected = self.skip_head(self._hypercolumn(features, x.shape[-2:]))
            desc = torch.cat([projected[:, :fixed], desc + projected[:, fixed:]], dim=1)
        intra, inter = desc.split([self.conf.intra_dim, self.conf.inter_dim], dim=1)
        return NetworkOutput(reliability, self._normalise_intra(intra), F.normalize(inter, dim=1))

    def _normalise_intra(self, intra: torch.Tensor) -> torch.Tensor:
        """Unit B×D1×H×W intra descriptors; with a fixed part, each part unit length first and
        weighted so that cosines add as `intra_fixed_weight` says."""
        fixed = self.conf.intra_fixed_dim
        if not fixed:
            return F.normalize(intra, dim=1)
        weight = self.conf.intra_fixed_weight
        imagenet, learned = intra.split([fixed, self.conf.intra_dim - fixed], dim=1)
        return torch.cat(
            [
                math.sqrt(weight) * F.normalize(imagenet, dim=1),
                math.sqrt(1 - weight) * F.normalize(learned, dim=1),
            ],
            dim=1,
        )

    def hypercolumn(self, image: torch.Tensor) -> torch.Tensor:
        """B×C×h×w: the encoder features that `descriptor_skips` names, each unit length per
        pixel, at the output stride (h = ⌈H / stride⌉, as the descriptors) of B×3×H×W images in
        [0, 1]. What the skip projection sees, without running the decoder."""
        if not self.skip_levels:
            raise ValueError("the network has no hypercolumn (descriptor_skips is empty)")
        stride = self.conf.output_stride
        size = (math.ceil(image.shape[-2] / stride), math.ceil(image.shape[-1] / stride))
        return self._hypercolumn(self._encode(image), size)

    def _encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's feature maps, with the input normalisation its weights expect."""
        return self.encoder((image - self.mean) / self.std)

    def _hypercolumn(self, features: list[torch.Tensor], size: torch.Size) -> torch.Tensor:
        """The skipped encoder features, each unit length per pixel, at the output size."""
        columns = []
        for level in self.skip_levels:
            feature = features[level]
            # Decided by stride rather than by comparing shapes, so that an export with symbolic
            # image sizes needs no guard: every level has ⌈H / its stride⌉ rows, as the output.
            if 2 ** (level + 1) != self.conf.output_stride:
                feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
            columns.append(F.normalize(feature, dim=1))
        return torch.cat(columns, dim=1)

    def load_torchvision_encoder(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise a ResNet-18 encoder from a torchvision state dict a user has on disk."""
        if self.conf.encoder != "resnet18":
            raise ValueError(f"torchvision ResNet-18 weights do not fit a {self.conf.encoder}")
        own = self.encoder.state_dict()
        missing = [key for key in own if key not in state_dict]
        if missing:
            raise ValueError(f"not a ResNet-18 state dict: missing {missing[:5]}")
        self.encoder.load_state_dict({key: state_dict[key] for key in own})


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Normalise with the current batch's statistics without touching the running statistics.

    The paper's test-time trick for domain shift: BatchNorm layers use the statistics of the image
    being processed. Running mean and variance stay exactly as trained.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        # training=True selects batch statistics; track_running_stats=False keeps the buffers out.
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved, strict=True):
            m.training, m.track_running_stats = training, track
