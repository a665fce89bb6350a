"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest

from ockd_ros.training.scenes import SceneConfig, generate


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """Three tiny generated scenes (4 frames of 96×96, three default objects each)."""
    out = tmp_path_factory.mktemp("scenes")
    conf = SceneConfig(
        meshes="ketchup,milk,cream_cheese", scenes=3, frames_per_scene=4, size=(96, 96),
        objects_per_scene=3, distractors=(0, 1), max_texture_size=256,
    )  # fmt: skip
    generate(conf, out, progress=False)
    return out
