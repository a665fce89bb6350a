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

from ockd_ros.device import native_bfloat16
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
    # > 0: the shortlist vote only among the `preselect` templates that win a first vote with
    # their `preselect_rows` strongest rows (cheaper: fewer rows, then fewer templates).
    preselect: int = 0
    preselect_rows: int = 16
    # > 0: the first `spread_rows` rows of each template, which the votes use first, are picked
    # farthest-point (in the template's pixels) among its strongest `spread_share` of rows, so
    # that a vote sees the whole view and not only its most textured part (the strongest rows
    # of a plain bottle lie on its label, often hidden). Applied to banks as they are loaded.
    spread_rows: int = 0
    spread_share: float = 0.25
    top_templates: int = 3  # templates with the most matches that go on to PnP
    # Similarities held at once (4M: 8 MB in bfloat16, 16 MB in float32). Each chunk costs a
    # few torch calls: on YCB-Video chunks of 1M took 15 % longer per frame in ockd's search.
    max_entries: int = 1 << 22
    # Type of the similarity products: 'float32', 'bfloat16' or 'auto' (bfloat16 where the CPU
    # multiplies it natively, 3-5x faster than float32). The cosines of the nearest
    # neighbours that the tests compare are recomputed in float32 either way.
    precision: str = "auto"
    # Type the banks' descriptors are held in: 'float16' halves their memory (ockd: 130-160 MB
    # per object in float32); the float32 cosines computed from them differ by ~1e-4, which
    # moves the poses about as much as any change of the descriptors that size
    # (docs/benchmarks.md).
    bank_precision: str = "float32"

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
        if self.preselect < 0 or self.preselect_rows < 1:
            raise ValueError("preselect must be ≥ 0 and preselect_rows ≥ 1")
        if self.spread_rows < 0 or not 0.0 < self.spread_share <= 1.0:
            raise ValueError("spread_rows must be ≥ 0 and spread_share in (0, 1]")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}"
            )
        if self.bank_precision not in BANK_PRECISIONS:
            raise ValueError(
                f"bank_precision must be one of {sorted(BANK_PRECISIONS)}, "
                f"got {self.bank_precision!r}"
            )

    @property
    def dtype(self) -> torch.dtype:
        """The torch type similarities are computed in."""
        if self.precision == "auto":
            return torch.bfloat16 if native_bfloat16() else torch.float32
        return PRECISIONS[self.precision]


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": None}
BANK_PRECISIONS = {"float32": np.float32, "float16": np.float16}


def select_object(
    features: Features, inter_mean: np.ndarray | None, threshold: float
) -> np.ndarray:
    """Indices of the frame keypoints on one object: inter-object cosine to the object's mean
    descriptor ≥ `threshold`. Backends without inter descriptors (SIFT) and thresholds ≤ −1
    (no cosine is lower) keep every keypoint."""
    if features.desc_inter is None or inter_mean is None or threshold <= -1.0:
        return np.arange(len(features))
    return np.flatnonzero(object_mask(features.desc_inter, inter_mean, threshold))


