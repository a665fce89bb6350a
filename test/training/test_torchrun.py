"""`ockd-train` under torchrun: two CPU processes (gloo) train a few steps on generated scenes.

What must hold for DistributedDataParallel, and what can be checked exactly:

- DDP averages the ranks' gradients, but BatchNorm normalises each rank's batch on its own, so a
  step over 2 × b samples on two ranks is not a single-process step over the 2b samples. What
  does hold exactly is this: when every rank trains on the same batch with the same random draws
  (queries, augmentation), the averaged gradient is that batch's gradient, and the run must
  reproduce a single-process run step for step. A training set of one pair gives every rank the
  same batch: DistributedSampler pads the single index to both ranks, and the seeds do not
  depend on the rank. Equal gradients leave the all-reduce itself unobserved; what this pins is
  everything around it: process group, sampler, seeding, rank-0 logs and checkpoints.
- A batch that cannot be trained on, on one rank only, is skipped by every rank; otherwise the
  other rank waits in backward for gradients that never come, or pairs them with those of
  another step. Here one frame shows no object (background labels, no I0 render): its pair has
  no query, and its rank runs the network once where the other runs it twice, so forward must
  hold no collective either.

Each run is a subprocess with a timeout, so a hung collective fails the test instead of the
session.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from ockd_ros.model.checkpoint import read_checkpoint

TIMEOUT = 120  # seconds per run; each takes about 10 s here
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TRAIN = ["-m", "ockd_ros.training.train"]

SETTINGS = {
    "steps": 3,
    "batch_size": 1,
    "lr": 1.0e-3,
    "workers": 0,
    "threads": 1,
    "log_every": 1,
    "checkpoint_every": 100,  # last.pt is written at the last step
    "validate_every": 100,
    "validation_pairs": 1,
    "network": {"decoder_channels": [32, 32]},
}


def _train(launcher: list[str], data: Path, out: Path, settings: dict) -> str:
    """Run ockd-train to the end; its combined output. Fails on an error or a hang."""
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump(settings))
    command = [*launcher, *TRAIN, "--config", str(config), "--data", str(data), "--out", str(out)]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.terminate()  # torchrun ends its ranks on SIGTERM (they sit in their own sessions)
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"no end after {TIMEOUT} s (a hung collective?):\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]
    return output


def _log(run: Path) -> list[dict[str, float]]:
    with (run / "log.csv").open() as stream:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(stream)]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.pt")["state_dict"]


def _skipped_steps(output: str, reason: str) -> list[int]:
    return [int(step) for step in re.findall(rf"step (\d+): {reason}, batch skipped", output)]


def _hide_objects(scene: Path, frame: int) -> None:
    """Frame `frame` of `scene` as if no object were in view: background labels, no I0 render."""
    labels = scene / "labels" / f"{frame:06d}.png"
    cv2.imwrite(str(labels), np.zeros_like(cv2.imread(str(labels), cv2.IMREAD_UNCHANGED)))
    meta = json.loads((scene / "scene.json").read_text())
    meta["frames"][frame] |= {"visible": [], "i0": []}
    (scene / "scene.json").write_text(json.dumps(meta))


def test_two_ranks_on_the_same_batch_reproduce_one_process(data_dir, tmp_path):
    # Scene 0 trains (one pair: frames 0 and 3), scenes 1 and 2 validate.
    settings = SETTINGS | {"data": {"val_scenes": 2, "gap": 3, "val_gap": 3, "i0_size": 48}}
    _train([sys.executable], data_dir, tmp_path / "single", settings)
    _train(TORCHRUN, data_dir, tmp_path / "ddp", settings)

    single, ddp = _log(tmp_path / "single"), _log(tmp_path / "ddp")
    assert [row["step"] for row in ddp] == [1, 2, 3]
    for one, two in zip(single, ddp, strict=True):
        assert one.keys() == two.keys()
        for term in one:
            assert two[term] == pytest.approx(one[term], rel=1e-5, abs=1e-7), term
    expected, trained = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    assert trained.keys() == expected.keys()
    for name, value in trained.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def test_a_batch_unusable_on_one_rank_is_skipped_by_both(data_dir, tmp_path):
    data = tmp_path / "scenes"
    shutil.copytree(data_dir, data)
    _hide_objects(sorted(data.glob("scene_*"))[0], frame=0)
    # Scenes 0 and 1 train: six pairs, three per rank an epoch; the pair from frame 0 of scene 0
    # has nothing to learn from. Scene 2 validates.
    settings = SETTINGS | {"steps": 4, "data": {"val_scenes": 1, "gap": 1, "i0_size": 48}}
    output = _train(TORCHRUN, data, tmp_path / "ddp", settings)

    # The rank holding that pair says why; the other one skips the same step with it.
    own = _skipped_steps(output, "no valid correspondences on any object")
    other = _skipped_steps(output, "another rank's batch is unusable")
    assert own and own == other, output[-3000:]
    assert [row["step"] for row in _log(tmp_path / "ddp")] == [1, 2, 3, 4]
    assert read_checkpoint(tmp_path / "ddp" / "last.pt")["step"] == 4
