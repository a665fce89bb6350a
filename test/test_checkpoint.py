import pytest
import torch

from ockd_ros.model import CheckpointError, NetworkConfig, OCKDNet, load_checkpoint, save_checkpoint
from ockd_ros.model.checkpoint import FORMAT_VERSION, read_checkpoint

SMALL = NetworkConfig(decoder_channels=(32, 16))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return OCKDNet(SMALL).eval()


@pytest.mark.parametrize("half", [False, True])
def test_round_trip_keeps_config_outputs_and_provenance(tmp_path, model, half):
    path = save_checkpoint(model, tmp_path / "m.pt", provenance={"command": "test"}, half=half)
    loaded = load_checkpoint(path)
    assert loaded.conf == SMALL
    assert read_checkpoint(path)["provenance"] == {"command": "test"}
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(image), loaded(image)
    tolerance = 2e-2 if half else 1e-6
    torch.testing.assert_close(actual.reliability, expected.reliability, atol=tolerance, rtol=0)


def test_a_network_with_a_fixed_intra_part_round_trips(tmp_path):
    conf = NetworkConfig(
        decoder_channels=(32, 16), descriptor_skips=(4, 8), intra_dim=96, intra_fixed_dim=48
    )
    torch.manual_seed(0)
    split = OCKDNet(conf).eval()
    loaded = load_checkpoint(save_checkpoint(split, tmp_path / "split.pt"))
    assert loaded.conf == conf
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image).desc_intra, split(image).desc_intra)


def test_half_precision_file_is_smaller(tmp_path, model):
    full = save_checkpoint(model, tmp_path / "full.pt").stat().st_size
    half = save_checkpoint(model, tmp_path / "half.pt", half=True).stat().st_size
    assert half < 0.6 * full


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an ockd_ros checkpoint"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version"):
        load_checkpoint(path)


def test_weights_that_do_not_match_the_config(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["network"]["decoder_channels"] = [64, 32]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path)


def test_unknown_config_key(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["network"]["mystery"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid network config"):
        load_checkpoint(path)


def _as_before_the_encoder_choice(path):
    """Rewrite a ResNet-18 checkpoint's network entry as checkpoints were written before the
    encoder became a choice (the shipped weights until 2026-11-30): no `encoder`, no
    `descriptor_skips`, and a `reliability_offset` that was always 0."""
    payload = torch.load(path, weights_only=True)
    network = payload["network"]
    del network["encoder"], network["descriptor_skips"]
    network["reliability_offset"] = 0.0
    torch.save(payload, path)
    return payload


def test_a_checkpoint_from_before_the_encoder_choice_loads_with_the_same_output(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "old.pt")
    _as_before_the_encoder_choice(path)
    loaded = load_checkpoint(path)
    assert loaded.conf.encoder == "resnet18"
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = model(image), loaded(image)
    torch.testing.assert_close(actual.reliability, expected.reliability, atol=1e-6, rtol=0)
    torch.testing.assert_close(actual.desc_intra, expected.desc_intra, atol=1e-6, rtol=0)


def test_an_old_checkpoint_with_an_offset_is_refused(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "old.pt")
    payload = _as_before_the_encoder_choice(path)
    payload["network"]["reliability_offset"] = 0.5  # this version cannot honour it
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="invalid network config"):
        load_checkpoint(path)
