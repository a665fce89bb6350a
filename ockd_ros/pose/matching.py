"""Object selection and mutual-nearest-neighbour matching against all templates of a bank at once.

A bank keeps the descriptors of all its templates concatenated (M×D) with the template id of each
row, so matching a frame against every template is one matrix product, a reduction per bank row
and a scatter-max per template instead of a Python loop over templates; no padding is wasted on
templates with few keypoints. Mutual means mutual within one template: a frame keypoint may match
one keypoint in each of several templates, as neighbouring views share points.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from ockd_ros.features.ockd import object_mask
from ockd_ros.features.types import Features


@dataclass(frozen=True)
class MatchingConfig:
    min_similarity: float = 0.0  # cosine below which a mutual pair is no match
    # Lowe's ratio on the template side: a template keypoint's nearest frame descriptor must be
    # this much closer (Euclidean) than its second nearest; 1.0 disables the test.
    max_ratio: float = 0.8
    # Pixels: the ratio test's second neighbour is the most similar frame keypoint farther than
    # this from the first. On a dense keypoint grid the first's neighbours share its descriptor
    # and would fail a plain ratio test; 0 compares with the second most similar of all.
    ratio_radius: float = 0.0
    mutual: bool = True  # also require the frame keypoint's best row in the template to agree
    # > 0: match only this many templates, those whose strongest `shortlist_rows` rows most
    # often pass the ratio test against every `shortlist_frame_step`-th frame keypoint. Dense
    # grids make full matching against every template too slow.
    shortlist: int = 0
    shortlist_rows: int = 32
    shortlist_frame_step: int = 4
    top_templates: int = 3  # templates with the most matches that go on to PnP
    # Similarities held at once (float32: 4 MB): small enough to stay in cache.
    max_entries: int = 1 << 20

    def validate(self) -> None:
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1], got {self.min_similarity}")
        if not 0.0 < self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if not self.ratio_radius >= 0.0:
            raise ValueError(f"ratio_radius must be ≥ 0, got {self.ratio_radius}")
        if self.top_templates < 1 or self.max_entries < 1:
            raise ValueError("top_templates and max_entries must be ≥ 1")
        if self.shortlist < 0 or self.shortlist_rows < 1 or self.shortlist_frame_step < 1:
            raise ValueError("shortlist must be ≥ 0, shortlist_rows and _frame_step ≥ 1")


def select_object(
    features: Features, inter_mean: np.ndarray | None, threshold: float
) -> np.ndarray:
    """Indices of the frame keypoints on one object: inter-object cosine to the object's mean
    descriptor ≥ `threshold`. Backends without inter descriptors (SIFT) keep every keypoint."""
    if features.desc_inter is None or inter_mean is None:
        return np.arange(len(features))
    return np.flatnonzero(object_mask(features.desc_inter, inter_mean, threshold))


class BankDescriptors:
    """A bank's M×D unit descriptors as a torch tensor, with each row's template.

    template_ids: M ascending template indices of the rows; V = `num_templates`.
    """

    def __init__(self, descriptors: np.ndarray, template_ids: np.ndarray, num_templates: int):
        template_ids = np.asarray(template_ids, dtype=np.int64)
        if len(template_ids) != len(descriptors):
            raise ValueError(f"{len(descriptors)} descriptors but {len(template_ids)} template ids")
        if len(template_ids) and np.any(np.diff(template_ids) < 0):
            raise ValueError("template_ids must be ascending")
        counts = np.bincount(template_ids, minlength=num_templates)
        if len(counts) > num_templates:
            raise ValueError(f"template ids exceed num_templates={num_templates}")
        self.desc = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32))
        self.template_ids = torch.from_numpy(template_ids)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # V+1: rows of template v
        self.num_templates = num_templates

    def restrict(self, templates: np.ndarray) -> tuple[BankDescriptors, np.ndarray]:
        """The rows of some templates only (template numbers kept) and their rows in this bank."""
        templates = np.unique(templates)
        rows = np.concatenate(
            [np.arange(self.offsets[v], self.offsets[v + 1]) for v in templates] or [[]]
        ).astype(np.int64)
        ids = self.template_ids.numpy()[rows]
        return BankDescriptors(self.desc.numpy()[rows], ids, self.num_templates), rows

    def strongest_rows(self, count: int) -> np.ndarray:
        """Row indices of each template's first `count` rows (rows are stored strongest first)."""
        starts, stops = self.offsets[:-1], self.offsets[1:]
        return np.concatenate(
            [np.arange(a, min(b, a + count)) for a, b in zip(starts, stops, strict=True)] or [[]]
        ).astype(np.int64)

    @property
    def dim(self) -> int:
        return self.desc.shape[1]

    def chunks(self, max_rows: int) -> list[tuple[int, int]]:
        """Row ranges of whole templates, each at most `max_rows` rows unless one template is
        longer: a template never straddles two chunks, so its maximum is found in one."""
        bounds = [0]
        for start, stop in itertools.pairwise(self.offsets):
            if stop - bounds[-1] > max_rows and start > bounds[-1]:
                bounds.append(int(start))
        if self.offsets[-1] > bounds[-1]:
            bounds.append(int(self.offsets[-1]))
        return list(itertools.pairwise(bounds))


