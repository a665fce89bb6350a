"""Query, positive and negative sampling for the contrastive losses (paper §3.2–3.3).

Everything here returns pixel coordinates (x, y); descriptors are looked up afterwards with
`ockd_ros.features.ockd.sample_descriptors`, so the sampling rules are testable on label maps alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplerConfig:
    queries_per_object: int = 20
    min_object_pixels: int = 40  # objects with fewer valid pixels in I1 give no queries
    intra_negatives: int = 128
    inter_positives: int = 4
    inter_negatives: int = 128
    delta: float = 8.0  # px: intra negatives lie farther than this from the positive
    object_centric_negatives: bool = True  # False: intra negatives from anywhere in I2 (ablation)


@dataclass
class QuerySet:
    """Sampled coordinates for the Q queries of one pair.

    query: Q×2 in I1; object_id: Q; positive: Q×2 in I2 (the correspondence);
    intra_negatives: Q×M×2 in I2 with mask intra_valid Q×M;
    inter_positives: Q×P×2 in I2 (same object) with inter_pos_valid Q×P;
    inter_negatives: Q×N×2 in I2 (other objects and background) with inter_neg_valid Q×N.
    """

    query: torch.Tensor
    object_id: torch.Tensor
    positive: torch.Tensor
    intra_negatives: torch.Tensor
    intra_valid: torch.Tensor
    inter_positives: torch.Tensor
    inter_pos_valid: torch.Tensor
    inter_negatives: torch.Tensor
    inter_neg_valid: torch.Tensor

    def __len__(self) -> int:
        return len(self.query)


def pixel_coordinates(mask: torch.Tensor) -> torch.Tensor:
    """K×2 float (x, y) coordinates of the true pixels of an H×W mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs, ys], dim=1).float()


def random_subset(points: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `count` rows of `points`, without replacement."""
    if len(points) <= count:
        return points
    return points[torch.randperm(len(points), generator=generator)[:count]]


def _padded(points: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`points` padded with zeros to `count` rows, and the validity mask of the rows."""
    out = points.new_zeros((count, 2))
    valid = torch.zeros(count, dtype=torch.bool)
    out[: len(points)], valid[: len(points)] = points, True
    return out, valid


def sample_queries(
    labels1: torch.Tensor,
    labels2: torch.Tensor,
    corr12: torch.Tensor,
    valid12: torch.Tensor,
    object_ids: torch.Tensor,
    conf: SamplerConfig,
    generator: torch.Generator,
) -> QuerySet:
    """Queries on each object of I1 with a correspondence in I2, with their positives/negatives.

    labels1, labels2: H×W instance ids; corr12: H×W×2 pixel coordinates in I2; valid12: H×W bool
    (correspondence exists and passes the occlusion check); object_ids: ids that are objects
    (tables and distractors are never queried, but serve as inter-object negatives).
    """
    parts = []
    for object_id in object_ids.tolist():
        candidates = pixel_coordinates((labels1 == object_id) & valid12)
        on_object2 = pixel_coordinates(labels2 == object_id)
        if len(candidates) < conf.min_object_pixels or len(on_object2) == 0:
            continue
        query = random_subset(candidates, conf.queries_per_object, generator)
        qx, qy = query[:, 0].long(), query[:, 1].long()
        positive = corr12[qy, qx]
        parts.append(
            _object_queries(object_id, query, positive, labels2, on_object2, conf, generator)
        )
    if not parts:
        return _empty_query_set(conf)
    return QuerySet(*(torch.cat([getattr(p, f) for p in parts]) for f in QuerySet.__annotations__))


def _object_queries(object_id, query, positive, labels2, on_object2, conf, generator) -> QuerySet:
    count = len(query)
    pool = on_object2 if conf.object_centric_negatives else pixel_coordinates(labels2 >= 0)
    negatives = random_subset(pool, conf.intra_negatives, generator)
    negatives, neg_valid = _padded(negatives, conf.intra_negatives)
    far = torch.cdist(positive, negatives) > conf.delta  # never the positive's neighbourhood
    inter_pos, pos_valid = _padded(
        random_subset(on_object2, conf.inter_positives, generator), conf.inter_positives
    )
    others = pixel_coordinates(labels2 != object_id)
    inter_neg, inter_valid = _padded(
        random_subset(others, conf.inter_negatives, generator), conf.inter_negatives
    )
    return QuerySet(
        query=query,
        object_id=torch.full((count,), object_id, dtype=torch.long),
        positive=positive,
        intra_negatives=negatives.expand(count, -1, -1),
        intra_valid=far & neg_valid,
        inter_positives=inter_pos.expand(count, -1, -1),
        inter_pos_valid=pos_valid.expand(count, -1),
        inter_negatives=inter_neg.expand(count, -1, -1),
        inter_neg_valid=inter_valid.expand(count, -1),
    )


def _empty_query_set(conf: SamplerConfig) -> QuerySet:
    def coords(m):
        return torch.zeros((0, m, 2))

    def mask(m):
        return torch.zeros((0, m), dtype=torch.bool)

    return QuerySet(
        torch.zeros((0, 2)),
        torch.zeros(0, dtype=torch.long),
        torch.zeros((0, 2)),
        coords(conf.intra_negatives),
        mask(conf.intra_negatives),
        coords(conf.inter_positives),
        mask(conf.inter_positives),
        coords(conf.inter_negatives),
        mask(conf.inter_negatives),
    )
