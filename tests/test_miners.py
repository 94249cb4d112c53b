import pytest
import torch

from tkd.miners import (
    NegativeSampler,
    batch_hard,
    batch_positives,
    batch_random,
    batch_semihard,
    fixed_negatives,
    mine_negatives,
)


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


# ------------------------------------------------ FaceNet's semi-hard rule, with candidates ----


def test_batch_semihard_is_facenets_rule_with_the_farthest_as_fallback():
    """Hand-built 1-D batch. Row 0: candidates at distance 1 (closer than the positive, 3),
    5 and 4: the closest farther one is row 3. Row 1: every other-class candidate (98, 96) is
    closer than its positive (100): the FARTHEST one, row 0 (batch-hard would pick row 3).
    Row 2: both farther than its positive (0.2): the closer, row 3 (0.8 < 1.2). Row 3:
    distances 2, 1, 5 against a positive at 1.5: row 0."""
    labels = torch.tensor([0, 1, 1, 2])
    anchor = torch.tensor([[0.0], [100.0], [3.2], [0.0]])
    positive = torch.tensor([[3.0], [0.0], [3.0], [1.5]])
    candidates = torch.tensor([[2.0], [1.0], [5.0], [4.0]])
    index, valid = batch_semihard(anchor, positive, candidates, labels)
    assert index.tolist() == [3, 0, 3, 0] and valid.all()
    assert batch_hard(anchor, candidates, labels)[0].tolist()[1] == 3  # hard differs on row 1
    mined, _ = mine_negatives("batch-semihard", labels, anchor, positive, candidates)
    assert mined.tolist() == [3, 0, 3, 0]


def test_semihard_needs_strictly_farther_than_the_positive():
    labels = torch.tensor([0, 1, 2])
    anchor = torch.zeros(3, 1)
    positive = torch.tensor([[2.0], [9.0], [9.0]])
    candidates = torch.tensor([[9.0], [2.0], [3.0]])  # row 0: d=2 ties the positive; d=3 wins
    index, _ = batch_semihard(anchor, positive, candidates, labels)
    assert index[0].item() == 2


def reference_semihard(anchor, positive, candidates, labels):
    """FaceNet's rule, one row at a time."""
    out = []
    for i in range(len(labels)):
        d_ap = (anchor[i] - positive[i]).norm().item()
        others = [(anchor[i] - candidates[j]).norm().item() for j in range(len(labels))]
        allowed = [j for j in range(len(labels)) if labels[j] != labels[i]]
        farther = [j for j in allowed if others[j] > d_ap]
        out.append(min(farther, key=lambda j: others[j]) if farther
                   else max(allowed, key=lambda j: others[j]))
    return out


def test_mine_negatives_ranks_by_distance_to_the_candidates():
    """The pair loss's case: anchor = student logits, candidates = teacher logits (the
    positive of row i is its own teacher logits). The picks follow ``||a_i - c_j||``, which
    differ from what ranking against the positives would give."""
    differs = 0
    for seed in range(10):
        labels, student, teacher = batch(n=16, classes=4, dim=5, seed=seed)
        hard, _ = mine_negatives("batch-hard", labels, student, teacher, candidates=teacher)
        distance = torch.cdist(student, teacher).masked_fill(labels[:, None] == labels, 1e9)
        assert hard.tolist() == distance.argmin(1).tolist()
        semi, _ = mine_negatives("batch-semihard", labels, student, teacher, candidates=teacher)
        assert semi.tolist() == reference_semihard(student, teacher, teacher, labels)
        # against candidates other than the positives (the triplet's anchor = teacher,
        # positive = candidates = student is the default)
        other = teacher.flip(1) * 2
        semi, _ = mine_negatives("batch-semihard", labels, student, teacher, candidates=other)
        assert semi.tolist() == reference_semihard(student, teacher, other, labels)
        moved, _ = mine_negatives("batch-hard", labels, student, teacher, candidates=other)
        differs += moved.tolist() != hard.tolist()
    assert differs > 0  # the candidates, not the positives, are what is ranked


def test_batch_positives_pick_another_sample_of_the_same_class():
    for seed in range(20):
        labels, _, _ = batch(seed=seed)
        index, valid = batch_positives(labels, torch.Generator().manual_seed(seed))
        counts = torch.bincount(labels, minlength=4)
        assert (valid == (counts[labels] > 1)).all()
        assert (labels[index] == labels).all()
        assert (index[valid] != torch.arange(len(labels))[valid]).all()


def test_a_sample_alone_in_its_class_has_no_positive():
    index, valid = batch_positives(torch.tensor([0, 1, 1, 2]))
    assert valid.tolist() == [False, True, True, False]
    assert index.tolist()[1:3] == [2, 1]


# ------------------------------------------------- the paper's sampled negatives ----


def test_negative_sampler_other_class_uniform_and_seeded():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    sampler = NegativeSampler(labels, num_classes=5)  # class 4 is empty: allowed
    anchors = torch.tensor([0, 1, 2, 3]).repeat_interleave(5000)
    negatives = sampler.draw(anchors, torch.Generator().manual_seed(0))
    assert negatives.dtype == torch.int64 and negatives.shape == anchors.shape
    assert bool((labels[negatives] != anchors).all())
    for y in range(4):
        picked = negatives[anchors == y]
        others = torch.nonzero(labels != y).view(-1)
        counts = torch.bincount(picked, minlength=len(labels))[others].float()
        expected = 5000 / len(others)
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 30, (y, counts)  # dof <= 8; p(chi2 > 30) < 0.001
        assert bool((counts > 0).all())
    again = sampler.draw(anchors, torch.Generator().manual_seed(0))
    assert torch.equal(negatives, again)


def test_negative_sampler_single_class_raises():
    with pytest.raises(ValueError, match="same class"):
        NegativeSampler(torch.zeros(5, dtype=torch.int64), num_classes=3)


def test_fixed_negatives():
    labels = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(0))
    fixed = fixed_negatives(labels, 10, seed=7)
    assert fixed.shape == (500,) and bool((labels[fixed] != labels).all())
    assert torch.equal(fixed, fixed_negatives(labels, 10, seed=7))
