"""The network's runtimes: CPU inference engines on the exported graph against torch, the choice
at load, the export cache, and torch whenever an engine cannot run."""

import dataclasses
import logging
import sys

import numpy as np
import pytest
import skimage.data
import torch

from ockd_ros.features import create_extractor
from ockd_ros.features.ockd import DEFAULT_CHECKPOINT, OckdConfig, OckdExtractor
from ockd_ros.features.runtime import (
    ENGINES,
    TorchRunner,
    default_network_cache_dir,
    exported_path,
    load_engine,
)
from ockd_ros.model.checkpoint import load_checkpoint
from ockd_ros.model.network import NetworkConfig, OCKDNet
from ockd_ros.pose import Estimator, default_config

# float32 engines agree with torch to ~1e-6 on these maps (reliability in [0, ~10], descriptors
# unit vectors); a graph with sizes frozen at export, or bfloat16 arithmetic, misses by > 1e-2.
TOLERANCE = 1e-4


def _installed(engine: str) -> bool:
    try:
        __import__(engine)
    except ImportError:
        return False
    return True


engines = pytest.mark.parametrize(
    "engine",
    [
        pytest.param(e, marks=pytest.mark.skipif(not _installed(e), reason=f"{e} not installed"))
        for e in ENGINES
    ],
)


@pytest.fixture(scope="session")
def shipped():
    return load_checkpoint(DEFAULT_CHECKPOINT)


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory, shipped):
    """An XDG cache folder holding the shipped network's exported graph (exported once here)."""
    home = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home))
        installed = [engine for engine in ENGINES if _installed(engine)]
        if installed:
            load_engine(installed[0], shipped)
    return home


@pytest.fixture
def astronaut():
    return skimage.data.astronaut()  # 512×512 RGB photo


def _torch_maps(model, images):
    return TorchRunner(model, torch.device("cpu"))(images)


def _assert_maps_close(got, expected):
    for name in ("reliability", "desc_intra", "desc_inter"):
        torch.testing.assert_close(
            getattr(got, name), getattr(expected, name), atol=TOLERANCE, rtol=0, msg=name
        )


@engines
def test_engine_maps_agree_with_torch_on_a_photo_at_any_size(
    engine, shipped, cache_home, astronaut
):
    runner = load_engine(engine, shipped, cache_home / "ockd_ros" / "networks")
    photo = astronaut
    odd_crop = np.ascontiguousarray(photo[37:240, 101:402])  # 301×203: odd, unlike the export
    templates = np.stack([photo[:256, :256], photo[256:, 256:]])  # a batch of two 256² images
    for images in (photo[None], odd_crop[None], templates, templates, templates):
        _assert_maps_close(runner(images), _torch_maps(shipped, images))
    if engine == "openvino":  # the repeated batch now runs on a model compiled for its shape
        assert templates.shape in runner.fixed_shape


@engines
def test_engine_features_match_torch_features(engine, cache_home, astronaut, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    grid = {"grid_stride": 4}
    on_engine = create_extractor("ockd", {**grid, "runtime": engine})
    on_torch = create_extractor("ockd", {**grid, "runtime": "torch"})
    assert on_engine.network.name == engine and on_torch.network.name == "torch"
    got, expected = on_engine.extract(astronaut), on_torch.extract(astronaut)
    # The grid is the same; rows are sorted by score, which may swap near-equal neighbours.
    got, expected = _by_position(got), _by_position(expected)
    np.testing.assert_array_equal(got.keypoints, expected.keypoints)
    for name in ("scores", "desc_intra", "desc_inter"):
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), atol=TOLERANCE)


@pytest.mark.skipif(not _installed("openvino"), reason="openvino not installed")
def test_an_estimator_warmed_up_leaves_no_compilation_to_its_first_frame(cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    conf = dataclasses.replace(
        default_config("ockd"), features={"grid_stride": 4, "runtime": "openvino"}
    )
    estimator = Estimator(conf, [])  # no objects: the network alone
    estimator.warm_up((320, 240))
    assert (1, 240, 320, 3) in estimator.extractor.network.fixed_shape


def _by_position(features):
    return features.select(np.lexsort((features.keypoints[:, 0], features.keypoints[:, 1])))


def test_auto_takes_the_fastest_installed_engine_on_the_cpu(cache_home, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    installed = [engine for engine in ENGINES if _installed(engine)]
    extractor = create_extractor("ockd", {"device": "cpu"})  # runtime: auto
    assert extractor.network.name == (installed[0] if installed else "torch")
    # A network handed over as an object (training, tests) may change: it stays in torch.
    passed = OckdExtractor(OckdConfig(device="cpu"), model=OCKDNet(NetworkConfig()))
    assert passed.network.name == "torch"
    # So does test-time BatchNorm, which needs each image's own statistics.
    adapted = create_extractor("ockd", {"device": "cpu", "test_time_bn": True})
    assert adapted.network.name == "torch"


def test_runtime_torch_runs_torch_and_exports_nothing(tmp_path, monkeypatch, astronaut):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    extractor = create_extractor("ockd", {"runtime": "torch", "device": "cpu"})
    assert isinstance(extractor.network, TorchRunner)
    assert len(extractor.extract(astronaut)) > 0
    assert not default_network_cache_dir().exists()


def test_a_missing_engine_leaves_torch_running(tmp_path, monkeypatch, caplog, astronaut):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for engine in ENGINES:  # as on a machine without them: importing them fails
        monkeypatch.setitem(sys.modules, engine, None)
    grid = {"grid_stride": 8, "device": "cpu"}
    with caplog.at_level(logging.WARNING):
        auto = create_extractor("ockd", grid)
    assert auto.network.name == "torch" and not caplog.text  # auto: nothing to warn about
    with caplog.at_level(logging.WARNING):
        asked = create_extractor("ockd", {**grid, "runtime": "openvino"})
    assert asked.network.name == "torch"
    assert "openvino is not installed" in caplog.text and "runs in torch" in caplog.text
    expected = create_extractor("ockd", {**grid, "runtime": "torch"}).extract(astronaut)
    np.testing.assert_array_equal(asked.extract(astronaut).desc_intra, expected.desc_intra)
    assert not default_network_cache_dir().exists()


@engines
def test_an_unreadable_export_is_exported_again(engine, tmp_path, caplog):
    torch.manual_seed(0)
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 16))).eval()
    path = exported_path(model, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an onnx file")
    with caplog.at_level(logging.WARNING):
        runner = load_engine(engine, model, tmp_path)
    assert "unreadable" in caplog.text and path.stat().st_size > 1000
    images = np.random.default_rng(1).integers(0, 256, (1, 96, 80, 3), dtype=np.uint8)
    _assert_maps_close(runner(images), _torch_maps(model, images))
    # Another network (other weights) gets its own file.
    assert exported_path(OCKDNet(NetworkConfig(decoder_channels=(32, 16))), tmp_path) != path


def test_invalid_runtime_settings():
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 16)))
    for conf, message in (
        (OckdConfig(runtime="tensorrt"), "runtime must be one of"),
        (OckdConfig(runtime="openvino", device="cuda"), "runs on the CPU"),
        (OckdConfig(runtime="onnxruntime", test_time_bn=True), "statistics"),
    ):
        with pytest.raises(ValueError, match=message):
            OckdExtractor(conf, model=model)
