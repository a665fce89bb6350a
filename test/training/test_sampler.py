import torch

from ockd_ros.training.sampler import SamplerConfig, sample_queries


def _scene():
    """Two objects (ids 3 and 5) on a table (id 1); I2 is I1 shifted right by 4 px."""
    labels1 = torch.ones(40, 60, dtype=torch.long)
    labels1[5:25, 5:25] = 3
    labels1[10:35, 30:55] = 5
    labels2 = torch.roll(labels1, shifts=4, dims=1)
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")
    corr12 = torch.stack([xs + 4, ys], dim=-1)
    valid12 = corr12[..., 0] < 60
    return labels1, labels2, corr12, valid12


def test_queries_lie_on_objects_with_correct_positives():
    labels1, labels2, corr12, valid12 = _scene()
    conf = SamplerConfig(queries_per_object=10)
    queries = sample_queries(labels1, labels2, corr12, valid12, torch.tensor([3, 5]), conf,
                             torch.Generator().manual_seed(0))  # fmt: skip
    assert len(queries) == 20
    qx, qy = queries.query[:, 0].long(), queries.query[:, 1].long()
    torch.testing.assert_close(labels1[qy, qx], queries.object_id)
    torch.testing.assert_close(queries.positive, queries.query + torch.tensor([4.0, 0.0]))
    assert set(queries.object_id.tolist()) == {3, 5}


def test_intra_negatives_are_on_the_same_object_and_never_within_delta():
    labels1, labels2, corr12, valid12 = _scene()
    conf = SamplerConfig(queries_per_object=15, intra_negatives=200, delta=8.0)
    queries = sample_queries(labels1, labels2, corr12, valid12, torch.tensor([3, 5]), conf,
                             torch.Generator().manual_seed(1))  # fmt: skip
    for q in range(len(queries)):
        negatives = queries.intra_negatives[q][queries.intra_valid[q]]
        assert len(negatives) > 0
        nx, ny = negatives[:, 0].long(), negatives[:, 1].long()
        assert torch.all(labels2[ny, nx] == queries.object_id[q])
        distance = (negatives - queries.positive[q]).norm(dim=1)
        assert torch.all(distance > 8.0)


def test_inter_positives_and_negatives_split_by_object():
    labels1, labels2, corr12, valid12 = _scene()
    conf = SamplerConfig(queries_per_object=5)
    queries = sample_queries(labels1, labels2, corr12, valid12, torch.tensor([3, 5]), conf,
                             torch.Generator().manual_seed(2))  # fmt: skip
    for q in range(len(queries)):
        positives = queries.inter_positives[q][queries.inter_pos_valid[q]].long()
        negatives = queries.inter_negatives[q][queries.inter_neg_valid[q]].long()
        assert torch.all(labels2[positives[:, 1], positives[:, 0]] == queries.object_id[q])
        assert torch.all(labels2[negatives[:, 1], negatives[:, 0]] != queries.object_id[q])


def test_tables_are_not_queried_and_tiny_objects_are_skipped():
    labels1, labels2, corr12, valid12 = _scene()
    conf = SamplerConfig(min_object_pixels=450)  # object 3 has 400 pixels, object 5 has 625
    queries = sample_queries(labels1, labels2, corr12, valid12, torch.tensor([3, 5]), conf,
                             torch.Generator().manual_seed(3))  # fmt: skip
    assert set(queries.object_id.tolist()) == {5}
    empty = sample_queries(labels1, labels2, corr12, torch.zeros_like(valid12),
                           torch.tensor([3, 5]), conf, torch.Generator())  # fmt: skip
    assert len(empty) == 0 and empty.intra_negatives.shape == (0, conf.intra_negatives, 2)
