"""The objective: the term table, who picks the negatives, the weighted sum, the methods."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import select_negatives
from tkd.losses import (
    dist_loss,
    kd_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    standardize_logits,
    student_triplet_loss,
    triplet_kd_loss,
)
from tkd.miners import mine_negatives
from tkd.objective import (
    METHODS,
    TABLE,
    TERMS,
    ObjectiveConfig,
    method_config,
    objective,
    pick_negatives,
)


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError, match="batch-semihard"):
        ObjectiveConfig(negatives="random")


def test_objective_combines_weighted_terms():
    s, t, n = logits(8, 5, seed=1), logits(8, 5, seed=2), logits(8, 5, seed=3)
    y = torch.arange(8) % 5
    config = ObjectiveConfig(kd_weight=0.5, temperature=2.0, triplet_weight=2.0, margin=5.0)
    parts = objective(config, student_logits=s, labels=y, teacher_logits=t, negative_logits=n)
    assert set(parts) == {"total", "ce", "kd", "triplet"}
    expected = F.cross_entropy(s, y) + 0.5 * kd_loss(t, s, 2.0) + 2.0 * triplet_kd_loss(t, s, n)
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
        parts = objective(config, student_logits=s, labels=y, teacher_logits=t,
                          negative_logits=s_neg, negative_teacher_logits=t_neg, valid=valid)
        assert torch.isfinite(parts["total"])


def test_objective_does_not_mine_in_batch_negatives_itself():
    s, t = logits(6, 3, seed=1), logits(6, 3, seed=2)
    y = torch.arange(6) % 3
    with pytest.raises(ValueError, match="negative_logits"):
        objective(method_config("triplet", negatives="batch-hard"), student_logits=s, labels=y,
                  teacher_logits=t)
    with pytest.raises(ValueError, match="negative_teacher_logits"):
        objective(method_config("pair", negatives="batch-hard"), student_logits=s, labels=y,
                  teacher_logits=t)


def test_single_class_batch_is_finite_and_zero_metric_term():
    s, t = logits(5, 3, seed=1).requires_grad_(True), logits(5, 3, seed=2)
    y = torch.zeros(5, dtype=torch.long)
    config = method_config("triplet", negatives="batch-hard")
    s_neg, t_neg, valid = select_negatives(config, y, t, s, None, None, None)
    assert not valid.any()
    parts = objective(config, student_logits=s, labels=y, teacher_logits=t,
                          negative_logits=s_neg, negative_teacher_logits=t_neg, valid=valid)
    assert parts["triplet"].item() == 0.0
    parts["total"].backward()
    assert torch.isfinite(s.grad).all()


def test_sample_strategy_requires_negatives():
    s, t = logits(4, 3), logits(4, 3)
    with pytest.raises(ValueError, match="negative_logits"):
        objective(method_config("triplet"), student_logits=s,
                  labels=torch.zeros(4, dtype=torch.long), teacher_logits=t)


def test_methods_match_the_papers_recipes():
    triplet = method_config("triplet")
    assert (triplet.ce_weight, triplet.triplet_weight, triplet.margin) == (1.0, 2.0, 5.0)
    assert triplet.kd_weight == 0 and triplet.negatives == "sample"
    rewrite = method_config("triplet-kd")
    assert (rewrite.kd_weight, rewrite.temperature, rewrite.triplet_weight) == (1.0, 1.0, 2.0)
    assert set(METHODS) == {"ce", "ce-mse", "logit-mse", "kd", "pair", "triplet", "triplet-kd",
                            "rkd", "pkt", "hint", "dkd", "dist", "kd-ls", "triplet-ls",
                            "triplet-self"}
    dkd, dist, ls = method_config("dkd"), method_config("dist"), method_config("kd-ls")
    assert (dkd.dkd_alpha, dkd.dkd_beta, dkd.temperature, dkd.dkd_warmup) == (1, 8, 4, 20 / 240)
    assert (dist.dist_beta, dist.dist_gamma, dist.temperature) == (1, 1, 1)
    assert (ls.ce_weight, ls.kd_weight, ls.temperature, ls.standardize) == (0.1, 9, 2, True)
    logit = method_config("logit-mse")  # Ba & Caruana: regression on the logits, no labels
    assert (logit.ce_weight, logit.mse_weight, logit.terms) == (0.0, 1.0, ["mse"])
    assert method_config("ce-mse").terms == ["ce", "mse"]
    pair = method_config("pair")
    assert pair.needs_negatives and not pair.student_sees_negatives
    assert triplet.student_sees_negatives
    assert not method_config("triplet", negatives="batch-hard").student_sees_negatives


def test_objective_puts_relations_on_embeddings_or_logits():
    s, t = logits(8, 10, seed=1), logits(8, 10, seed=2)
    s_feat, t_feat = logits(8, 6, seed=3), logits(8, 7, seed=4)
    labels = torch.arange(8) % 10
    on_embeddings = objective(method_config("rkd"), student_logits=s, labels=labels,
                              teacher_logits=t, student_features=s_feat,
                              teacher_features=t_feat)
    torch.testing.assert_close(on_embeddings["rkd_angle"], rkd_angle_loss(t_feat, s_feat))
    on_logits = objective(method_config("rkd", relation_space="logits"), student_logits=s,
                          labels=labels, teacher_logits=t)
    torch.testing.assert_close(on_logits["rkd_distance"], rkd_distance_loss(t, s))
    expected = F.cross_entropy(s, labels) + 25 * rkd_distance_loss(t, s) \
        + 50 * rkd_angle_loss(t, s)
    torch.testing.assert_close(on_logits["total"], expected)
    with pytest.raises(ValueError, match="student_features and teacher_features"):
        objective(method_config("pkt"), student_logits=s, labels=labels, teacher_logits=t)
    with pytest.raises(ValueError, match="needs the regressor"):
        objective(method_config("hint"), student_logits=s, labels=labels, teacher_logits=t,
                  student_features=s_feat, teacher_features=t_feat)
    with pytest.raises(ValueError, match="relation_space"):
        ObjectiveConfig(rkd_distance_weight=1.0, relation_space="features")


def test_relation_methods_carry_repdistillers_weights():
    rkd = method_config("rkd")
    assert (rkd.ce_weight, rkd.rkd_distance_weight, rkd.rkd_angle_weight) == (1.0, 25.0, 50.0)
    assert rkd.needs_embeddings and rkd.in_batch and rkd.needs_teacher
    assert not method_config("rkd", relation_space="logits").needs_embeddings
    assert method_config("pkt").pkt_weight == 30000 / 64
    assert method_config("hint").hint_weight == 100.0 and method_config("hint").needs_embeddings
    assert not method_config("triplet").in_batch and method_config("ce").terms == ["ce"]


def test_objective_standardizes_the_distillation_terms_only():
    s, t, n = logits(6, 4, seed=9), logits(6, 4, seed=10), logits(6, 4, seed=11)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    parts = objective(method_config("kd-ls"), student_logits=s, labels=y, teacher_logits=t)
    torch.testing.assert_close(parts["ce"], F.cross_entropy(s, y))
    zs, zt = standardize_logits(s), standardize_logits(t)
    torch.testing.assert_close(parts["kd"], kd_loss(zt, zs, 2.0))
    torch.testing.assert_close(parts["total"], 0.1 * parts["ce"] + 9.0 * parts["kd"])
    parts = objective(method_config("triplet-ls"), student_logits=s, labels=y, teacher_logits=t,
                      negative_logits=n)
    torch.testing.assert_close(parts["triplet"],
                               triplet_kd_loss(zt, zs, standardize_logits(n), margin=1.0))


def test_dkd_warmup_scales_its_weight_in_the_total():
    s, t = logits(4, 5, seed=12), logits(4, 5, seed=13)
    y = torch.tensor([0, 1, 2, 3])
    config = method_config("dkd")
    assert config.warmup_factor("dkd", 1, 240) == pytest.approx(1 / 20)
    assert config.warmup_factor("dkd", 1, 30) == pytest.approx(0.4)
    assert config.warmup_factor("dkd", 3, 30) == 1.0
    assert method_config("kd").warmup_factor("kd", 1, 30) == 1.0
    assert config.warmups() == ["dkd"] and method_config("kd").warmups() == []
    parts = objective(config, student_logits=s, labels=y, teacher_logits=t,
                      warmup={"dkd": torch.tensor(0.4)})
    torch.testing.assert_close(parts["total"], parts["ce"] + 0.4 * parts["dkd"])
    with pytest.raises(ValueError, match="dkd_warmup"):
        ObjectiveConfig(dkd_weight=1.0, dkd_warmup=1.5)
    with pytest.raises(ValueError, match="dkd_beta"):
        ObjectiveConfig(dkd_weight=1.0, dkd_beta=-1.0)
    with pytest.raises(ValueError, match="is empty"):
        dist_loss(s[:0], t[:0])


def test_standardized_mining_ranks_in_the_standardized_space():
    """A miner of a standardized triplet ranks the distances the loss pushes."""
    t = logits(8, 5, seed=14)
    s = logits(8, 5, seed=15) * torch.linspace(0.1, 10, 8)[:, None]  # rows of unequal scale
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    config = method_config("triplet-ls", negatives="batch-hard")
    _, _, valid = select_negatives(config, y, t, s, None, None, None)
    chosen, _, _ = select_negatives(config, y, t, s, None, None, None)
    zs, zt = standardize_logits(s), standardize_logits(t)
    distance = torch.cdist(zt, zs).masked_fill(y[:, None] == y[None, :], math.inf)
    torch.testing.assert_close(chosen, s[distance.argmin(1)])
    assert valid.all()


def test_teacher_free_objective_needs_no_teacher_and_uses_the_positive():
    config = method_config("triplet-self")
    assert not config.needs_teacher and config.anchor == "student"
    g = torch.Generator().manual_seed(0)
    s, pos, neg = (torch.randn(8, 10, generator=g) for _ in range(3))
    labels = torch.randint(0, 10, (8,), generator=g)
    parts = objective(config, student_logits=s, labels=labels, negative_logits=neg,
                      positive_logits=pos)
    torch.testing.assert_close(parts["triplet"], student_triplet_loss(s, pos, neg, 5.0))
    torch.testing.assert_close(parts["total"], parts["ce"] + 2 * parts["triplet"])
    with pytest.raises(ValueError, match="positive_logits"):
        objective(config, student_logits=s, labels=labels, negative_logits=neg)


@pytest.mark.parametrize("overrides, match", [
    ({"negatives": "sample"}, "in-batch negatives"),
    ({"kd_weight": 1.0}, "no term but ce and triplet"),
    ({"anchor": "nobody"}, "anchor must be"),
])
def test_teacher_free_settings_that_cannot_work_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        method_config("triplet-self", **overrides)


# ------------------------------------------------------------------ the table itself ----


def test_the_table_holds_every_term_once_with_its_weight():
    assert sorted(TABLE) == sorted(TERMS)
    assert list(TABLE)[0] == "ce" and TABLE["ce"].raw and not TABLE["ce"].teacher
    fields = {f.name for f in dataclasses.fields(ObjectiveConfig)}
    assert all(f"{name}_weight" in fields for name in TABLE)
    assert all(term.warmup is None or term.warmup in fields for term in TABLE.values())


def test_objective_takes_keywords_only():
    s, y = logits(4, 3), torch.arange(4) % 3
    with pytest.raises(TypeError):
        objective(method_config("ce"), s, y)
    parts = objective(method_config("ce"), student_logits=s, labels=y)
    torch.testing.assert_close(parts["total"], F.cross_entropy(s, y))


def test_any_term_can_have_a_warmup(monkeypatch):
    """A warm-up is a field of the term's row, not a special case of DKD: give KD one."""
    monkeypatch.setitem(TABLE, "kd", dataclasses.replace(TABLE["kd"], warmup="dkd_warmup"))
    config = ObjectiveConfig(kd_weight=1.0, dkd_warmup=0.5)
    assert config.warmups() == ["kd"] and config.warmup_factor("kd", 1, 4) == 0.5
    s, t, y = logits(4, 3, seed=1), logits(4, 3, seed=2), torch.arange(4) % 3
    parts = objective(config, student_logits=s, labels=y, teacher_logits=t,
                      warmup={"kd": torch.tensor(0.5)})
    torch.testing.assert_close(parts["total"], parts["ce"] + 0.5 * parts["kd"])


