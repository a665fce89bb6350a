"""The paper's training losses (equations 1–10), on dense network outputs and sampled queries.

Notation: a batch of B pairs (I1, I2) of H×W images; the network gives per image a reliability
map B×1×H×W and descriptor maps at 1/s resolution. Queries are pixels of I1 on objects; their
descriptors, and those of positives and negatives, are sampled bilinearly at pixel coordinates.

Reliability is the inverse uncertainty r = σ⁻¹: a query's contrastive loss L is weighted as
r·L − log r (eq. 7/9), minimised at r = 1/L, so reliability grows where descriptors are
distinctive and the detector threshold (1.5) keeps points whose expected loss is below 2/3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def warp_to_first(map2: torch.Tensor, corr12: torch.Tensor) -> torch.Tensor:
    """Sample a B×C×H2×W2 map of I2 at the correspondences of I1's pixels.

    corr12: B×H×W×2 pixel coordinates (x, y) in I2 of each pixel of I1. Returns B×C×H×W.
    """
    height, width = map2.shape[-2:]
    scale = corr12.new_tensor([width, height])
    grid = (corr12 + 0.5) / scale * 2 - 1
    return F.grid_sample(map2, grid, mode="bilinear", align_corners=False, padding_mode="border")


def repeatability_loss(
    reliability1: torch.Tensor,
    reliability2_warped: torch.Tensor,
    valid: torch.Tensor,
    patch: int = 16,
    alpha: float = 0.85,
    min_valid_fraction: float = 0.5,
) -> torch.Tensor | None:
    """α/2 (1 − SSIM) + (1 − α) L1 between the detector map of I1 and I2's warped onto I1 (eq. 1–3).

    Computed over non-overlapping patch×patch windows; a window counts when at least
    `min_valid_fraction` of its pixels have a valid correspondence. Inputs B×1×H×W, valid B×H×W.
    Returns a scalar, or None when no window is valid.
    """
    weight = valid[:, None].float()
    a, b = reliability1 * weight, reliability2_warped * weight
    count = F.avg_pool2d(weight, patch, patch)
    usable = count >= min_valid_fraction
    if not usable.any():
        return None
    norm = count.clamp_min(1e-6)
    mean_a, mean_b = F.avg_pool2d(a, patch, patch) / norm, F.avg_pool2d(b, patch, patch) / norm
    var_a = F.avg_pool2d(a * a, patch, patch) / norm - mean_a**2
    var_b = F.avg_pool2d(b * b, patch, patch) / norm - mean_b**2
    cov = F.avg_pool2d(a * b, patch, patch) / norm - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2  # the usual SSIM constants for signals of unit range
    ssim = ((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    l1 = F.avg_pool2d((a - b).abs(), patch, patch) / norm
    per_window = alpha / 2 * (1 - ssim) + (1 - alpha) * l1
    return per_window[usable].mean()


def info_nce(
    query: torch.Tensor,
    positives: torch.Tensor,
    positive_valid: torch.Tensor,
    negatives: torch.Tensor,
    negative_valid: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """InfoNCE with several positives per query: −log Σ₊ e^{s/τ} / (Σ₊ e^{s/τ} + Σ₋ e^{s/τ}).

    query: Q×D; positives: Q×P×D with a Q×P validity mask (at least one valid per query);
    negatives: Q×M×D with a Q×M mask. Descriptors are unit vectors, so s is the cosine.
    Returns the Q per-query losses.
    """
    pos = torch.einsum("qd,qpd->qp", query, positives) / temperature
    neg = torch.einsum("qd,qmd->qm", query, negatives) / temperature
    pos = pos.masked_fill(~positive_valid, float("-inf"))
    neg = neg.masked_fill(~negative_valid, float("-inf"))
    log_pos = torch.logsumexp(pos, dim=1)
    log_all = torch.logsumexp(torch.cat([pos, neg], dim=1), dim=1)
    return log_all - log_pos


def uncertainty_weighted(losses: torch.Tensor, reliability: torch.Tensor) -> torch.Tensor:
    """Mean of r·L − log r over queries (eq. 7/9): reliability r = σ⁻¹ learns to predict 1/L."""
    reliability = reliability.clamp_min(1e-4)
    return (reliability * losses - torch.log(reliability)).mean()
