import numpy as np
import pytest
import torch

from ockd_ros.features.types import Features
from ockd_ros.pose.matching import (
    BankDescriptors,
    MatchingConfig,
    TemplateMatches,
    _largest_columns,
    _most_voted,
    _passes,
    _tally,
    first_of_each_group,
    match_templates,
    select_object,
    shortlist_templates,
)

NO_RATIO = MatchingConfig(max_ratio=1.0)


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _pairs(matches):
    columns = (matches.template, matches.bank_index, matches.frame_index)
    return sorted(zip(*(c.tolist() for c in columns), strict=True))


def test_mutual_matches_on_hand_made_descriptors():
    e = np.eye(4, dtype=np.float32)
    frame = _unit([e[0], e[1], e[2], e[0] + 0.1 * e[3]])
    # Template 0: rows 0-1, template 1: rows 2-4 (one more keypoint, so padding is exercised).
    bank = _unit([e[0] + 0.2 * e[1], e[3], e[1], e[2] + 0.1 * e[0], e[2] + 0.5 * e[3]])
    bank_desc = BankDescriptors(bank, np.array([0, 0, 1, 1, 1]), 2)
    matches = match_templates(frame, bank_desc, NO_RATIO)
    # Template 0: bank 0 ↔ frame 0 is mutual; bank 1 (e3) likes frame 3 but frame 3 prefers
    # bank 0. Template 1: bank 2 ↔ frame 1 and bank 3 ↔ frame 2; bank 4's best frame is also
    # frame 2, which prefers bank 3.
    assert _pairs(matches) == [(0, 0, 0), (1, 2, 1), (1, 3, 2)]
    np.testing.assert_allclose(matches.similarity, np.sum(frame[[0, 1, 2]] * bank[[0, 2, 3]], 1))
    assert matches.counts(2).tolist() == [1, 2]
    assert matches.best_templates(3, 2) == [1, 0]


def test_ratio_test_drops_ambiguous_template_keypoints():
    frame = _unit([[1.0, -0.05, 0.0], [1.0, 0.05, 0.0], [0.0, 0.0, 1.0]])
    bank = _unit([[1.0, 0.001, 0.0], [0.0, 0.1, 1.0]])
    bank_desc = BankDescriptors(bank, np.array([0, 0]), 1)
    assert _pairs(match_templates(frame, bank_desc, NO_RATIO)) == [(0, 0, 1), (0, 1, 2)]
    # Bank row 0 is almost as close to frame rows 0 and 1: ambiguous, dropped by the ratio test.
    assert _pairs(match_templates(frame, bank_desc, MatchingConfig(max_ratio=0.8))) == [(0, 1, 2)]


def test_ratio_radius_ignores_neighbours_of_the_best_keypoint():
    # Frame rows 0 and 1 are neighbouring grid points sharing a descriptor; row 2 is far away.
    frame = _unit([[1.0, 0.01, 0.0], [1.0, -0.01, 0.0], [0.6, 0.8, 0.0]])
    xy = np.array([[10.0, 10.0], [14.0, 10.0], [60.0, 40.0]])
    bank_desc = BankDescriptors(_unit([[1.0, 0.001, 0.0]]), np.array([0]), 1)
    plain = MatchingConfig(max_ratio=0.8)
    assert len(match_templates(frame, bank_desc, plain, xy)) == 0  # neighbour counts as second
    spatial = MatchingConfig(max_ratio=0.8, ratio_radius=8.0)
    assert _pairs(match_templates(frame, bank_desc, spatial, xy)) == [(0, 0, 0)]
    too_close = xy.copy()
    too_close[2] = (16.0, 10.0)  # nothing outside the radius: no second, nothing ambiguous
    assert _pairs(match_templates(frame, bank_desc, spatial, too_close)) == [(0, 0, 0)]
    with pytest.raises(ValueError, match="frame keypoints"):
        match_templates(frame, bank_desc, spatial)


def test_without_mutual_check_several_rows_may_match_one_keypoint():
    frame = _unit([[1.0, 0.0], [0.0, 1.0]])
    bank_desc = BankDescriptors(_unit([[1.0, 0.1], [1.0, 0.2]]), np.array([0, 0]), 1)
    assert _pairs(match_templates(frame, bank_desc, NO_RATIO)) == [(0, 0, 0)]
    one_way = MatchingConfig(max_ratio=1.0, mutual=False)
    assert _pairs(match_templates(frame, bank_desc, one_way)) == [(0, 0, 0), (0, 1, 0)]