def test_a_row_decides_what_the_trainer_computes():
    triplet, pair, kd = method_config("triplet"), method_config("pair"), method_config("kd")
    assert triplet.student_sees_negatives and not triplet.teacher_sees_negatives
    assert pair.teacher_sees_negatives and not pair.student_sees_negatives
    assert not (kd.needs_negatives or kd.student_sees_negatives or kd.teacher_sees_negatives)
    assert not method_config("pair", negatives="batch-hard").teacher_sees_negatives
    assert [name for name, _ in method_config("triplet-self").rows()] == ["ce", "triplet"]
    assert dict(method_config("triplet-self").rows())["triplet"] is not TABLE["triplet"]


def test_pick_negatives_asks_the_row_that_takes_them():
    s, t = logits(12, 4, seed=1), logits(12, 4, seed=2)
    y = torch.arange(12) % 4
    assert pick_negatives(method_config("kd"), y, t, s) == {}
    sampled = pick_negatives(method_config("triplet"), y, t, s, s + 1, t + 1)
    assert torch.equal(sampled["negative_logits"], s + 1) and sampled["valid"] is None
    pair = pick_negatives(method_config("pair", negatives="batch-hard"), y, t, s)
    index, valid = mine_negatives("batch-hard", y, s, t, t)  # ranked by ||s_i - t_j||
    assert torch.equal(pair["negative_teacher_logits"], t[index])
    assert torch.equal(pair["valid"], valid)
