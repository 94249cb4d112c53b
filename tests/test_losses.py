import math

import pytest
import torch
import torch.nn.functional as F

from tkd.losses import (
    METHODS,
    ObjectiveConfig,
    kd_loss,
    logit_mse_loss,
    method_config,
    objective,
    pair_kd_loss,
    triplet_kd_loss,
)
from tkd.train import select_negatives


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_triplet_matches_torch_on_random_logits():
    a, p, n = logits(16, 10, seed=1), logits(16, 10, seed=2), logits(16, 10, seed=3)
    for margin in (0.5, 1.0, 5.0, 20.0):  # torch refuses margin 0
        for norm in (1.0, 2.0):
            ours = triplet_kd_loss(a, p, n, margin=margin, p=norm)
            ref = F.triplet_margin_loss(a, p, n, margin=margin, p=norm)
            torch.testing.assert_close(ours, ref)


def test_triplet_hand_computed():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # d(a, p) = 5, 1
    n = torch.tensor([[6.0, 8.0], [0.0, 2.0]])  # d(a, n) = 10, 2
    # max(0, 5 - 10 + 5) = 0, max(0, 1 - 2 + 5) = 4 -> mean 2
    assert triplet_kd_loss(a, p, n, margin=5.0).item() == pytest.approx(2.0, abs=1e-4)


def test_triplet_on_softened_probabilities():
    a, p, n = logits(8, 5, seed=1), logits(8, 5, seed=2), logits(8, 5, seed=3)
    soft = [F.softmax(z / 2.0, dim=1) for z in (a, p, n)]
    ref = F.triplet_margin_loss(*soft, margin=0.5)
    torch.testing.assert_close(triplet_kd_loss(a, p, n, margin=0.5, temperature=2.0), ref)


def test_triplet_valid_mask_drops_rows_and_empty_mask_gives_zero():
    a, p, n = logits(4, 3, seed=1), logits(4, 3, seed=2), logits(4, 3, seed=3)
    valid = torch.tensor([True, False, True, False])
    expected = F.triplet_margin_loss(a[valid], p[valid], n[valid], margin=5.0)
    torch.testing.assert_close(triplet_kd_loss(a, p, n, valid=valid), expected)
    p.requires_grad_(True)
    none = triplet_kd_loss(a, p, n, valid=torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0 and math.isfinite(none.item())
    none.backward()
    assert torch.isfinite(p.grad).all()


def test_gradients_reach_student_never_teacher():
    teacher = logits(6, 4, seed=1).requires_grad_(True)
    student = logits(6, 4, seed=2).requires_grad_(True)
    negative = logits(6, 4, seed=3).requires_grad_(True)
    loss = triplet_kd_loss(teacher, student, negative, margin=50.0) + kd_loss(student, teacher)
    loss = loss + logit_mse_loss(student, teacher) + pair_kd_loss(teacher, student, teacher)
    loss.backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0 and negative.grad.abs().sum() > 0


def test_kd_loss_hand_computed():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0]])
    T = 2.0
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    expected = (pt * (pt.log() - ps.log())).sum() * T * T
    torch.testing.assert_close(kd_loss(s, t, T), expected)
    assert kd_loss(t, t, 3.0).abs().item() < 1e-6


def test_logit_mse_hand_computed():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert logit_mse_loss(s, t).item() == pytest.approx((1 + 4 + 0 + 4) / 4)


def test_pair_loss_hand_computed():
    t = torch.tensor([[0.0, 0.0]])
    s = torch.tensor([[3.0, 4.0]])  # ||s - t|| = 5
    t_neg = torch.tensor([[6.0, 4.0]])  # ||s - t_neg|| = 3
    # ||s - t|| + max(0, 5 - ||s - t_neg||) = 5 + 2
    assert pair_kd_loss(t, s, t_neg, margin=5.0).item() == pytest.approx(7.0, abs=1e-4)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: triplet_kd_loss(logits(4, 3), logits(4, 3), logits(4, 3), margin=-1), "margin"),
        (lambda: triplet_kd_loss(logits(4, 3), logits(4, 2), logits(4, 3)), "student_logits"),
        (lambda: triplet_kd_loss(logits(4, 3), logits(4, 3), logits(3)), "negative_logits"),
        (lambda: kd_loss(logits(4, 3), logits(4, 3), temperature=0), "temperature"),
        (lambda: kd_loss(logits(4, 3), torch.full((4, 3), math.nan)), "teacher_logits"),
        (lambda: logit_mse_loss(logits(4, 3), logits(5, 3)), "teacher_logits"),
        (lambda: pair_kd_loss(logits(4, 3), logits(4, 3), logits(4, 3), margin=math.inf),
         "margin"),
        (lambda: ObjectiveConfig(negatives="hardest"), "negatives"),
        (lambda: ObjectiveConfig(kd_weight=-1), "kd_weight"),
        (lambda: ObjectiveConfig(ce_weight=0), "weight"),
        (lambda: method_config("fitnet"), "method"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError, match="batch-semihard"):
        ObjectiveConfig(negatives="random")


