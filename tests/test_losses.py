import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tkd.losses import (
    dist_loss,
    dkd_loss,
    hint_loss,
    hint_regressor,
    kd_loss,
    logit_mse_loss,
    pair_kd_loss,
    pearson_rows,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    standardize_logits,
    student_triplet_loss,
    triplet_angles,
    triplet_kd_loss,
)
from tkd.objective import ObjectiveConfig, method_config


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
    loss = triplet_kd_loss(teacher, student, negative, margin=50.0) + kd_loss(teacher, student)
    loss = loss + logit_mse_loss(teacher, student) + pair_kd_loss(teacher, student, teacher)
    loss.backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0 and negative.grad.abs().sum() > 0


def test_kd_loss_hand_computed():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 1.0, 0.0]])
    T = 2.0
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    expected = (pt * (pt.log() - ps.log())).sum() * T * T
    torch.testing.assert_close(kd_loss(t, s, T), expected)
    assert kd_loss(t, t, 3.0).abs().item() < 1e-6


def test_logit_mse_hand_computed():
    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert logit_mse_loss(t, s).item() == pytest.approx((1 + 4 + 0 + 4) / 4)


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
        (lambda: kd_loss(torch.full((4, 3), math.nan), logits(4, 3)), "teacher_logits"),
        (lambda: logit_mse_loss(logits(4, 3), logits(5, 3)), "student_logits"),
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


# ------------------------------------------------ relation- and feature-based losses ----
# Each is checked against the formula written out with Python loops on a few rows.


def _huber(a: float, b: float) -> float:
    diff = abs(a - b)
    return 0.5 * diff**2 if diff < 1 else diff - 0.5


def _dist(u, v) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v)))


def _cos_at(points, i, j, k) -> float:
    """Cosine of the angle at points[j] between points[i] and points[k]."""
    e1 = [a - b for a, b in zip(points[i], points[j])]
    e2 = [a - b for a, b in zip(points[k], points[j])]
    dot = sum(a * b for a, b in zip(e1, e2))
    return dot / (math.sqrt(sum(a * a for a in e1)) * math.sqrt(sum(b * b for b in e2)))


TEACHER_ROWS = [[0.0, 0.0, 1.0], [3.0, 0.0, 0.5], [0.0, 4.0, -1.0], [2.0, 2.0, 2.0]]
STUDENT_ROWS = [[1.0, 0.0], [0.0, 1.0], [2.5, 2.0], [-1.0, 0.5]]  # another width: allowed


def test_rkd_distance_hand_computed():
    def normalised(points):
        pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
        d = {p: _dist(points[p[0]], points[p[1]]) for p in pairs}
        mean = sum(d.values()) / len(d)
        return {p: v / mean for p, v in d.items()}

    t, s = normalised(TEACHER_ROWS), normalised(STUDENT_ROWS)
    expected = sum(_huber(s[p], t[p]) for p in t) / len(t)
    ours = rkd_distance_loss(torch.tensor(TEACHER_ROWS), torch.tensor(STUDENT_ROWS))
    assert ours.item() == pytest.approx(expected, rel=1e-5)


def test_rkd_angle_hand_computed():
    triples = [(i, j, k) for i in range(4) for j in range(4) for k in range(4)
               if len({i, j, k}) == 3]
    expected = sum(_huber(_cos_at(STUDENT_ROWS, *t), _cos_at(TEACHER_ROWS, *t))
                   for t in triples) / len(triples)
    ours = rkd_angle_loss(torch.tensor(TEACHER_ROWS), torch.tensor(STUDENT_ROWS))
    assert ours.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_angles_match_normalised_edges():
    x = logits(9, 6, seed=4).double()
    edges = F.normalize(x[None, :, :] - x[:, None, :], dim=2)
    torch.testing.assert_close(triplet_angles(x), edges @ edges.transpose(1, 2))


