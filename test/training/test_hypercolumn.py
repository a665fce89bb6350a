"""The hypercolumn projection's whitened-PCA start, on real generated frames."""

from __future__ import annotations

import pytest
import torch

from ockd_ros.model import NetworkConfig, OCKDNet
from ockd_ros.training.data import DataConfig, TrainingPairs
from ockd_ros.training.hypercolumn import (
    HypercolumnInit,
    hypercolumn_samples,
    initialise_hypercolumn,
    whitened_pca,
)

NETWORK = NetworkConfig(
    encoder="efficientnet_lite0", decoder_channels=(32, 32), descriptor_skips=(4, 8, 16)
)


@pytest.fixture(scope="module")
def frames(data_dir):
    pairs = TrainingPairs(data_dir, DataConfig(val_scenes=1), None, split="train")
    return [pairs.raw(index)["image1"] for index in range(4)]


def test_whitened_components_are_decorrelated_with_unit_variance():
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(12, 12, generator=generator)
    samples = torch.randn(5000, 12, generator=generator) @ mixing
    projection = whitened_pca(samples, 5, torch.ones(12))
    components = samples @ projection.T
    moments = components.T @ components / len(components)
    torch.testing.assert_close(moments, torch.eye(5), atol=1e-3, rtol=0)


def test_stride_weights_change_which_directions_are_kept():
    generator = torch.Generator().manual_seed(1)
    samples = torch.randn(4000, 6, generator=generator) * torch.tensor([3.0, 3, 3, 1, 1, 1])
    plain = whitened_pca(samples, 3, torch.ones(6))
    favour_last = whitened_pca(samples, 3, torch.tensor([1.0, 1, 1, 10, 10, 10]))
    assert plain[:, 3:].abs().max() < 0.1 * plain[:, :3].abs().max()
    assert favour_last[:, :3].abs().max() < 0.1 * favour_last[:, 3:].abs().max()


def test_initialisation_sets_the_intra_rows_only(frames):
    torch.manual_seed(0)
    model = OCKDNet(NETWORK)
    before = model.skip_head.weight.detach().clone()
    initialise_hypercolumn(model, frames, HypercolumnInit(method="whitened_pca", frames=4), seed=0)
    after = model.skip_head.weight.detach()
    intra = NETWORK.intra_dim
    assert not torch.allclose(after[:intra], before[:intra])
    torch.testing.assert_close(after[intra:], before[intra:])
    # The intra descriptor of the training pixels is white: unit variance along every row.
    samples = hypercolumn_samples(model, frames, 500, torch.Generator().manual_seed(0))
    variance = (samples @ after[:intra, :, 0, 0].T).pow(2).mean(dim=0)
    assert variance.min() > 0.5 and variance.max() < 2.0


def test_orthogonal_leaves_the_network_as_built(frames):
    model = OCKDNet(NETWORK)
    before = model.skip_head.weight.detach().clone()
    initialise_hypercolumn(model, frames, HypercolumnInit(), seed=0)
    torch.testing.assert_close(model.skip_head.weight.detach(), before)


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (HypercolumnInit(method="pca"), "method must be one of"),
        (HypercolumnInit(method="whitened_pca", stride_weights=(1.0, 1.0)), "2 entries for 3"),
        (HypercolumnInit(method="whitened_pca", stride_weights=(1.0, 0.0, 1.0)), "positive"),
        (HypercolumnInit(method="whitened_pca", frames=0), "must be ≥ 1"),
    ],
)
def test_bad_settings_are_refused(frames, conf, message):
    with pytest.raises(ValueError, match=message):
        initialise_hypercolumn(OCKDNet(NETWORK), frames, conf, seed=0)


def test_a_network_without_hypercolumn_is_refused(frames):
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 32)))
    with pytest.raises(ValueError, match="no hypercolumn"):
        initialise_hypercolumn(model, frames, HypercolumnInit(method="whitened_pca"), seed=0)


def test_more_directions_than_channels_are_refused():
    with pytest.raises(ValueError, match="cannot keep 8 directions of a 4-d"):
        whitened_pca(torch.randn(100, 4), 8, torch.ones(4))


def test_with_a_fixed_intra_part_only_its_rows_are_set(frames):
    network = NetworkConfig(
        encoder="efficientnet_lite0",
        decoder_channels=(32, 32),
        descriptor_skips=(4, 8, 16),
        intra_dim=96,
        intra_fixed_dim=48,
    )
    torch.manual_seed(0)
    model = OCKDNet(network)
    before = model.skip_head.weight.detach().clone()
    initialise_hypercolumn(model, frames, HypercolumnInit(method="whitened_pca", frames=4), seed=0)
    after = model.skip_head.weight.detach()
    assert not torch.allclose(after[:48], before[:48])
    torch.testing.assert_close(after[48:], before[48:])
