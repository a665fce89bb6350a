"""Shipping a checkpoint: the record names no path of the machine that trained it."""

import dataclasses

import pytest
import yaml

from ockd_ros.config import load_config
from ockd_ros.model import NetworkConfig, OCKDNet, save_checkpoint
from ockd_ros.training.export import main as export
from ockd_ros.training.train import TrainConfig


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


def test_a_config_copy_in_the_repository_replaces_the_recorded_path_only_if_identical(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "training" / "configs" / "run.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("steps: 7\n")
    model = OCKDNet(NetworkConfig(decoder_channels=(16, 8)))
    recorded = dataclasses.asdict(load_config(TrainConfig(), config))
    provenance = {
        "command": "ockd-train --config /elsewhere/run.yaml --out runs/x",
        "data": "data/ppdr_cpu",
        "config": recorded,
    }
    checkpoint = save_checkpoint(model, tmp_path / "final.pt", provenance=provenance)
    out = export(checkpoint, tmp_path / "shipped.pt", None, [], config=config)
    record = yaml.safe_load(out.with_suffix(".yaml").read_text())
    assert record["trained_by"] == "ockd-train --config training/configs/run.yaml --out runs/x"

    config.write_text("steps: 8\n")
    with pytest.raises(ValueError, match="does not give the config the run recorded"):
        export(checkpoint, tmp_path / "shipped2.pt", None, [], config=config)