class BankDescriptors:
    """A bank's M×D unit descriptors (float32 or float16, shared with the array given) as a
    torch tensor, with each row's template.

    Each chunk of rows is cast to the type of the similarity products as it is used: that costs
    ~1 % of the product, where a bfloat16 copy of the whole bank would add half its size.

    template_ids: M ascending template indices of the rows; V = `num_templates`.
    groups: V ints or None: templates of different groups (the scales of a bank) are
    shortlisted separately, `shortlist` of each, so no group crowds out another.
    """

    def __init__(
        self,
        descriptors: np.ndarray,
        template_ids: np.ndarray,
        num_templates: int,
        groups: np.ndarray | None = None,
    ):
        template_ids = np.asarray(template_ids, dtype=np.int64)
        if len(template_ids) != len(descriptors):
            raise ValueError(f"{len(descriptors)} descriptors but {len(template_ids)} template ids")
        if len(template_ids) and np.any(np.diff(template_ids) < 0):
            raise ValueError("template_ids must be ascending")
        counts = np.bincount(template_ids, minlength=num_templates)
        if len(counts) > num_templates:
            raise ValueError(f"template ids exceed num_templates={num_templates}")
        if descriptors.dtype not in BANK_PRECISIONS.values():
            descriptors = descriptors.astype(np.float32)
        self.desc = torch.from_numpy(np.ascontiguousarray(descriptors))
        self.template_ids = torch.from_numpy(template_ids)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])  # V+1: rows of template v
        self.num_templates = num_templates
        if groups is not None and len(groups) != num_templates:
            raise ValueError(f"{len(groups)} groups for {num_templates} templates")
        self.groups = None if groups is None else np.asarray(groups, np.int64)

    def restrict(self, templates: np.ndarray) -> tuple[BankDescriptors, np.ndarray]:
        """The rows of some templates only (template numbers kept) and their rows in this bank."""
        rows = self.strongest_rows(None, np.unique(templates))
        ids = self.template_ids.numpy()[rows]
        restricted = BankDescriptors(self.desc.numpy()[rows], ids, self.num_templates, self.groups)
        return restricted, rows

    def strongest_rows(self, count: int | None, templates: np.ndarray | None = None) -> np.ndarray:
        """Row indices of the first `count` rows (rows are stored strongest first; None: all)
        of each of `templates` (ascending; None: all)."""
        templates = (
            np.arange(self.num_templates) if templates is None else np.asarray(templates, np.int64)
        )
        starts = self.offsets[templates]
        lengths = self.offsets[templates + 1] - starts
        if count is not None:
            lengths = np.minimum(lengths, count)
        # Row r of the result is start + (r − first row of its template).
        firsts = np.cumsum(lengths) - lengths
        return (np.repeat(starts - firsts, lengths) + np.arange(lengths.sum())).astype(np.int64)

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

    def best_templates(
        self, count: int, num_templates: int, groups: np.ndarray | None = None
    ) -> list[int]:
        """Up to `count` templates with the most matches (ties: lower index), none without any;
        with V `groups`, up to `count` of each group, best first."""
        counts = self.counts(num_templates)
        order = np.argsort(-counts, kind="stable")
        return [int(t) for t in first_of_each_group(order[counts[order] > 0], count, groups)]

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
    """Indices of the `conf.shortlist` templates (of each group), best first, ranked by how
    many of their strongest rows pass the ratio test against a frame subsample (every
    `shortlist_frame_step`-th keypoint: sparse enough that neighbours rarely fail the test);
    with `preselect`, among the winners of a first vote with `preselect_rows` rows each (whose
    tests the second vote reuses)."""
    frame = torch.from_numpy(np.ascontiguousarray(frame_desc[:: conf.shortlist_frame_step]))
    if bank.offsets[-1] == 0 or len(frame) < 2:
        return np.zeros(0, np.int64)
    with torch.inference_mode():
        tested, passed = np.zeros(0, np.int64), torch.zeros(0, dtype=torch.bool)
        templates = None
        if conf.preselect:
            tested = bank.strongest_rows(conf.preselect_rows)
            passed = _passes(frame, bank, tested, conf)
            votes = _tally(bank, tested, passed)
            templates = np.sort(_most_voted(votes, conf.preselect, bank.groups))
        rows = bank.strongest_rows(conf.shortlist_rows, templates)
        votes = _tally(bank, rows, _passes_reusing(frame, bank, rows, conf, tested, passed))
    return _most_voted(votes, conf.shortlist, bank.groups)


def _passes_reusing(
    frame: torch.Tensor,
    bank: BankDescriptors,
    rows: np.ndarray,
    conf: MatchingConfig,
    tested: np.ndarray,
    passed: torch.Tensor,
) -> torch.Tensor:
    """`_passes` of `rows`, taken from `passed` for those among the `tested` rows."""
    known = torch.full((int(bank.offsets[-1]),), -1, dtype=torch.int8)  # −1: not tested
    known[torch.from_numpy(tested)] = passed.to(torch.int8)
    result = known[torch.from_numpy(rows)]
    untested = result < 0
    result[untested] = _passes(frame, bank, rows[untested.numpy()], conf).to(torch.int8)
    return result.bool()


