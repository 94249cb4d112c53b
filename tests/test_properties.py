"""Property-based tests of the losses (hypothesis).

For any finite logits of valid shape (entries in [-1e4, 1e4]: realistic logits, far from float32
overflow, where even torch's own losses return inf/NaN) every loss is finite and >= 0, the triplet
loss equals ``torch.nn.functional.triplet_margin_loss``, and the objective is the weighted sum of
its terms. Invalid input raises ``ValueError`` naming the argument: never another exception,
never a number. Every loss has an entry in ``LOSSES``, which checks both for it.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tkd.losses import (
    dist_loss,
    dkd_loss,
    hint_loss,
    kd_loss,
    logit_mse_loss,
    pair_kd_loss,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    standardize_logits,
    triplet_kd_loss,
)
from tkd.miners import NEGATIVE_STRATEGIES
from tkd.objective import METHODS, ObjectiveConfig, method_config, objective, pick_negatives

torch.set_num_threads(1)
LIMIT = 1e4
FAST = settings(max_examples=40, deadline=None)
values = st.floats(-LIMIT, LIMIT, allow_nan=False, width=32)
margins = st.floats(0.01, 20.0)
temperatures = st.floats(0.1, 20.0)


@st.composite
def logits(draw, count: int = 3, min_classes: int = 2):
    """``count`` float32 tensors of one shape (batch, classes) and int64 labels (batch,)."""
    batch = draw(st.integers(1, 8))
    classes = draw(st.integers(min_classes, 10))
    tensors = [torch.from_numpy(draw(arrays(np.float32, (batch, classes), elements=values)))
               for _ in range(count)]
    labels = torch.tensor(draw(st.lists(st.integers(0, classes - 1), min_size=batch,
                                        max_size=batch)), dtype=torch.int64)
    return tensors, labels


def finite_non_negative(value: torch.Tensor, rounding: float = 0.0) -> None:
    """A finite scalar >= 0, or >= -rounding where the loss is a difference of float32 terms
    that cancel exactly only in exact arithmetic (a KL divergence of two near-equal rows)."""
    assert value.dim() == 0 and math.isfinite(value.item()) and value.item() >= -rounding, value


@FAST
@given(logits(), margins, st.sampled_from([1.0, 2.0, 3.0]))
def test_triplet_is_finite_non_negative_and_equals_torch(data, margin, p):
    (anchor, positive, negative), _ = data
    ours = triplet_kd_loss(anchor, positive, negative, margin=margin, p=p)
    finite_non_negative(ours)
    theirs = F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=p)
    # the hinge subtracts two distances of up to ~1e5: float32 rounding of each (a few ulp,
    # e.g. 0.004 at 32768) is the honest tolerance, so it scales with their size
    scale = float((anchor - positive).norm(p=p, dim=1).max()
                  + (anchor - negative).norm(p=p, dim=1).max())
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-3 + 1e-6 * scale)


@FAST
@given(logits(), margins, temperatures)
def test_softened_triplet_is_finite_non_negative(data, margin, temperature):
    (anchor, positive, negative), _ = data
    loss = triplet_kd_loss(anchor, positive, negative, margin, temperature=temperature)
    finite_non_negative(loss)


@FAST
@given(logits(), margins)
def test_pair_is_finite_non_negative(data, margin):
    (teacher, student, negative_teacher), _ = data
    finite_non_negative(pair_kd_loss(teacher, student, negative_teacher, margin))


@FAST
@given(logits(count=2), temperatures, st.sampled_from([1.0, 1e-3, 0.0]))
@example(data=([torch.tensor([[2.0, 0.0]]), torch.tensor([[LIMIT, 0.0]])], torch.tensor([0])),
         temperature=0.25, closeness=1e-3)  # found by hypothesis: KL was -1.6e-9
def test_kd_and_mse_are_finite_non_negative(data, temperature, closeness):
    """Also with the teacher at (or within 1e-3 of) the student, where rounding once made the
    KL divergence slightly negative."""
    (student, other), _ = data
    teacher = student + closeness * other / LIMIT if closeness < 1 else other
    finite_non_negative(kd_loss(teacher, student, temperature))
    finite_non_negative(logit_mse_loss(teacher, student))


@FAST
@given(logits(count=4), st.sampled_from(sorted(METHODS)), st.sampled_from(NEGATIVE_STRATEGIES))
def test_objective_is_the_weighted_sum_of_finite_terms(data, method, negatives):
    (student, teacher, negative, negative_teacher), labels = data
    assume(method != "triplet-self" or negatives != "sample")  # its positive is in the batch
    config = method_config(method, negatives=negatives)
    others = pick_negatives(config, labels, teacher, student, negative, negative_teacher,
                            torch.Generator().manual_seed(0))
    # embeddings of other widths than the logits, as the networks' 128-d ones
    features = (student[:, :1].repeat(1, 3) / 7, teacher.flip(1)) if config.needs_embeddings \
        else (None, None)
    regressor = torch.nn.Linear(3, teacher.shape[1]) if "hint" in config.terms else None
    parts = objective(config, student_logits=student, labels=labels, teacher_logits=teacher,
                      check_finite=True,
                      student_features=features[0], teacher_features=features[1],
                      regressor=regressor, **others)
    assert set(parts) == {"total", *config.terms}
    for value in parts.values():
        finite_non_negative(value)
    weighted = sum(getattr(config, f"{k}_weight") * v for k, v in parts.items() if k != "total")
    torch.testing.assert_close(parts["total"], torch.as_tensor(weighted, dtype=torch.float32))


# ------------------------------------------------------------------------ invalid input ----

def two(a, b, c, labels):
    """The arguments of a loss that reads the teacher's and the student's tensors alone."""
    return a, b


LOSSES = {  # name -> (the loss, its arguments from three tensors of one shape and labels)
    "triplet": (triplet_kd_loss, lambda a, b, c, labels: (a, b, c)),
    "pair": (pair_kd_loss, lambda a, b, c, labels: (a, b, c)),
    "kd": (kd_loss, two),
    "mse": (logit_mse_loss, two),
    "rkd_distance": (rkd_distance_loss, two),
    "rkd_angle": (rkd_angle_loss, two),
    "pkt": (pkt_loss, two),
    "hint": (hint_loss, two),
    "dkd": (dkd_loss, lambda a, b, c, labels: (a, b, labels)),
    "dist": (dist_loss, two),
}
"""Every loss of tkd.losses, called on logits: each is finite and >= 0 on any valid input
(``test_every_loss_is_finite_and_non_negative``) and raises a ``ValueError`` naming the
broken argument on any broken one (``test_broken_logits_raise_value_error_naming_it``).
All are non-negative by their formulas: hinges (triplet, pair), squared errors (mse, hint),
Huber distances (rkd), KL divergences (kd, dkd, pkt) and one minus a correlation (dist)."""

ROUNDING = {"kd": 1e-5, "dkd": 1e-5, "pkt": 1e-5, "dist": 1e-5}
"""The losses >= 0 only in exact arithmetic: KL divergences of near-equal distributions and
one minus a correlation of nearly 1 round to a few ulp below 0 in float32."""


def call(loss: str, a, b, c, labels):
    function, arguments = LOSSES[loss]
    return function(*arguments(a, b, c, labels))


@FAST
@given(logits(), st.sampled_from(sorted(LOSSES)))
def test_every_loss_is_finite_and_non_negative(data, loss):
    (a, b, c), labels = data
    finite_non_negative(call(loss, a, b, c, labels), ROUNDING.get(loss, 0.0))


@st.composite
def broken(draw):
    """Three logit tensors, one of them broken (a NaN/inf entry, wrong shape, rank or empty),
    and which: 0 or 1."""
    (a, b, c), _ = draw(logits())
    which = draw(st.integers(0, 1))  # every loss reads the first two
    tensors = [a, b, c]
    kind = draw(st.sampled_from(["nan", "inf", "-inf", "rows", "classes", "rank", "empty"]))
    bad = tensors[which]
    if kind in ("nan", "inf", "-inf"):
        bad = bad.clone()
        bad[draw(st.integers(0, len(bad) - 1)), draw(st.integers(0, bad.shape[1] - 1))] = \
            float(kind)
    elif kind == "rows":
        bad = torch.cat([bad, bad[:1]])
    elif kind == "classes":
        bad = bad[:, :-1]
    elif kind == "rank":
        bad = bad.flatten()
    else:
        bad = bad[:0]
    tensors[which] = bad
    return tensors, which


@FAST
@given(broken(), st.sampled_from(sorted(LOSSES)))
def test_broken_logits_raise_value_error_naming_it(data, loss):
    """A broken first or second tensor (NaN/inf, extra row, missing class, wrong rank,
    empty) raises ``ValueError`` whose message names that argument (a shape mismatch names
    both)."""
    tensors, which = data
    a, b = tensors[:2]
    width_only = (a.dim() == b.dim() == 2 and len(a) == len(b) > 0 and a.shape[1] != b.shape[1]
                  and bool(torch.isfinite(a).all() and torch.isfinite(b).all()))
    assume(not (width_only and loss in ("rkd_distance", "rkd_angle", "pkt")))  # widths may differ
    name = list(inspect.signature(LOSSES[loss][0]).parameters)[which]
    with pytest.raises(ValueError, match=name):
        call(loss, *tensors, torch.zeros(len(a), dtype=torch.int64))


@FAST
@given(logits(), st.floats(-1e3, -1e-3) | st.just(math.nan) | st.just(math.inf))
def test_bad_margin_raises_value_error(data, margin):
    (a, b, c), _ = data
    for loss in (triplet_kd_loss, pair_kd_loss):
        with pytest.raises(ValueError, match="margin"):
            loss(a, b, c, margin=margin)


@FAST
@given(logits(count=2), st.floats(-10, 0) | st.just(math.nan) | st.just(math.inf))
def test_bad_temperature_raises_value_error(data, temperature):
    (a, b), _ = data
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(a, b, temperature)
    with pytest.raises(ValueError, match="temperature"):
        triplet_kd_loss(a, b, b, temperature=temperature)


@FAST
@given(logits(count=2), st.sampled_from(["too-big", "negative", "float", "shape"]))
def test_bad_labels_raise_value_error(data, kind):
    (student, teacher), labels = data
    classes = student.shape[1]
    labels = {"too-big": labels.clone().fill_(classes), "negative": labels.clone().fill_(-1),
              "float": labels.float(), "shape": labels[:, None]}[kind]
    with pytest.raises(ValueError, match="labels"):
        objective(ObjectiveConfig(), student_logits=student, labels=labels, teacher_logits=teacher)


@FAST
@given(st.sampled_from(["ce_weight", "kd_weight", "mse_weight", "triplet_weight",
                        "pair_weight", "margin", "temperature", "p"]),
       st.floats(-100, -1e-6) | st.just(math.nan) | st.just(-math.inf))
def test_bad_objective_settings_raise_value_error(field, value):
    with pytest.raises(ValueError, match=field):
        ObjectiveConfig(**{field: value})


@st.composite
def rows(draw):
    """Teacher and student rows (batch >= 3, dims that may differ), float32, within ±1e4."""
    batch = draw(st.integers(3, 8))
    return [torch.from_numpy(draw(arrays(np.float32, (batch, draw(st.integers(1, 10))),
                                         elements=values))) for _ in range(2)]


@FAST
@given(rows())
@example([torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]),
          torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, 0.0], [1.0, -48.0, 1.0]])])
def test_relation_losses_are_finite_non_negative_and_zero_on_the_teacher(tensors):
    teacher, student = tensors
    for loss in (rkd_distance_loss, rkd_angle_loss):
        finite_non_negative(loss(teacher, student))
        assert loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    # PKT sums p log(p / q) over a row: each log ratio of float32 probabilities near 1 carries
    # ~1e-7 of rounding, so a student whose similarities equal the teacher's up to rounding can
    # give -1e-7 (one such case is pinned below)
    finite_non_negative(pkt_loss(teacher, student), rounding=1e-6)
    assert pkt_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-6)
    regressed = student[:, :1].expand_as(teacher)
    finite_non_negative(hint_loss(teacher, regressed))
    assert hint_loss(teacher, teacher).item() == 0.0


@FAST
@given(logits(count=2), temperatures, st.floats(0.0, 10.0), st.floats(0.0, 10.0))
def test_dkd_and_dist_are_finite_non_negative_and_zero_on_the_teacher(data, temperature,
                                                                      first, second):
    (student, teacher), labels = data
    finite_non_negative(dkd_loss(teacher, student, labels, first, second, temperature))
    assert dkd_loss(teacher, teacher, labels, first, second, temperature).item() < 1e-3
    if len(labels) >= 2:
        # 1 - rho with rho a float32 cosine: rho can round to 1 + 1e-7, scaled by T^2 (b + g)
        finite_non_negative(dist_loss(teacher, student, first, second, temperature),
                            rounding=1e-6 * temperature**2 * (first + second))


@FAST
@given(logits(count=1))
def test_standardized_rows_have_mean_zero_and_unit_spread(data):
    (z,), _ = data
    out = standardize_logits(z)
    assert torch.isfinite(out).all()
    # rows that are not constant to float32 rounding (a constant row has no spread to scale:
    # its rounding residue is what remains, as in the authors' formula)
    spread = z.std(1) > 1e-2 * z.abs().amax(1).clamp(min=1)
    if spread.any():
        assert out[spread].mean(1).abs().max().item() < 1e-3
    torch.testing.assert_close(out.std(1)[spread], torch.ones(int(spread.sum())), atol=1e-3,
                               rtol=1e-3)
