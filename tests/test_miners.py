import pytest
import torch

from tkd.miners import batch_hard, batch_random, batch_semihard, mine_negatives


def batch(n=32, classes=4, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return labels, torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)


@pytest.mark.parametrize("strategy", ["batch-random", "batch-hard", "batch-semihard"])
def test_miners_only_pick_other_class_samples(strategy):
    for seed in range(20):
        labels, anchor, positive = batch(seed=seed)
        index, valid = mine_negatives(strategy, labels, anchor, positive,
                                      generator=torch.Generator().manual_seed(seed))
        assert index.shape == labels.shape and valid.all()
        assert (labels[index] != labels).all()


def test_batch_hard_picks_the_closest_other_class():
    labels = torch.tensor([0, 0, 1, 1])
    anchor = torch.tensor([[0.0], [10.0], [20.0], [30.0]])
    candidates = torch.tensor([[0.0], [10.0], [11.0], [1.0]])
    index, _ = batch_hard(anchor, candidates, labels)
    assert index.tolist() == [3, 2, 1, 1]


def test_batch_semihard_skips_negatives_closer_than_the_positive():
    labels = torch.tensor([0, 1, 1])
    anchor = torch.tensor([[0.0], [0.0], [0.0]])
    positive = torch.tensor([[2.0], [5.0], [5.0]])
    candidates = torch.tensor([[2.0], [1.0], [3.0]])  # for row 0: d=1 (too hard), d=3 (semi)
    index, valid = batch_semihard(anchor, positive, candidates, labels)
    assert index[0].item() == 2 and valid.all()


def test_rows_without_other_class_are_invalid_not_crashing():
    labels = torch.tensor([0, 0, 0, 1])
    anchor = torch.randn(4, 3)
    index, valid = batch_hard(anchor, anchor, labels)
    assert valid.tolist() == [True, True, True, True]
    labels = torch.zeros(4, dtype=torch.long)
    for index, valid in (batch_random(labels), batch_hard(anchor, anchor, labels)):
        assert not valid.any() and index.tolist() == [0, 1, 2, 3]


def test_batch_random_is_repeatable_and_spread():
    labels = torch.tensor([0, 1, 2, 3] * 4)
    a, _ = batch_random(labels, torch.Generator().manual_seed(3))
    b, _ = batch_random(labels, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    picks = torch.stack([batch_random(labels, torch.Generator().manual_seed(s))[0][0]
                         for s in range(300)])
    assert len(set(picks.tolist())) == 12  # all other-class samples of row 0 get drawn


def test_sample_strategy_is_not_an_in_batch_miner():
    labels, anchor, positive = batch()
    with pytest.raises(ValueError, match="NegativeSampler"):
        mine_negatives("sample", labels, anchor, positive)
    with pytest.raises(ValueError, match="batch-random"):
        mine_negatives("nearest", labels, anchor, positive)