@dataclass
class TemplateMatches:
    """Mutual nearest neighbours between a frame and every template of a bank.

    frame_index: K int64 rows of the frame features. bank_index: K int64 rows of the bank.
    template: K int64, the template of each match. similarity: K float32 cosines.
    """

    frame_index: np.ndarray
    bank_index: np.ndarray
    template: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_index)

    def counts(self, num_templates: int) -> np.ndarray:
        """V int64: matches per template."""
        return np.bincount(self.template, minlength=num_templates)

    def best_templates(self, count: int, num_templates: int) -> list[int]:
        """Up to `count` templates with the most matches (ties: lower index), none without any."""
        counts = self.counts(num_templates)
        order = np.argsort(-counts, kind="stable")[:count]
        return [int(t) for t in order if counts[t] > 0]

    def of_template(self, template: int) -> TemplateMatches:
        keep = self.template == template
        return TemplateMatches(
            self.frame_index[keep],
            self.bank_index[keep],
            self.template[keep],
            self.similarity[keep],
        )


def shortlist_templates(
    frame_desc: np.ndarray, bank: BankDescriptors, conf: MatchingConfig
) -> np.ndarray:
    """Indices of the `conf.shortlist` templates, best first, ranked by how many of their
    strongest rows pass the ratio test against a frame subsample (every
    `shortlist_frame_step`-th keypoint: sparse enough that neighbours rarely fail the test)."""
    rows = bank.strongest_rows(conf.shortlist_rows)
    frame = torch.from_numpy(np.ascontiguousarray(frame_desc[:: conf.shortlist_frame_step]))
    if len(rows) == 0 or len(frame) < 2:
        return np.zeros(0, np.int64)
    with torch.inference_mode():
        passed = []
        for chunk in np.array_split(rows, -(-len(rows) * len(frame) // conf.max_entries)):
            top2 = (bank.desc[chunk] @ frame.t()).topk(2, dim=1).values
            passed.append(_passes_ratio(top2[:, 0], top2[:, 1], conf.max_ratio))
        votes = torch.zeros(bank.num_templates).index_add_(
            0, bank.template_ids[rows], torch.cat(passed).float()
        )
    order = torch.argsort(votes, descending=True, stable=True)[: conf.shortlist].numpy()
    return order[votes.numpy()[order] > 0]


def match_templates(
    frame_desc: np.ndarray,
    bank: BankDescriptors,
    conf: MatchingConfig | None = None,
    frame_keypoints: np.ndarray | None = None,
) -> TemplateMatches:
    """Nearest neighbours (by cosine) of every template's rows among N×D unit frame descriptors.

    Bank row m of template v and frame keypoint n match when n is m's most similar frame
    keypoint, the cosine is ≥ `min_similarity`, with `mutual` m is n's most similar row among
    v's rows, and with `max_ratio` < 1 m's nearest frame descriptor is clearly nearer than its
    second (the second taken `ratio_radius` px away from n, which needs the N×2
    `frame_keypoints`). With `shortlist` > 0 only the shortlisted templates are matched.
    Templates are processed in chunks of at most `max_entries` similarities.
    """
    conf = conf or MatchingConfig()
    conf.validate()
    frame_desc = np.asarray(frame_desc, dtype=np.float32)
    if frame_desc.ndim != 2 or frame_desc.shape[1] != bank.dim:
        raise ValueError(
            f"frame descriptors {frame_desc.shape} do not fit bank dimension {bank.dim}"
        )
    if conf.ratio_radius > 0 and conf.max_ratio < 1 and frame_keypoints is None:
        raise ValueError("ratio_radius > 0 needs the frame keypoints")
    rows = None
    if conf.shortlist and len(frame_desc):
        bank, rows = bank.restrict(shortlist_templates(frame_desc, bank, conf))
    n = len(frame_desc)
    chunks = bank.chunks(max(1, conf.max_entries // max(n, 1)))
    if n == 0 or not chunks:
        return _no_matches()
    frame = torch.from_numpy(np.ascontiguousarray(frame_desc))
    xy = None if frame_keypoints is None else torch.as_tensor(frame_keypoints, dtype=torch.float32)
    with torch.inference_mode():
        found = [_match_chunk(frame, xy, bank, start, stop, conf) for start, stop in chunks]
    frame_index, bank_rows, template, similarity = (
        torch.cat(parts).numpy() for parts in zip(*found, strict=True)
    )
    if rows is not None:  # back to rows of the whole bank
        bank_rows = rows[bank_rows]
    return TemplateMatches(frame_index, bank_rows, template, similarity)


def _match_chunk(
    frame: torch.Tensor,
    frame_xy: torch.Tensor | None,
    bank: BankDescriptors,
    start: int,
    stop: int,
    conf: MatchingConfig,
) -> tuple[torch.Tensor, ...]:
    """Matches of bank rows start..stop-1 (whole templates): frame indices, bank rows,
    templates, cosines."""
    templates = bank.template_ids[start:stop]
    similarity = bank.desc[start:stop] @ frame.t()  # m×N
    best_sim, best_frame = similarity.max(dim=1)
    keep = best_sim >= conf.min_similarity
    if conf.max_ratio < 1.0 and similarity.shape[1] > 1:
        keep &= _distinct(similarity, best_sim, best_frame, frame_xy, conf)
    if conf.mutual:
        # Per template and frame keypoint, the best similarity over the template's rows.
        local = templates - templates[0]
        template_best = torch.full((int(local[-1]) + 1, similarity.shape[1]), -torch.inf)
        template_best.scatter_reduce_(0, local[:, None].expand_as(similarity), similarity, "amax")
        keep &= best_sim >= template_best[local, best_frame]
    rows = torch.arange(start, stop)
    return best_frame[keep], rows[keep], templates[keep], best_sim[keep]


# Candidates searched for the ratio test's second neighbour outside `ratio_radius`: on a 4-px grid
# an 8-px radius holds about 13 keypoints, so the first candidate outside it is nearly always
# among the 16 most similar.
SECOND_CANDIDATES = 16


def _distinct(similarity, best_sim, best_frame, frame_xy, conf: MatchingConfig) -> torch.Tensor:
    """m bool: Lowe's ratio test on Euclidean distances between unit descriptors.

    With `ratio_radius`, the second is the most similar of the SECOND_CANDIDATES nearest
    descriptors that lies outside the radius; when none does, the last candidate stands in
    (at least as similar as any keypoint outside, so the test only gets stricter).
    """
    if conf.ratio_radius > 0:
        top = similarity.topk(min(SECOND_CANDIDATES, similarity.shape[1]), dim=1)
        offset = frame_xy[top.indices] - frame_xy[best_frame][:, None]  # m×k×2
        far = (offset**2).sum(dim=2) > conf.ratio_radius**2
        far[:, -1] = True
        second_sim = top.values.gather(1, far.float().argmax(dim=1, keepdim=True))[:, 0]
    else:
        second_sim = similarity.topk(2, dim=1).values[:, 1]
    return _passes_ratio(best_sim, second_sim, conf.max_ratio)


def _passes_ratio(best_sim: torch.Tensor, second_sim: torch.Tensor, ratio: float) -> torch.Tensor:
    """Lowe's test on the Euclidean distances of unit descriptors, from their cosines (a second
    cosine of −inf, no second at all, always passes)."""
    best_distance = torch.sqrt(torch.clamp(2.0 - 2.0 * best_sim, min=0.0))
    second_distance = torch.sqrt(torch.clamp(2.0 - 2.0 * second_sim, min=0.0))
    return best_distance < ratio * second_distance


def _no_matches() -> TemplateMatches:
    empty = np.zeros(0, np.int64)
    return TemplateMatches(empty, empty.copy(), empty.copy(), np.zeros(0, np.float32))