def test_shortlist_matches_only_the_templates_that_see_the_frame():
    rng = np.random.default_rng(3)
    frame = _unit(rng.normal(size=(40, 16)))
    # Templates 0 and 2 are noise; template 1 holds (noisy copies of) frame descriptors.
    noise = _unit(rng.normal(size=(20, 16)))
    seen = _unit(frame[::2] + 0.05 * rng.normal(size=(20, 16)))
    bank = np.concatenate([noise[:10], seen, noise[10:]])
    bank_desc = BankDescriptors(bank, np.repeat([0, 1, 2], [10, 20, 10]), 3)
    conf = MatchingConfig(max_ratio=0.9, shortlist=1, shortlist_rows=8, shortlist_frame_step=1)
    assert shortlist_templates(frame, bank_desc, conf).tolist() == [1]
    matches = match_templates(frame, bank_desc, conf)
    assert set(matches.template.tolist()) == {1}
    # Rows are numbered in the whole bank, and each points at the frame row it was copied from.
    assert np.all((matches.bank_index >= 10) & (matches.bank_index < 30))
    assert np.array_equal(matches.frame_index, 2 * (matches.bank_index - 10))


def test_strongest_rows_of_all_or_some_templates():
    # Template 0: rows 0-2, template 1: none, template 2: rows 3-7.
    bank_desc = BankDescriptors(np.zeros((8, 4), np.float32), np.array([0, 0, 0, 2, 2, 2, 2, 2]), 3)
    assert bank_desc.strongest_rows(2).tolist() == [0, 1, 3, 4]
    assert bank_desc.strongest_rows(4, np.array([1, 2])).tolist() == [3, 4, 5, 6]
    assert bank_desc.strongest_rows(9, np.array([0])).tolist() == [0, 1, 2]
    assert bank_desc.strongest_rows(2, np.array([], int)).tolist() == []
    assert bank_desc.strongest_rows(None, np.array([0, 2])).tolist() == list(range(8))


def test_preselection_keeps_the_template_that_sees_the_frame():
    rng = np.random.default_rng(4)
    frame = _unit(rng.normal(size=(60, 16)))
    # Ten templates of 12 rows: template 6 holds noisy copies of frame descriptors.
    bank = _unit(rng.normal(size=(120, 16)))
    bank[72:84] = _unit(frame[:12] + 0.05 * rng.normal(size=(12, 16)))
    bank_desc = BankDescriptors(bank, np.repeat(np.arange(10), 12), 10)
    conf = MatchingConfig(
        shortlist=2, shortlist_rows=12, shortlist_frame_step=1, preselect=3, preselect_rows=3
    )
    assert shortlist_templates(frame, bank_desc, conf)[0] == 6
    with pytest.raises(ValueError, match="preselect"):
        MatchingConfig(preselect=-1).validate()


def test_the_second_vote_reuses_the_first_votes_tests(rng):
    """The shortlist is the one two independent votes give: the rows both votes use are
    tested once, with the same outcome."""
    frame = _unit(rng.normal(size=(200, 32)))
    bank = _unit(rng.normal(size=(600, 32)))
    bank[:300] = _unit(frame[rng.integers(0, 200, 300)] + 0.3 * rng.normal(size=(300, 32)))
    bank_desc = BankDescriptors(bank, np.sort(rng.integers(0, 30, 600)), 30)
    conf = MatchingConfig(shortlist=4, shortlist_rows=12, shortlist_frame_step=2, preselect=10,
                          preselect_rows=4)  # fmt: skip
    sparse = torch.from_numpy(frame[::2].copy())

    def vote(rows):
        return _tally(bank_desc, rows, _passes(sparse, bank_desc, rows, conf))

    first = np.sort(_most_voted(vote(bank_desc.strongest_rows(4)), 10, None))
    expected = _most_voted(vote(bank_desc.strongest_rows(12, first)), 4, None)
    assert len(expected) == 4
    np.testing.assert_array_equal(shortlist_templates(frame, bank_desc, conf), expected)