def test_pkt_hand_computed():
    def distribution(points):
        def cos(u, v):
            return sum(a * b for a, b in zip(u, v)) / (math.hypot(*u) * math.hypot(*v))
        kernel = [[(1 + cos(u, v)) / 2 for v in points] for u in points]
        return [[k / sum(row) for k in row] for row in kernel]

    t, s = distribution(TEACHER_ROWS[1:]), distribution(STUDENT_ROWS[1:])
    expected = sum(t[i][j] * math.log(t[i][j] / s[i][j]) for i in range(3) for j in range(3)) / 3
    ours = pkt_loss(torch.tensor(TEACHER_ROWS[1:]), torch.tensor(STUDENT_ROWS[1:]), eps=0.0)
    assert ours.item() == pytest.approx(expected, rel=1e-4)


def test_hint_is_the_mean_squared_error_after_the_regressor():
    teacher = torch.tensor(TEACHER_ROWS)
    regressor = hint_regressor(2, 3)
    mapped = regressor(torch.tensor(STUDENT_ROWS))
    expected = sum((m - t) ** 2 for row_m, row_t in zip(mapped.tolist(), TEACHER_ROWS)
                   for m, t in zip(row_m, row_t)) / 12
    assert hint_loss(teacher, mapped).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="regressor must map"):
        hint_loss(teacher, torch.tensor(STUDENT_ROWS))


def test_relations_ignore_scale_and_vanish_on_the_teacher():
    """RKD normalises distances by their mean and PKT uses cosines: a student that is the
    teacher scaled (and, for RKD, shifted) copies every relation."""
    t = logits(12, 5, seed=5)
    for loss in (rkd_distance_loss, rkd_angle_loss, pkt_loss):
        assert loss(t, t).item() == pytest.approx(0.0, abs=1e-6)
        assert loss(t, 3 * t).item() == pytest.approx(0.0, abs=1e-6)
    for loss in (rkd_distance_loss, rkd_angle_loss):
        assert loss(t, 3 * t + 7).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_distance_loss(t, logits(12, 5, seed=6)).item() > 0.01


def test_relation_gradients_reach_student_never_teacher():
    t = logits(10, 4, seed=1).requires_grad_(True)
    s = logits(10, 4, seed=2).requires_grad_(True)
    for loss in (rkd_distance_loss, rkd_angle_loss, pkt_loss, hint_loss):
        loss(t, s).backward()
    assert t.grad is None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


@pytest.mark.parametrize("call, message", [
    (lambda: rkd_distance_loss(torch.zeros(0, 3), torch.zeros(0, 3)), "at least 1"),
    (lambda: rkd_angle_loss(torch.zeros(0, 3), torch.zeros(0, 3)), "at least 1"),
    (lambda: pkt_loss(torch.zeros(4, 3), torch.zeros(5, 3)), "rows but the teacher has 4"),
    (lambda: rkd_distance_loss(torch.zeros(4), torch.zeros(4, 3)), "teacher must be a"),
    (lambda: pkt_loss(torch.zeros(4, 3), torch.full((4, 3), float("nan"))), "NaN"),
])
def test_bad_relation_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------- DKD, DIST, standardization ----

def test_standardize_logits_by_hand():
    z = torch.tensor([[1.0, 2.0, 3.0, 6.0], [-2.0, 0.0, 0.0, 2.0]])
    for row, out in zip(z.numpy(), standardize_logits(z).numpy()):
        expected = (row - row.mean()) / (row.std(ddof=1) + 1e-7)
        np.testing.assert_allclose(out, expected, rtol=1e-6)
    scaled = standardize_logits(5 * z + 3)  # invariant to each row's scale and shift
    torch.testing.assert_close(scaled, standardize_logits(z))


def test_dkd_matches_explicit_binary_and_non_target_distributions():
    s, t = logits(6, 5, seed=1), logits(6, 5, seed=2)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    alpha, beta, T = 1.5, 8.0, 4.0
    total = 0.0
    for i in range(len(y)):  # one sample at a time, in float64 numpy
        p_s = np.exp(s[i].double().numpy() / T)
        p_s /= p_s.sum()
        p_t = np.exp(t[i].double().numpy() / T)
        p_t /= p_t.sum()
        b_s = np.array([p_s[y[i]], 1 - p_s[y[i]]])
        b_t = np.array([p_t[y[i]], 1 - p_t[y[i]]])
        rest = [c for c in range(5) if c != y[i]]
        q_s, q_t = p_s[rest] / p_s[rest].sum(), p_t[rest] / p_t[rest].sum()
        tckd = (b_t * np.log(b_t / b_s)).sum()
        nckd = (q_t * np.log(q_t / q_s)).sum()
        total += T**2 * (alpha * tckd + beta * nckd)
    ours = dkd_loss(t, s, y, alpha=alpha, beta=beta, temperature=T)
    assert ours.item() == pytest.approx(total / len(y), rel=1e-5)


