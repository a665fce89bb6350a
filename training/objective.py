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
from ockd_ros.training.sampler import (
    QuerySet,
    SamplerConfig,
    pixel_coordinates,
    random_subset,
    sample_queries,
)


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
    # > 0: a further InfoNCE ("template") of each query against its I0 render, with this many
    # negatives from the object's other I0 pixels (farther than δ, scaled to I0); it trains the
    # match our pose estimator makes, a frame against clean renders. 0: the paper's objective.
    template_negatives: int = 0
    lambda_template: float = 1.0
    # The inter-object InfoNCE once more, anchored on the I0 render's descriptor: positives are
    # the object's pixels in I2, negatives other objects and background. Pose selects an
    # object's pixels with the mean descriptor of its clean templates, so that anchor must work;
    # as a mere extra positive (semantic_consistency) I0 can stay far from the frame.
    template_inter: bool = False
    decoupled: bool = True  # False: one 96-d descriptor serves both losses (ablation)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)


@dataclass
class PairBatch:
    """B training pairs, as tensors.

    image1, image2: B×3×H×W in [0, 1]; labels1, labels2: B×H×W instance ids; corr12: B×H×W×2
    pixel coordinates in I2; valid12: B×H×W; object_ids: per pair, the ids that are objects.
    i0: K×3×S×S clean single-object renders; i0_pair, i0_object: K (which pair, which id);
    i0_affine: K×2×3 maps I1 pixels to I0 pixels, p0 = A·(p1, 1);
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
    i0_affine: torch.Tensor
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
    intra_losses, inter_losses, template_losses, anchor_losses, reliabilities = [], [], [], [], []
    for b in range(count):
        queries = sample_queries(
            batch.labels1[b].cpu(), batch.labels2[b].cpu(), batch.corr12[b].cpu(),
            batch.valid12[b].cpu(), batch.object_ids[b].cpu(), conf.sampler, generator,
        )  # fmt: skip
        if len(queries) == 0:
            continue
        queries = _to_device(queries, batch.image1.device)
        intra, inter, template, anchored = _pair_losses(
            out, count, b, queries, out0, batch, size, conf, generator
        )
        intra_losses.append(intra)
        inter_losses.append(inter)
        template_losses.append(template)
        anchor_losses.append(anchored)
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
    template = torch.cat(template_losses)
    if len(template):
        terms["template"] = template.mean()
        total = total + conf.lambda_template * terms["template"]
    anchored = torch.cat(anchor_losses)
    if len(anchored):
        terms["template_inter"] = anchored.mean()
        total = total + conf.lambda_template * terms["template_inter"]
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


@dataclass
class I0Points:
    """Where each of the Q queries lands in the I0 render of its object.

    intra, inter: Q×D descriptors there; valid: Q, the point is on the object in I0;
    crop: Q, the I0 row in the batch (−1: none); points: Q×2 I0 pixels.
    """

    intra: torch.Tensor
    inter: torch.Tensor
    valid: torch.Tensor
    crop: torch.Tensor
    points: torch.Tensor


def _pair_losses(out, count, b, queries: QuerySet, out0, batch: PairBatch, size, conf, generator):
    """Per-query intra and inter InfoNCE losses (Q each), and the template and I0-anchored inter
    losses of the queries that have an I0 point (empty unless `conf.template_negatives`,
    `conf.template_inter`)."""
    intra1, inter1 = _descriptors(out, b, conf.decoupled)
    intra2, inter2 = _descriptors(out, count + b, conf.decoupled)
    q_intra, q_inter = _lookup(intra1, queries.query, size), _lookup(inter1, queries.query, size)

    intra_pos = _lookup(intra2, queries.positive, size)[:, None]
    intra_pos_valid = torch.ones_like(intra_pos[..., 0], dtype=torch.bool)
    inter_pos = _lookup(inter2, queries.inter_positives, size)
    inter_pos_valid = queries.inter_pos_valid
    template = anchored = q_intra.new_zeros(0)
    i0 = _i0_points(out0, batch, b, queries, conf) if out0 is not None else None
    if i0 is not None:
        intra_pos = torch.cat([intra_pos, i0.intra[:, None]], dim=1)
        intra_pos_valid = torch.cat([intra_pos_valid, i0.valid[:, None]], dim=1)
        inter_pos = torch.cat([inter_pos, i0.inter[:, None]], dim=1)
        inter_pos_valid = torch.cat([inter_pos_valid, i0.valid[:, None]], dim=1)
        if conf.template_negatives:
            template = _template_losses(out0, batch, q_intra, i0, conf, generator)
        if conf.template_inter:
            anchored = info_nce(
                i0.inter[i0.valid],
                _lookup(inter2, queries.inter_positives[i0.valid], size),
                queries.inter_pos_valid[i0.valid],
                _lookup(inter2, queries.inter_negatives[i0.valid], size),
                queries.inter_neg_valid[i0.valid],
                conf.tau_inter,
            )

    intra = info_nce(
        q_intra, intra_pos, intra_pos_valid,
        _lookup(intra2, queries.intra_negatives, size), queries.intra_valid, conf.tau_intra,
    )  # fmt: skip
    inter = info_nce(
        q_inter, inter_pos, inter_pos_valid,
        _lookup(inter2, queries.inter_negatives, size), queries.inter_neg_valid, conf.tau_inter,
    )  # fmt: skip
    return intra, inter, template, anchored


def _i0_points(out0: NetworkOutput, batch: PairBatch, b: int, queries: QuerySet, conf):
    """The I0 points of pair b's queries; None when pair b has no I0."""
    rows = torch.nonzero(batch.i0_pair == b).flatten().tolist()
    if not rows:
        return None
    side = batch.i0.shape[-1]
    count = len(queries)
    dim_intra, dim_inter = (d.shape[0] for d in _descriptors(out0, rows[0], conf.decoupled))
    device = queries.query.device
    i0 = I0Points(
        intra=queries.query.new_zeros((count, dim_intra)),
        inter=queries.query.new_zeros((count, dim_inter)),
        valid=torch.zeros(count, dtype=torch.bool, device=device),
        crop=torch.full((count,), -1, dtype=torch.long, device=device),
        points=queries.query.new_zeros((count, 2)),
    )
    for k in rows:
        selected = torch.nonzero(queries.object_id == batch.i0_object[k]).flatten()
        if len(selected) == 0:
            continue
        affine = batch.i0_affine[k]
        points = queries.query[selected] @ affine[:, :2].T + affine[:, 2]
        px, py = points.round().long().unbind(1)
        inside = (px >= 0) & (px < side) & (py >= 0) & (py < side)
        on_object = batch.i0_mask[k, py.clamp(0, side - 1), px.clamp(0, side - 1)]
        desc_intra, desc_inter = _descriptors(out0, k, conf.decoupled)
        i0.valid[selected] = inside & on_object
        i0.crop[selected] = k
        i0.points[selected] = points
        i0.intra[selected] = _lookup(desc_intra, points, (side, side))
        i0.inter[selected] = _lookup(desc_inter, points, (side, side))
    return i0