def test_each_group_of_templates_is_shortlisted_on_its_own():
    """Templates 1 and 2 see the frame best; template 4, of the second group (another scale),
    sees it less well than they do but better than its own group's noise: it is kept."""
    rng = np.random.default_rng(5)
    frame = _unit(rng.normal(size=(40, 16)))
    bank = _unit(rng.normal(size=(60, 16)))
    bank[10:20] = _unit(frame[:10] + 0.05 * rng.normal(size=(10, 16)))
    bank[20:30] = _unit(frame[10:20] + 0.05 * rng.normal(size=(10, 16)))
    bank[40:45] = _unit(frame[20:25] + 0.05 * rng.normal(size=(5, 16)))
    ids = np.repeat(np.arange(6), 10)
    conf = MatchingConfig(max_ratio=0.9, shortlist=2, shortlist_rows=10, shortlist_frame_step=1)
    assert shortlist_templates(frame, BankDescriptors(bank, ids, 6), conf).tolist() == [1, 2]
    grouped = BankDescriptors(bank, ids, 6, groups=np.array([0, 0, 0, 1, 1, 1]))
    shortlist = shortlist_templates(frame, grouped, conf).tolist()
    assert shortlist[:2] == [1, 2] and 4 in shortlist and len(shortlist) == 4
    matches = match_templates(frame, grouped, conf)
    assert matches.best_templates(1, 6, grouped.groups) == [1, 4]
    with pytest.raises(ValueError, match="groups"):
        BankDescriptors(bank, ids, 6, groups=np.zeros(5, int))


def test_best_templates_of_each_group():
    order = np.array([5, 1, 4, 0, 2, 3])
    groups = np.array([0, 0, 1, 1, 1, 0])
    assert first_of_each_group(order, 2, None).tolist() == [5, 1]
    assert first_of_each_group(order, 2, groups).tolist() == [5, 1, 4, 2]
    assert first_of_each_group(order, 1, groups).tolist() == [5, 4]
    template = np.array([1, 1, 1, 0, 3, 3, 2])
    matches = TemplateMatches(*(np.arange(7),) * 2, template, np.ones(7, np.float32))
    assert matches.best_templates(1, 4) == [1]
    assert matches.best_templates(1, 4, np.array([0, 0, 1, 1])) == [1, 3]


def test_shortlist_settings_are_checked():
    with pytest.raises(ValueError, match="shortlist"):
        MatchingConfig(shortlist=-1).validate()
    with pytest.raises(ValueError, match="shortlist"):
        MatchingConfig(shortlist=2, shortlist_rows=0).validate()
    with pytest.raises(ValueError, match="spread_share"):
        MatchingConfig(spread_rows=32, spread_share=0.0).validate()


def _reference_mutual_nn(frame, bank, template_ids, min_similarity):
    """Plain per-template loop: the behaviour the batched version must reproduce."""
    pairs = []
    for template in np.unique(template_ids):
        rows = np.flatnonzero(template_ids == template)
        similarity = bank[rows] @ frame.T
        for p, n in enumerate(similarity.argmax(1)):
            if similarity[:, n].argmax() == p and similarity[p, n] >= min_similarity:
                pairs.append((int(template), int(rows[p]), int(n)))
    return sorted(pairs)


@pytest.mark.parametrize("max_entries", [1, 500, 1 << 24])
def test_batched_matching_equals_a_loop_over_templates(rng, max_entries):
    frame = _unit(rng.normal(size=(60, 16)))
    template_ids = np.sort(rng.integers(0, 9, 200))
    template_ids[template_ids == 4] = 5  # one template without keypoints
    bank = _unit(rng.normal(size=(200, 16)))
    bank_desc = BankDescriptors(bank, template_ids, 9)
    conf = MatchingConfig(max_ratio=1.0, min_similarity=0.2, max_entries=max_entries)
    expected = _reference_mutual_nn(frame, bank, template_ids, 0.2)
    assert expected and _pairs(match_templates(frame, bank_desc, conf)) == expected


def test_empty_inputs_and_wrong_dimensions(rng):
    bank_desc = BankDescriptors(_unit(rng.normal(size=(5, 8))), np.zeros(5, int), 3)
    assert len(match_templates(np.zeros((0, 8), np.float32), bank_desc)) == 0
    empty_bank = BankDescriptors(np.zeros((0, 8), np.float32), np.zeros(0, int), 2)
    assert len(match_templates(_unit(rng.normal(size=(4, 8))), empty_bank)) == 0
    with pytest.raises(ValueError, match="dimension"):
        match_templates(np.ones((3, 7), np.float32), bank_desc)
    with pytest.raises(ValueError, match="ascending"):
        BankDescriptors(np.ones((2, 8), np.float32), np.array([1, 0]), 2)
    with pytest.raises(ValueError, match="min_similarity"):
        invalid = MatchingConfig(min_similarity=1.5)
        match_templates(_unit(rng.normal(size=(4, 8))), bank_desc, invalid)


