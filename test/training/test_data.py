"""Training samples: the I0 crops' pixel mapping and the template terms it feeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ockd_ros.model import NetworkConfig, OCKDNet
from ockd_ros.training.data import DataConfig, TrainingPairs, collate_pairs
from ockd_ros.training.objective import LossConfig, compute_losses

TURNED = DataConfig(val_scenes=1, i0_size=64, crop=(80, 72), i0_rotation_degrees=180, i0_zoom=0.3)


def test_i0_affine_maps_crop_pixels_onto_the_turned_and_zoomed_render(data_dir):
    samples = TrainingPairs(data_dir, TURNED, None, split="train", seed=1)
    checked = 0
    for index in range(len(samples)):
        pair = samples.pairs[samples.indices[index]]
        sample = samples[index]
        for crop in sample["i0"]:
            render = pair.i0_1[crop["object_id"]]
            # object pixels of the full frame, as I1 crop coordinates, through the affine
            ys, xs = np.nonzero(render.mask)
            crop_xy = np.stack([xs, ys], 1) - sample["origin1"]
            i0_xy = crop_xy @ crop["affine"][:, :2].T + crop["affine"][:, 2]
            inside = np.all((i0_xy >= 1) & (i0_xy <= TURNED.i0_size - 2), axis=1)
            px, py = np.round(i0_xy[inside]).astype(int).T
            # the mapped pixels land on the object in the warped mask, almost all of them
            assert crop["mask"][py, px].mean() > 0.9
            checked += 1
    assert checked > 0


def test_template_term_appears_only_when_asked_and_has_a_gradient(data_dir):
    torch.manual_seed(0)
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 32)))
    samples = TrainingPairs(data_dir, TURNED, None, split="train")
    batch = collate_pairs([samples[0], samples[1]])
    paper = compute_losses(model, batch, LossConfig(), torch.Generator().manual_seed(0))
    assert "template" not in paper
    conf = LossConfig(template_negatives=32)
    terms = compute_losses(model, batch, conf, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["template"]) and terms["template"] > 0
    terms["template"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_inter_term_anchored_on_i0_follows_the_renders(data_dir):
    torch.manual_seed(0)
    model = OCKDNet(NetworkConfig(decoder_channels=(32, 32)))
    samples = TrainingPairs(data_dir, TURNED, None, split="train")
    batch = collate_pairs([samples[0], samples[1]])
    conf = LossConfig(template_inter=True)
    assert "template_inter" not in compute_losses(model, batch, LossConfig(), torch.Generator())
    terms = compute_losses(model, batch, conf, torch.Generator().manual_seed(0))
    assert torch.isfinite(terms["template_inter"]) and terms["template_inter"] > 0
    terms["template_inter"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # The anchor is the I0 descriptor: other renders give another loss.
    batch.i0 = batch.i0.flip(-1)
    with torch.no_grad():
        flipped = compute_losses(model, batch, conf, torch.Generator().manual_seed(0))
    assert not torch.isclose(flipped["template_inter"], terms["template_inter"])


def test_max_gap_below_gap_is_refused(data_dir):
    with pytest.raises(ValueError, match="gap ≤ max_gap"):
        TrainingPairs(data_dir, DataConfig(val_scenes=1, gap=2, max_gap=1), None, split="train")
