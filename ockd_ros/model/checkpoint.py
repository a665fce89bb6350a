"""Checkpoint files: weights, the network config, a format version and training provenance.

A checkpoint is a `torch.save` dictionary readable with `weights_only=True` (no pickled code):
    format: "ockd_ros.checkpoint", format_version: int, network: NetworkConfig as a dict,
    state_dict: weights (fp16 allowed), provenance: free-form dict (command, config, data seed...).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ockd_ros.config import merge_config
from ockd_ros.model.network import NetworkConfig, OCKDNet

FORMAT = "ockd_ros.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used; the message names the file and the reason."""


def save_checkpoint(
    model: OCKDNet,
    path: str | Path,
    provenance: dict[str, Any] | None = None,
    half: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` to `path` atomically (a crash never leaves a truncated file behind).

    half: store floating-point weights as fp16 (the shipped default, half the size).
    extra: additional entries (optimizer state, step) for resumable training checkpoints.
    """
    path = Path(path)
    state = {
        key: value.half() if half and value.is_floating_point() else value
        for key, value in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": dataclasses.asdict(model.conf),
        "state_dict": state,
        "provenance": provenance or {},
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(payload, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dictionary, validated for format and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not a torch file): {reason}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ockd_ros checkpoint (no format {FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}; this ockd_ros reads up to "
            f"{FORMAT_VERSION}: update the package"
        )
    for key in ("network", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks the {key!r} entry")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> OCKDNet:
    """Build the network a checkpoint describes and load its weights (as float32)."""
    payload = read_checkpoint(path)
    try:
        conf = merge_config(NetworkConfig(), _upgrade_network(payload["network"]))
        model = OCKDNet(conf)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an invalid network config: {error}") from error
    state = {
        key: value.float() if value.is_floating_point() else value
        for key, value in payload["state_dict"].items()
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(f"{path} does not match its network config: {error}") from error
    return model.to(device).eval()


def _upgrade_network(network: dict[str, Any]) -> dict[str, Any]:
    """A network config as this version names it; checkpoints before the encoder choice had a
    `reliability_offset` that was always 0 and now is gone (a non-zero one stays an error)."""
    network = dict(network)
    if network.get("reliability_offset") == 0:
        del network["reliability_offset"]
    return network