def test_select_object_by_inter_descriptor():
    inter = _unit([[1, 0], [0, 1], [1, 0.2], [-1, 0]])
    features = Features(
        np.zeros((4, 2), np.float32),
        np.ones(4, np.float32),
        _unit(np.ones((4, 3))),
        inter,
        (64, 64),
    )
    assert select_object(features, np.array([1.0, 0.0]), 0.5).tolist() == [0, 2]
    assert select_object(features, None, 0.5).tolist() == [0, 1, 2, 3]
    sift_like = Features(features.keypoints, features.scores, features.desc_intra, None, (64, 64))
    assert select_object(sift_like, np.array([1.0, 0.0]), 0.5).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(("columns", "k"), [(5, 2), (1003, 2), (1003, 16), (4096, 16)])
def test_largest_columns_are_those_of_a_full_sort(rng, columns, k):
    # Few distinct values, so ties are frequent; the N mod 16 last columns take another path.
    similarity = torch.from_numpy(rng.integers(0, 50, (30, columns)).astype(np.float32))
    similarity[3, -1] = 99.0  # a row whose maximum sits in the last columns
    found = _largest_columns(similarity, k)
    assert found.shape == (30, k)
    assert all(len(set(row)) == k for row in found.tolist())  # k distinct columns per row
    expected = similarity.sort(dim=1, descending=True).values[:, :k]
    assert torch.equal(similarity.gather(1, found), expected)  # the same values, largest first


@pytest.mark.parametrize("mutual", [True, False])
def test_bfloat16_products_give_the_float32_matches(rng, mutual):
    # Noisy copies of frame descriptors among distractors: the matches are clear, not ties.
    frame = _unit(rng.normal(size=(300, 64)))
    bank = _unit(np.concatenate([frame[:120] + 0.2 * rng.normal(size=(120, 64)),
                                 rng.normal(size=(80, 64))]))  # fmt: skip
    bank_desc = BankDescriptors(bank, np.repeat([0, 1, 2, 3], 50), 4)
    xy = rng.uniform(0, 640, (300, 2))
    found = {}
    for precision in ("float32", "bfloat16"):
        conf = MatchingConfig(max_ratio=0.9, ratio_radius=8.0, mutual=mutual, precision=precision)
        matches = match_templates(frame, bank_desc, conf, xy)
        found[precision] = matches
        # Cosines are reported in float32 whatever the products were computed in.
        np.testing.assert_allclose(
            matches.similarity, np.sum(frame[matches.frame_index] * bank[matches.bank_index], 1),
            rtol=1e-5,
        )  # fmt: skip
    assert len(found["float32"]) >= 100
    assert _pairs(found["bfloat16"]) == _pairs(found["float32"])


def test_a_float16_bank_matches_as_its_float32_values_do(rng):
    frame = _unit(rng.normal(size=(300, 64)))
    bank = _unit(np.concatenate([frame[:120] + 0.2 * rng.normal(size=(120, 64)),
                                 rng.normal(size=(80, 64))])).astype(np.float16)  # fmt: skip
    template_ids = np.repeat([0, 1, 2, 3], 50)
    held = BankDescriptors(bank, template_ids, 4)
    assert held.desc.dtype == torch.float16  # held as given, not copied to float32
    widened = BankDescriptors(bank.astype(np.float32), template_ids, 4)
    conf = MatchingConfig(max_ratio=0.9, ratio_radius=8.0, mutual=False, shortlist=2,
                          shortlist_rows=20, preselect=3, preselect_rows=10)  # fmt: skip
    xy = rng.uniform(0, 640, (300, 2))
    matches, expected = (match_templates(frame, b, conf, xy) for b in (held, widened))
    assert len(expected) >= 20
    assert _pairs(matches) == _pairs(expected)
    np.testing.assert_array_equal(matches.similarity, expected.similarity)


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision"):
        MatchingConfig(precision="float16").validate()
    with pytest.raises(ValueError, match="bank_precision"):
        MatchingConfig(bank_precision="bfloat16").validate()
    assert MatchingConfig(precision="auto").dtype in (torch.float32, torch.bfloat16)
