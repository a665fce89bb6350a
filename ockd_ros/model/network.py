"""Object-centric keypoint network: a ResNet-18-style encoder and a U-Net decoder with two heads.

Per pixel the network predicts a keypoint reliability (detector) and a descriptor split into an
intra-object part (which point of the object) and an inter-object part (which object), each
L2-normalised. Following the speed table in docs, the decoder stops at 1/`output_stride` of the
input: reliability is upsampled bilinearly to full resolution, descriptors are sampled at keypoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ImageNet statistics: the encoder follows torchvision's ResNet, whose weights a user may load.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class NetworkConfig:
    encoder_stages: int = 3  # ResNet-18 stages kept: 3 stops at layer3 (stride 16)
    decoder_channels: tuple[int, ...] = (128, 64)  # one entry per upsampling step from the bottom
    intra_dim: int = 64
    inter_dim: int = 32
    reliability_offset: float = 0.0  # added before softplus; training may shift the initial level

    @property
    def output_stride(self) -> int:
        return 2 ** (self.encoder_stages + 1 - len(self.decoder_channels))

    @property
    def descriptor_dim(self) -> int:
        return self.intra_dim + self.inter_dim

    def validate(self) -> None:
        if not 1 <= self.encoder_stages <= 4:
            raise ValueError(f"encoder_stages must be 1..4, got {self.encoder_stages}")
        if not 1 <= len(self.decoder_channels) <= self.encoder_stages + 1:
            raise ValueError(
                f"decoder_channels needs 1..{self.encoder_stages + 1} entries for "
                f"{self.encoder_stages} encoder stages, got {self.decoder_channels}"
            )
        if self.intra_dim < 1 or self.inter_dim < 1:
            raise ValueError("intra_dim and inter_dim must be positive")


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


class BasicBlock(nn.Module):
    """The ResNet-18 residual block; names follow torchvision so its weights load unchanged."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet-18 up to `stages` residual stages; returns the features at strides 2, 4, 8, 16, ..."""

    STAGE_CHANNELS = (64, 128, 256, 512)

    def __init__(self, stages: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_channels = 64
        for index, channels in enumerate(self.STAGE_CHANNELS[:stages]):
            stride = 1 if index == 0 else 2
            layer = nn.Sequential(
                BasicBlock(in_channels, channels, stride), BasicBlock(channels, channels, 1)
            )
            self.add_module(f"layer{index + 1}", layer)
            in_channels = channels
        self.stages = stages
        self.channels = (64, *self.STAGE_CHANNELS[:stages])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(image)))
        features = [x]
        x = self.maxpool(x)
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
            features.append(x)
        return features


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
        self.encoder = ResNetEncoder(self.conf.encoder_stages)
        self.decoder = UNetDecoder(self.encoder.channels, self.conf.decoder_channels)
        width = self.decoder.out_channels
        self.reliability_head = nn.Conv2d(width, 1, 3, 1, 1)
        self.descriptor_head = nn.Conv2d(width, self.conf.descriptor_dim, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGE_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> NetworkOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected images B×3×H×W, got shape {tuple(image.shape)}")
        features = self.encoder((image - self.mean) / self.std)
        x = self.decoder(features, image.shape[-2:])
        logits = self.reliability_head(x) + self.conf.reliability_offset
        reliability = F.softplus(
            F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
        )
        desc = self.descriptor_head(x)
        intra, inter = desc.split([self.conf.intra_dim, self.conf.inter_dim], dim=1)
        return NetworkOutput(reliability, F.normalize(intra, dim=1), F.normalize(inter, dim=1))

    def load_torchvision_encoder(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise the encoder from a torchvision ResNet-18 state dict a user has on disk."""
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
