"""Shipping a checkpoint: the record names no path of the machine that trained it."""

import pytest
import yaml

from ockd_ros.model import NetworkConfig, OCKDNet, save_checkpoint
from ockd_ros.training.export import main as export


def _trained(path, command):
    model = OCKDNet(NetworkConfig(decoder_channels=(16, 8)))
    provenance = {"command": command, "data": "data/ppdr_cpu", "config": {"init": None}}
    return save_checkpoint(model, path, provenance=provenance)


def test_paths_inside_the_repository_become_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # export runs from the repository root
    command = f"{tmp_path}/training/train.py --config training/configs/cpu.yaml"
    checkpoint = _trained(tmp_path / "runs" / "final.pt", command)
    out = export(checkpoint, tmp_path / "shipped.pt", None, ["ockd-gen --seed 0"])
    record = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert record["trained_by"] == "training/train.py --config training/configs/cpu.yaml"
    assert record["data_generation"] == ["ockd-gen --seed 0"]


def test_a_record_with_a_path_outside_the_repository_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = _trained(tmp_path / "final.pt", "ockd-train --data /scratch/ppdr --out runs/x")
    with pytest.raises(ValueError, match="/scratch/ppdr"):
        export(checkpoint, tmp_path / "shipped.pt", None, [])
    assert not (tmp_path / "shipped.pt").exists()