def test_objective_combines_weighted_terms():
    s, t, n = logits(8, 5, seed=1), logits(8, 5, seed=2), logits(8, 5, seed=3)
    y = torch.arange(8) % 5
    config = ObjectiveConfig(kd_weight=0.5, temperature=2.0, triplet_weight=2.0, margin=5.0)
    parts = objective(config, s, y, t, negative_logits=n)
    assert set(parts) == {"total", "ce", "kd", "triplet"}
    expected = F.cross_entropy(s, y) + 0.5 * kd_loss(s, t, 2.0) + 2.0 * triplet_kd_loss(t, s, n)
    torch.testing.assert_close(parts["total"], expected)


@pytest.mark.parametrize("strategy", ["batch-random", "batch-hard", "batch-semihard"])
def test_objective_with_in_batch_negatives(strategy):
    s, t = logits(12, 4, seed=1), logits(12, 4, seed=2)
    y = torch.arange(12) % 4
    for method in ("triplet", "pair"):
        config = method_config(method, negatives=strategy)
        s_neg, t_neg, valid = select_negatives(config, y, t, s, None, None,
                                               torch.Generator().manual_seed(0))
        assert valid.all() and s_neg.shape == t_neg.shape == s.shape
        parts = objective(config, s, y, t, s_neg, t_neg, valid)
        assert torch.isfinite(parts["total"])


def test_objective_does_not_mine_in_batch_negatives_itself():
    s, t = logits(6, 3, seed=1), logits(6, 3, seed=2)
    y = torch.arange(6) % 3
    with pytest.raises(ValueError, match="negative_logits"):
        objective(method_config("triplet", negatives="batch-hard"), s, y, t)
    with pytest.raises(ValueError, match="negative_teacher_logits"):
        objective(method_config("pair", negatives="batch-hard"), s, y, t)


def test_single_class_batch_is_finite_and_zero_metric_term():
    s, t = logits(5, 3, seed=1).requires_grad_(True), logits(5, 3, seed=2)
    y = torch.zeros(5, dtype=torch.long)
    config = method_config("triplet", negatives="batch-hard")
    s_neg, t_neg, valid = select_negatives(config, y, t, s, None, None, None)
    assert not valid.any()
    parts = objective(config, s, y, t, s_neg, t_neg, valid)
    assert parts["triplet"].item() == 0.0
    parts["total"].backward()
    assert torch.isfinite(s.grad).all()


def test_sample_strategy_requires_negatives():
    s, t = logits(4, 3), logits(4, 3)
    with pytest.raises(ValueError, match="negative_logits"):
        objective(method_config("triplet"), s, torch.zeros(4, dtype=torch.long), t)


def test_methods_match_the_papers_recipes():
    triplet = method_config("triplet")
    assert (triplet.ce_weight, triplet.triplet_weight, triplet.margin) == (1.0, 2.0, 5.0)
    assert triplet.kd_weight == 0 and triplet.negatives == "sample"
    rewrite = method_config("triplet-kd")
    assert (rewrite.kd_weight, rewrite.temperature, rewrite.triplet_weight) == (1.0, 1.0, 2.0)
    assert set(METHODS) == {"ce", "ce-mse", "logit-mse", "kd", "pair", "triplet", "triplet-kd"}
    logit = method_config("logit-mse")  # Ba & Caruana: regression on the logits, no labels
    assert (logit.ce_weight, logit.mse_weight, logit.terms) == (0.0, 1.0, ["mse"])
    assert method_config("ce-mse").terms == ["ce", "mse"]
    pair = method_config("pair")
    assert pair.needs_negatives and not pair.student_sees_negatives
    assert triplet.student_sees_negatives
    assert not method_config("triplet", negatives="batch-hard").student_sees_negatives
