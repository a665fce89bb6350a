"""Encoders of the keypoint network: ResNet-18 and EfficientNet-Lite0, behind one interface.

Each encoder maps a normalised image B×3×H×W to a list of feature maps at strides 2, 4, 8, 16, …
(one per kept stage), which the U-Net decoder consumes as skips. Module names follow the
published weights (torchvision's ResNet, lukemelas' EfficientNet) so that pretrained tensors
load under their own names; `ockd_ros.model.pretrained` does the loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODERS = ("resnet18", "efficientnet_lite0")

# The normalisation each encoder's published weights were trained with: (mean, std) on [0, 1].
INPUT_NORMALISATION = {
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision ImageNet statistics
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # TF Lite models take [-1, 1]
}


def build_encoder(name: str, stages: int) -> nn.Module:
    """The encoder `name` with `stages` stages after the stride-2 stem (3 stops at stride 16)."""
    if name == "resnet18":
        return ResNetEncoder(stages)
    if name == "efficientnet_lite0":
        return EfficientNetLite0(stages)
    raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")


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
        if not 1 <= stages <= len(self.STAGE_CHANNELS):
            raise ValueError(f"resnet18 has 1..4 stages, got {stages}")
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


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's 'SAME' padding, which the Lite weights were trained with.

    For a stride-2 convolution on an even input, TF pads one pixel less on the top and left than
    PyTorch's symmetric padding; with symmetric padding every feature map would sit half a pixel
    off where the weights expect it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if any(k < s for k, s in zip(self.kernel_size, self.stride, strict=True)):
            raise ValueError(f"SAME padding needs kernel ≥ stride, got {self.kernel_size}")
        # Odd kernels at stride 1 pad symmetrically in both conventions: no copy needed.
        self.symmetric = self.stride == (1, 1) and all(k % 2 for k in self.kernel_size)
        if self.symmetric:
            self.padding = tuple(k // 2 for k in self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.symmetric:
            return super().forward(x)
        pads = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            # TF pads so that the output has ⌈size / stride⌉ pixels:
            # (⌈size / stride⌉ - 1) · stride + kernel - size, never negative for kernel ≥ stride.
            # In integer arithmetic, so an export with symbolic image sizes keeps it symbolic.
            total = kernel - stride + (-size) % stride
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, 1, self.groups)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # TF's BatchNorm: epsilon 1e-3, decay 0.99 (PyTorch momentum 0.01).
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block of EfficientNet-Lite: expand 1×1, depthwise k×k, project 1×1.

    Lite variants drop squeeze-excitation and use ReLU6; names follow lukemelas' EfficientNet.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, bias=False)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = SameConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0, cut after the last block of stride 2**(stages + 1).

    Returns the outputs of the last block at each stride (2, 4, 8, 16, 32 with 16, 24, 40, 112,
    320 channels). `classifier=True` keeps the whole network with its ImageNet head (1000 logits
    from `classify`), which the tests use to check that the pretrained weights are the real ones.
    """

    # (repeats, kernel, stride, expand, out channels) of the 7 block groups, from the Lite builder.
    GROUPS = (
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    )
    STEM_CHANNELS = 32
    HEAD_CHANNELS = 1280

    def __init__(self, stages: int, classifier: bool = False):
        super().__init__()
        if not 1 <= stages <= 4:
            raise ValueError(f"efficientnet_lite0 has 1..4 stages, got {stages}")
        self._conv_stem = SameConv2d(3, self.STEM_CHANNELS, 3, 2, bias=False)
        self._bn0 = _batch_norm(self.STEM_CHANNELS)
        blocks, taps, channels = [], [], []
        in_channels = self.STEM_CHANNELS
        for repeats, kernel, group_stride, expand, out_channels in self.GROUPS:
            if group_stride == 2 and blocks:
                taps.append(len(blocks) - 1)  # the last block before a stride change
                channels.append(in_channels)
                if len(taps) == stages + 1 and not classifier:
                    break  # the deepest stride kept is complete
            for repeat in range(repeats):
                first = repeat == 0
                blocks.append(
                    MBConvBlock(
                        in_channels, out_channels, kernel, group_stride if first else 1, expand
                    )
                )
                in_channels = out_channels
        else:
            taps.append(len(blocks) - 1)
            channels.append(in_channels)
        self._blocks = nn.ModuleList(blocks)
        self.taps = tuple(taps[: stages + 1])
        self.channels = tuple(channels[: stages + 1])
        self.classifier = classifier
        if classifier:
            self._conv_head = SameConv2d(in_channels, self.HEAD_CHANNELS, 1, bias=False)
            self._bn1 = _batch_norm(self.HEAD_CHANNELS)
            self._fc = nn.Linear(self.HEAD_CHANNELS, 1000)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(image)))
        features = []
        last_tap = self.taps[-1]
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in self.taps:
                features.append(x)
            if index == last_tap and not self.classifier:
                break
        return features

    def classify(self, image: torch.Tensor) -> torch.Tensor:
        """ImageNet logits B×1000 (only with `classifier=True`)."""
        if not self.classifier:
            raise ValueError("built without the classifier head: pass classifier=True")
        x = F.relu6(self._bn0(self._conv_stem(image)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))
