import math

import pytest
import torch
import torch.nn.functional as F

from ockd_ros.training.losses import (
    info_nce,
    repeatability_loss,
    uncertainty_weighted,
    warp_to_first,
)


def test_warp_with_identity_correspondence_is_identity():
    image = torch.rand(1, 2, 12, 16)
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    corr = torch.stack([xs, ys], dim=-1)[None]
    torch.testing.assert_close(warp_to_first(image, corr), image, atol=1e-5, rtol=0)


def test_warp_follows_a_shift():
    image = torch.rand(1, 1, 10, 20)
    ys, xs = torch.meshgrid(torch.arange(10.0), torch.arange(20.0), indexing="ij")
    corr = torch.stack([xs + 3, ys], dim=-1)[None]  # pixel x in I1 is pixel x + 3 in I2
    warped = warp_to_first(image, corr)
    torch.testing.assert_close(warped[..., :-3], image[..., 3:], atol=1e-5, rtol=0)


def test_repeatability_is_zero_for_identical_maps_and_grows_with_difference():
    reliability = torch.rand(2, 1, 32, 32) * 3
    valid = torch.ones(2, 32, 32, dtype=torch.bool)
    same = repeatability_loss(reliability, reliability.clone(), valid)
    assert same.item() == pytest.approx(0.0, abs=1e-5)
    small = repeatability_loss(reliability, reliability + 0.1 * torch.rand_like(reliability), valid)
    large = repeatability_loss(reliability, torch.rand_like(reliability) * 3, valid)
    assert 0 < small < large


def test_repeatability_ignores_invalid_pixels_and_needs_valid_windows():
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    b[..., :16, :] = a[..., :16, :]  # top windows agree, bottom ones do not
    valid = torch.zeros(1, 32, 32, dtype=torch.bool)
    valid[:, :16] = True
    assert repeatability_loss(a, b, valid).item() == pytest.approx(0.0, abs=1e-5)
    assert repeatability_loss(a, b, torch.zeros_like(valid)) is None


def test_info_nce_prefers_matching_descriptors():
    torch.manual_seed(0)
    query = F.normalize(torch.randn(8, 16), dim=1)
    negatives = F.normalize(torch.randn(8, 32, 16), dim=2)
    all_valid = torch.ones(8, 32, dtype=torch.bool)
    one = torch.ones(8, 1, dtype=torch.bool)
    perfect = info_nce(query, query[:, None], one, negatives, all_valid, 0.07)
    shuffled = info_nce(query, query[torch.randperm(8)][:, None], one, negatives, all_valid, 0.07)
    assert perfect.mean() < shuffled.mean()
    assert torch.all(perfect >= 0)


def test_info_nce_matches_the_formula_and_masks():
    query = torch.tensor([[1.0, 0.0]])
    positives = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    negatives = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    tau = 0.5
    loss = info_nce(query, positives, torch.tensor([[True, False]]), negatives,
                    torch.tensor([[True, False]]), tau)  # fmt: skip
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(0)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_uncertainty_weighting_matches_the_formula():
    losses = torch.tensor([0.5, 2.0])
    reliability = torch.tensor([2.0, 0.25])
    expected = ((2.0 * 0.5 - math.log(2.0)) + (0.25 * 2.0 - math.log(0.25))) / 2
    assert uncertainty_weighted(losses, reliability).item() == pytest.approx(expected)


def test_uncertainty_weighting_is_minimised_at_inverse_loss():
    losses = torch.tensor([0.4])
    reliability = torch.tensor([1.0], requires_grad=True)
    optimiser = torch.optim.SGD([reliability], lr=0.05)
    for _ in range(2000):
        optimiser.zero_grad()
        uncertainty_weighted(losses, reliability).backward()
        optimiser.step()
    assert reliability.item() == pytest.approx(1 / 0.4, rel=1e-2)