def _passes(
    frame: torch.Tensor, bank: BankDescriptors, rows: np.ndarray, conf: MatchingConfig
) -> torch.Tensor:
    """len(rows) bool: whether each bank row passes the ratio test against `frame`."""
    if len(rows) == 0:
        return torch.zeros(0, dtype=torch.bool)
    frame_cast = frame.to(conf.dtype)
    passed = []
    for chunk in np.array_split(rows, -(-len(rows) * len(frame) // conf.max_entries)):
        rows_desc = bank.desc[chunk]
        top2 = _largest_columns(rows_desc.to(conf.dtype) @ frame_cast.t(), 2)
        rows_desc = rows_desc.float()
        # In float32 the two may swap places: compare the larger with the smaller.
        top2 = _exact_cosines(rows_desc, frame, top2).sort(dim=1, descending=True).values
        passed.append(_passes_ratio(top2[:, 0], top2[:, 1], conf.max_ratio))
    return torch.cat(passed)


def _tally(bank: BankDescriptors, rows: np.ndarray, passed: torch.Tensor) -> torch.Tensor:
    """V float32: per template, how many of its `rows` passed."""
    return torch.zeros(bank.num_templates).index_add_(0, bank.template_ids[rows], passed.float())


def _most_voted(votes: torch.Tensor, count: int, groups: np.ndarray | None) -> np.ndarray:
    """Up to `count` templates with the most votes (of each group, with `groups`), best first
    (ties: lower index), none without."""
    order = torch.argsort(votes, descending=True, stable=True).numpy()
    return first_of_each_group(order[votes.numpy()[order] > 0], count, groups)


def first_of_each_group(order: np.ndarray, count: int, groups: np.ndarray | None) -> np.ndarray:
    """The first `count` of `order` (template indices), or with V `groups` the first `count` of
    each group, in their order."""
    if groups is None:
        return order[:count]
    keep = np.zeros(len(order), bool)
    of_order = groups[order]
    for group in np.unique(of_order):
        keep[np.flatnonzero(of_order == group)[:count]] = True
    return order[keep]


def match_templates(
    frame_desc: np.ndarray,
    bank: BankDescriptors,
    conf: MatchingConfig | None = None,
    frame_keypoints: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> TemplateMatches:
    """Nearest neighbours (by cosine) of every template's rows among N×D unit frame descriptors.

    Bank row m of template v and frame keypoint n match when n is m's most similar frame
    keypoint, the cosine is ≥ `min_similarity`, with `mutual` m is n's most similar row among
    v's rows, and with `max_ratio` < 1 m's nearest frame descriptor is clearly nearer than its
    second (the second taken `ratio_radius` px away from n, which needs the N×2
    `frame_keypoints`). `candidates` (template indices) limits the search to those templates;
    with `shortlist` > 0 only the shortlisted templates (among the candidates) are matched.
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
    rows = None  # rows of the whole bank, once it is restricted
    if candidates is not None:
        bank, rows = bank.restrict(np.asarray(candidates, dtype=np.int64))
    if conf.shortlist and len(frame_desc):
        bank, shortlisted = bank.restrict(shortlist_templates(frame_desc, bank, conf))
        rows = shortlisted if rows is None else rows[shortlisted]
    if len(frame_desc) == 0 or bank.offsets[-1] == 0:
        return _no_matches()
    frame = torch.from_numpy(np.ascontiguousarray(frame_desc))
    xy = None if frame_keypoints is None else torch.as_tensor(frame_keypoints, dtype=torch.float32)
    chunks = bank.chunks(max(1, conf.max_entries // len(frame)))
    with torch.inference_mode():
        frame_cast = frame.to(conf.dtype)
        found = [
            _match_chunk(frame, frame_cast, xy, bank, start, stop, conf) for start, stop in chunks
        ]
    frame_index, bank_rows, template, similarity = (
        torch.cat(parts).numpy() for parts in zip(*found, strict=True)
    )
    if rows is not None:  # back to rows of the whole bank
        bank_rows = rows[bank_rows]
    return TemplateMatches(frame_index, bank_rows, template, similarity)


def _match_chunk(
    frame: torch.Tensor,
    frame_cast: torch.Tensor,
    frame_xy: torch.Tensor | None,
    bank: BankDescriptors,
    start: int,
    stop: int,
    conf: MatchingConfig,
) -> tuple[torch.Tensor, ...]:
    """Matches of bank rows start..stop-1 (whole templates) with the N×D float32 `frame`
    (`frame_cast` in `conf.dtype`): frame indices, bank rows, templates, cosines."""
    templates = bank.template_ids[start:stop]
    rows_desc = bank.desc[start:stop]
    similarity = rows_desc.to(conf.dtype) @ frame_cast.t()  # m×N
    ratio_test = conf.max_ratio < 1.0 and similarity.shape[1] > 1
    # Two candidates at least: in bfloat16 the nearest may be the runner-up by a rounding.
    candidates = SECOND_CANDIDATES if ratio_test and conf.ratio_radius > 0 else 2
    nearest = _largest_columns(similarity, min(candidates, similarity.shape[1]))
    cosines = _exact_cosines(rows_desc.float(), frame, nearest)
    cosines, order = cosines.sort(dim=1, descending=True, stable=True)
    nearest = nearest.gather(1, order)
    best_sim, best_frame = cosines[:, 0], nearest[:, 0]
    keep = best_sim >= conf.min_similarity
    if ratio_test:
        keep &= _distinct(cosines, nearest, frame_xy, conf)
    if conf.mutual:
        # Per template and frame keypoint, the best similarity over the template's rows.
        local = templates - templates[0]
        template_best = torch.full(
            (int(local[-1]) + 1, similarity.shape[1]), -torch.inf, dtype=similarity.dtype
        )
        template_best.scatter_reduce_(0, local[:, None].expand_as(similarity), similarity, "amax")
        own = similarity.gather(1, best_frame[:, None])[:, 0]
        keep &= own >= template_best[local, best_frame]
    rows = torch.arange(start, stop)
    return best_frame[keep], rows[keep], templates[keep], best_sim[keep]


# Column slices of the two-level search in `_largest_columns` (a power of two: halved in turn).
SLICES = 16


def _largest_columns(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """m×k column indices of each row's k largest entries of the m×N `similarity`, largest
    first.

    Two levels, 1.5-2.5x faster than `topk` over N: columns g, g + G, g + 2G, ... (G = N // SLICES)
    form group g, whose maximum is an elementwise max over SLICES contiguous slices; the k best
    entries of a row lie in its k best groups (a column outside them has k larger group
    maxima above it), so `topk` runs over the G group maxima and then the k·SLICES members.
    """
    m, n = similarity.shape
    groups = n // SLICES
    if groups < 4 * k:
        return similarity.topk(k, dim=1).indices
    sliced = similarity[:, : groups * SLICES].view(m, SLICES, groups)
    best_groups = _slice_maxima(sliced).topk(k, dim=1).indices  # m×k
    members = best_groups[:, :, None] + groups * torch.arange(SLICES)
    rest = torch.arange(groups * SLICES, n).expand(m, -1)  # the N mod SLICES last columns
    columns = torch.cat([members.reshape(m, -1), rest], dim=1)
    return columns.gather(1, similarity.gather(1, columns).topk(k, dim=1).indices)


def _slice_maxima(sliced: torch.Tensor) -> torch.Tensor:
    """m×G elementwise maxima of the m×S×G `sliced` over its S slices (S a power of two), by
    halving: torch's `amax` over a middle axis took 1.6x longer on the votes' shapes."""
    while sliced.shape[1] > 1:
        half = sliced.shape[1] // 2
        sliced = torch.maximum(sliced[:, :half], sliced[:, half:])
    return sliced[:, 0]


def _exact_cosines(bank_rows: torch.Tensor, frame: torch.Tensor, nearest: torch.Tensor):
    """m×k float32 cosines of m bank rows (m×D) with their k frame candidates (`nearest`, m×k
    indices into the N×D `frame`): the candidates are found in `precision`, their cosines are
    compared in float32."""
    return torch.einsum("md,mkd->mk", bank_rows, frame[nearest])


# Candidates searched for the ratio test's second neighbour outside `ratio_radius`: on a 4-px grid
# an 8-px radius holds about 13 keypoints, so the first candidate outside it is nearly always
# among the 16 most similar.
SECOND_CANDIDATES = 16


def _distinct(cosines, nearest, frame_xy, conf: MatchingConfig) -> torch.Tensor:
    """m bool: Lowe's ratio test on Euclidean distances between unit descriptors, from each
    row's m×k most similar frame keypoints (`nearest`, most similar first) and their cosines.

    With `ratio_radius`, the second is the most similar candidate that lies outside the radius
    around the first; when none does, the last candidate stands in (at least as similar as any
    keypoint outside, so the test only gets stricter).
    """
    if conf.ratio_radius > 0:
        offset = frame_xy[nearest] - frame_xy[nearest[:, :1]]  # m×k×2
        far = (offset**2).sum(dim=2) > conf.ratio_radius**2
        far[:, -1] = True
        second_sim = cosines.gather(1, far.float().argmax(dim=1, keepdim=True))[:, 0]
    else:
        second_sim = cosines[:, 1]
    return _passes_ratio(cosines[:, 0], second_sim, conf.max_ratio)


def _passes_ratio(best_sim: torch.Tensor, second_sim: torch.Tensor, ratio: float) -> torch.Tensor:
    """Lowe's test on the Euclidean distances of unit descriptors, from their cosines."""
    best_distance = torch.sqrt(torch.clamp(2.0 - 2.0 * best_sim, min=0.0))
    second_distance = torch.sqrt(torch.clamp(2.0 - 2.0 * second_sim, min=0.0))
    return best_distance < ratio * second_distance


def _no_matches() -> TemplateMatches:
    empty = np.zeros(0, np.int64)
    return TemplateMatches(empty, empty.copy(), empty.copy(), np.zeros(0, np.float32))