def test_dkd_with_alpha_equal_beta_is_not_hinton_kd_but_splits_it():
    """KL(p^t || p^s) = TCKD + (1 - p^t_y) NCKD (DKD's eq. 3): with the teacher's mass off the
    target, DKD at alpha = beta = 1 is an upper bound on Hinton's KD."""
    s, t = logits(8, 6, seed=3), logits(8, 6, seed=4)
    y = torch.randint(0, 6, (8,), generator=torch.Generator().manual_seed(0))
    T = 2.0
    assert dkd_loss(t, s, y, 1.0, 1.0, T).item() >= kd_loss(t, s, T).item() - 1e-5
    assert dkd_loss(t, s, y, 1.0, 0.0, T).item() <= kd_loss(t, s, T).item() + 1e-5


def test_dist_matches_numpy_corrcoef():
    s, t = logits(7, 5, seed=5), logits(7, 5, seed=6)
    for T, beta, gamma in ((1.0, 1.0, 1.0), (4.0, 2.0, 0.5)):
        p_s = torch.softmax(s / T, 1).double().numpy()
        p_t = torch.softmax(t / T, 1).double().numpy()
        inter = 1 - np.mean([np.corrcoef(p_s[i], p_t[i])[0, 1] for i in range(7)])
        intra = 1 - np.mean([np.corrcoef(p_s[:, c], p_t[:, c])[0, 1] for c in range(5)])
        expected = T**2 * (beta * inter + gamma * intra)
        ours = dist_loss(t, s, beta=beta, gamma=gamma, temperature=T)
        assert ours.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_new_losses_are_zero_on_the_teacher_and_have_gradients():
    t = logits(8, 10, seed=7)
    y = torch.arange(8) % 10
    assert dkd_loss(t, t, y).item() == pytest.approx(0.0, abs=1e-5)
    assert dist_loss(t, t).item() == pytest.approx(0.0, abs=1e-5)
    assert dist_loss(3 * t + 1, t, temperature=4.0).item() > 0  # probabilities change
    s = logits(8, 10, seed=8).requires_grad_(True)
    (dkd_loss(t, s, y) + dist_loss(t, s)).backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


# ---------------------------------------------------------------- the teacher-free control ----


def test_student_triplet_loss_is_torchs_triplet_margin_loss_with_gradients_everywhere():
    g = torch.Generator().manual_seed(3)
    a, p, n = (torch.randn(16, 10, generator=g, requires_grad=True) for _ in range(3))
    ours = student_triplet_loss(a, p, n, margin=5.0)
    torch.testing.assert_close(ours, F.triplet_margin_loss(a, p, n, margin=5.0, p=2, eps=0))
    ours.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (a, p, n))


@pytest.mark.parametrize("loss, rows", [(rkd_distance_loss, 1), (rkd_angle_loss, 1),
                                        (rkd_angle_loss, 2), (pkt_loss, 1)])
def test_a_batch_too_small_for_one_relation_adds_nothing(loss, rows):
    """A short last batch (1 row; 2 for RKD's angles) holds no relation: the term is 0 with a
    zero gradient to the student, not an error (the triplet with no negative does the same)."""
    t, s = logits(rows, 4, seed=1), logits(rows, 4, seed=2).requires_grad_(True)
    value = loss(t, s)
    value.backward()
    assert value.item() == 0 and torch.equal(s.grad, torch.zeros_like(s))


def test_dist_on_one_row_keeps_its_inter_class_term_only():
    t, s = logits(1, 5, seed=1), logits(1, 5, seed=2).requires_grad_(True)
    p_s, p_t = (torch.softmax(z / 2.0, dim=1) for z in (s, t))
    inter = 1 - pearson_rows(p_s, p_t).mean()
    value = dist_loss(t, s, beta=1.5, gamma=3.0, temperature=2.0)
    torch.testing.assert_close(value, 1.5 * inter * 4.0)
    value.backward()
    assert torch.isfinite(s.grad).all()
