"""One evaluation of the training objective on a batch of pairs: all loss terms of the paper."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ockd_ros.features.ockd import sample_descriptors
from ockd_ros.model.network import NetworkOutput, OCKDNet
from ockd_ros.training.losses import (
    info_nce,
    repeatability_loss,
    uncertainty_weighted,
    warp_to_first,
)
from ockd_ros.training.sampler import QuerySet, SamplerConfig, sample_queries


@dataclass(frozen=True)
class LossConfig:
    lambda_intra: float = 1.0  # λ1
    lambda_inter: float = 1.0  # λ2
    tau_intra: float = 0.07
    tau_inter: float = 0.2
    patch: int = 16  # N, repeatability windows
    alpha: float = 0.85
    repeatability: bool = True
    uncertainty_weighting: bool = True
    semantic_consistency: bool = True  # extra positives from the clean renders I0
    decoupled: bool = True  # False: one 96-d descriptor serves both losses (ablation)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


@dataclass
class PairBatch:
    """B training pairs, as tensors.

    image1, image2: B×3×H×W in [0, 1]; labels1, labels2: B×H×W instance ids; corr12: B×H×W×2
    pixel coordinates in I2; valid12: B×H×W; object_ids: per pair, the ids that are objects.
    i0: K×3×S×S clean single-object renders; i0_pair, i0_object: K (which pair, which id);
    i0_origin: K×2 and i0_scale: K map I1 pixels to I0 pixels, p0 = (p1 − origin) · scale;
    i0_mask: K×S×S, the object's pixels in I0.
    """

    image1: torch.Tensor
    image2: torch.Tensor
    labels1: torch.Tensor
    labels2: torch.Tensor
    corr12: torch.Tensor
    valid12: torch.Tensor
    object_ids: list[torch.Tensor]
    i0: torch.Tensor
    i0_pair: torch.Tensor
    i0_object: torch.Tensor
    i0_origin: torch.Tensor
    i0_scale: torch.Tensor
    i0_mask: torch.Tensor

    def to(self, device: torch.device) -> PairBatch:
        moved = {
            name: value.to(device) if isinstance(value, torch.Tensor) else value
            for name, value in vars(self).items()
        }
        return PairBatch(**moved)


def compute_losses(
    model: OCKDNet, batch: PairBatch, conf: LossConfig, generator: torch.Generator
) -> dict[str, torch.Tensor] | None:
    """All loss terms and their weighted sum ('total'); None when the batch has no usable query."""
    size = batch.image1.shape[-1], batch.image1.shape[-2]
    out = model(torch.cat([batch.image1, batch.image2]))
    count = len(batch.image1)
    rel1, rel2 = out.reliability[:count], out.reliability[count:]
    out0 = model(batch.i0) if conf.semantic_consistency and len(batch.i0) else None

    terms: dict[str, torch.Tensor] = {}
    intra_losses, inter_losses, reliabilities = [], [], []
    for b in range(count):
        queries = sample_queries(
            batch.labels1[b].cpu(), batch.labels2[b].cpu(), batch.corr12[b].cpu(),
            batch.valid12[b].cpu(), batch.object_ids[b].cpu(), conf.sampler, generator,
        )  # fmt: skip
        if len(queries) == 0:
            continue
        queries = _to_device(queries, batch.image1.device)
        intra, inter = _pair_losses(out, count, b, queries, out0, batch, size, conf)
        intra_losses.append(intra)
        inter_losses.append(inter)
        qx, qy = queries.query[:, 0].long(), queries.query[:, 1].long()
        reliabilities.append(rel1[b, 0, qy, qx])
    if not intra_losses:
        return None
    intra, inter = torch.cat(intra_losses), torch.cat(inter_losses)
    reliability = torch.cat(reliabilities)
    if conf.uncertainty_weighting:
        terms["intra"] = uncertainty_weighted(intra, reliability)
        terms["inter"] = uncertainty_weighted(inter, reliability)
    else:
        terms["intra"], terms["inter"] = intra.mean(), inter.mean()
    total = conf.lambda_intra * terms["intra"] + conf.lambda_inter * terms["inter"]
    if conf.repeatability:
        rep = repeatability_loss(
            rel1, warp_to_first(rel2, batch.corr12), batch.valid12, conf.patch, conf.alpha
        )
        if rep is not None:
            terms["repeatability"] = rep
            total = total + rep
    terms["total"] = total
    terms["intra_nce"], terms["inter_nce"] = intra.detach().mean(), inter.detach().mean()
    terms["mean_reliability"] = reliability.detach().mean()
    return terms


def _descriptors(out: NetworkOutput, index: int, decoupled: bool) -> tuple[torch.Tensor, ...]:
    intra, inter = out.desc_intra[index], out.desc_inter[index]
    if decoupled:
        return intra, inter
    joint = F.normalize(torch.cat([intra, inter]), dim=0)
    return joint, joint


def _lookup(desc: torch.Tensor, points: torch.Tensor, size) -> torch.Tensor:
    """Descriptors at `points` of any leading shape ...×2 → ...×D."""
    flat = sample_descriptors(desc, points.reshape(-1, 2), size)
    return flat.reshape(*points.shape[:-1], -1)


def _pair_losses(out, count, b, queries: QuerySet, out0, batch: PairBatch, size, conf):
    intra1, inter1 = _descriptors(out, b, conf.decoupled)
    intra2, inter2 = _descriptors(out, count + b, conf.decoupled)
    q_intra, q_inter = _lookup(intra1, queries.query, size), _lookup(inter1, queries.query, size)

    intra_pos = _lookup(intra2, queries.positive, size)[:, None]
    intra_pos_valid = torch.ones_like(intra_pos[..., 0], dtype=torch.bool)
    inter_pos = _lookup(inter2, queries.inter_positives, size)
    inter_pos_valid = queries.inter_pos_valid
    if out0 is not None:
        extra = _i0_positives(out0, batch, b, queries, conf)
        if extra is not None:
            (i0_intra, i0_inter, i0_valid) = extra
            intra_pos = torch.cat([intra_pos, i0_intra[:, None]], dim=1)
            intra_pos_valid = torch.cat([intra_pos_valid, i0_valid[:, None]], dim=1)
            inter_pos = torch.cat([inter_pos, i0_inter[:, None]], dim=1)
            inter_pos_valid = torch.cat([inter_pos_valid, i0_valid[:, None]], dim=1)

    intra = info_nce(
        q_intra, intra_pos, intra_pos_valid,
        _lookup(intra2, queries.intra_negatives, size), queries.intra_valid, conf.tau_intra,
    )  # fmt: skip
    inter = info_nce(
        q_inter, inter_pos, inter_pos_valid,
        _lookup(inter2, queries.inter_negatives, size), queries.inter_neg_valid, conf.tau_inter,
    )  # fmt: skip
    return intra, inter


def _i0_positives(out0: NetworkOutput, batch: PairBatch, b: int, queries: QuerySet, conf):
    """Per query, the descriptors of its point in the clean render I0 of its object (Q×D each),
    and whether that point lies on the object in I0 (Q); None when pair b has no I0."""
    rows = torch.nonzero(batch.i0_pair == b).flatten().tolist()
    if not rows:
        return None
    side = batch.i0.shape[-1]
    count = len(queries)
    dim_intra, dim_inter = (d.shape[0] for d in _descriptors(out0, rows[0], conf.decoupled))
    intra0 = queries.query.new_zeros((count, dim_intra))
    inter0 = queries.query.new_zeros((count, dim_inter))
    valid = torch.zeros(count, dtype=torch.bool, device=queries.query.device)
    for k in rows:
        selected = torch.nonzero(queries.object_id == batch.i0_object[k]).flatten()
        if len(selected) == 0:
            continue
        points = (queries.query[selected] - batch.i0_origin[k]) * batch.i0_scale[k]
        px, py = points.round().long().clamp(0, side - 1).unbind(1)
        valid[selected] = batch.i0_mask[k, py, px]
        desc_intra, desc_inter = _descriptors(out0, k, conf.decoupled)
        intra0[selected] = _lookup(desc_intra, points, (side, side))
        inter0[selected] = _lookup(desc_inter, points, (side, side))
    return intra0, inter0, valid


def _to_device(queries: QuerySet, device: torch.device) -> QuerySet:
    return QuerySet(
        **{name: getattr(queries, name).to(device) for name in QuerySet.__annotations__}
    )