def _template_losses(out0, batch: PairBatch, q_intra, i0: I0Points, conf, generator):
    """InfoNCE of each query with an I0 point against its I0 render: the positive is that point,
    negatives are other pixels of the object in I0 farther than δ (in I0 pixels)."""
    side = batch.i0.shape[-1]
    losses = []
    for k in torch.unique(i0.crop[i0.valid]).tolist():
        selected = torch.nonzero(i0.valid & (i0.crop == k)).flatten()
        candidates = pixel_coordinates(batch.i0_mask[k].cpu())
        negatives = random_subset(candidates, conf.template_negatives, generator).to(q_intra)
        zoom = torch.linalg.det(batch.i0_affine[k, :, :2]).abs().sqrt()
        far = torch.cdist(i0.points[selected], negatives) > conf.sampler.delta * zoom
        desc_intra, _ = _descriptors(out0, k, conf.decoupled)
        negative_desc = _lookup(desc_intra, negatives, (side, side))
        losses.append(
            info_nce(
                q_intra[selected],
                i0.intra[selected, None],
                torch.ones(len(selected), 1, dtype=torch.bool, device=q_intra.device),
                negative_desc.expand(len(selected), -1, -1),
                far,
                conf.tau_intra,
            )
        )
    return torch.cat(losses) if losses else q_intra.new_zeros(0)


def _to_device(queries: QuerySet, device: torch.device) -> QuerySet:
    return QuerySet(
        **{name: getattr(queries, name).to(device) for name in QuerySet.__annotations__}
    )
