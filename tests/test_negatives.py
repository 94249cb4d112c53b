"""Negatives in the trainer: which distance ranks in-batch candidates, which images the student
runs on, how BatchNorm students see the drawn negatives, and that the test columns use the
training's negative strategy."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import select_negatives
from tkd.models import build_model
from tkd.objective import method_config, objective
from tkd.train import TrainConfig, fit, predict

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
N, BATCH = 200, 50  # N: the images of conftest's `small`


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model("paper-teacher", 10, 1, 8).eval()


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"progress": False, "device": "cpu", "batch_size": BATCH, **overrides})


class Counting(nn.Module):
    """Wraps a model; records the batch size of every training-mode forward (of every
    forward with ``every=True``)."""

    def __init__(self, model: nn.Module, every: bool = False):
        super().__init__()
        self.model, self.every, self.sizes = model, every, []

    def forward(self, x):
        if self.training or self.every:
            self.sizes.append(len(x))
        return self.model(x)


def student(name: str = "paper-student") -> Counting:
    torch.manual_seed(0)
    return Counting(build_model(name, 10, 1, 8))


# ------------------------------------------------------------ which distance ranks? ----


def logits(seed: int, n: int = 12, classes: int = 4) -> torch.Tensor:
    return torch.randn(n, classes, generator=torch.Generator().manual_seed(seed)) * 3


def closest_other_class(anchor, candidates, labels) -> list[int]:
    distance = torch.cdist(anchor, candidates)
    return distance.masked_fill(labels[:, None] == labels, float("inf")).argmin(1).tolist()


def test_pair_mines_by_student_to_teacher_and_triplet_by_teacher_to_student():
    """The pair loss pushes ||s_i - t_j||, the triplet ||t_i - s_j||: batch-hard must rank by
    the distance the loss pushes (the two rankings differ on these batches)."""
    labels = torch.arange(12) % 4
    differ = 0
    for seed in range(8):
        s, t = logits(2 * seed), logits(2 * seed + 1)
        by_student = closest_other_class(s, t, labels)  # ||s_i - t_j||
        by_teacher = closest_other_class(t, s, labels)  # ||t_i - s_j||
        differ += by_student != by_teacher
        pair = method_config("pair", negatives="batch-hard")
        s_neg, t_neg, valid = select_negatives(pair, labels, t, s, None, None, None)
        assert valid.all()
        assert torch.equal(t_neg, t[by_student]) and torch.equal(s_neg, s[by_student])
        triplet = method_config("triplet", negatives="batch-hard")
        s_neg, t_neg, valid = select_negatives(triplet, labels, t, s, None, None, None)
        assert torch.equal(s_neg, s[by_teacher]) and torch.equal(t_neg, t[by_teacher])
    assert differ > 0


def test_sampled_negatives_pass_through_untouched():
    labels = torch.arange(6) % 3
    s, t, s_neg, t_neg = logits(1, 6, 3), logits(2, 6, 3), logits(3, 6, 3), logits(4, 6, 3)
    for method in ("pair", "triplet"):
        out = select_negatives(method_config(method), labels, t, s, s_neg, t_neg, None)
        assert out[0] is s_neg and out[1] is t_neg and out[2] is None


# ------------------------------------------------------- what the student runs on ----


def test_pair_loss_runs_the_student_on_x_only_and_the_triplet_on_x_and_x_prime(small, teacher):
    """Sampled negatives: the pair loss needs only teacher(x'), so one epoch of the student
    sees N images; the triplet needs student(x'), 2N."""
    for method, images in (("pair", N), ("triplet", 2 * N), ("ce", N)):
        model = student()
        fit(model, small, config(epochs=1), method_config(method),
            teacher if method != "ce" else None)
        assert sum(model.sizes) == images, method


def test_pair_loss_with_augmentation_runs_the_live_teacher_on_x_prime(small, teacher):
    """Augmentation makes the teacher's logits live (not cached): the pair loss then needs
    teacher(x'), still not student(x')."""
    model, watched = student(), Counting(teacher, every=True)
    history = fit(model, small, config(epochs=1, augment=True), method_config("pair"), watched)
    assert sum(model.sizes) == N
    # the shape check (2 images) and the test split are scored once; each step runs x and x'
    assert sum(watched.sizes) == 2 + len(small.test) + 2 * N
    assert history.train_pair.notna().all() and history.test_pair.notna().all()


def test_batchnorm_student_runs_x_and_x_prime_as_two_batches(small, teacher):
    """With BatchNorm (student-2022) x and x' are two forwards of one batch each, as the
    authors' code runs them (batch statistics of one class mix are not shared); the paper's
    student (no BatchNorm) runs them in one joint forward of 2B images."""
    steps = N // BATCH
    bn = student("student-2022")
    fit(bn, small, config(epochs=1), method_config("triplet"), teacher)
    assert bn.sizes == [BATCH] * (2 * steps)
    plain = student("paper-student")
    fit(plain, small, config(epochs=1), method_config("triplet"), teacher)
    assert plain.sizes == [2 * BATCH] * steps


def test_in_batch_negatives_need_no_extra_forward(small, teacher):
    model = student()
    fit(model, small, config(epochs=1), method_config("triplet", negatives="batch-hard"),
        teacher)
    assert model.sizes == [BATCH] * (N // BATCH)


# ------------------------------------------------- test columns use the same negatives ----


def test_test_triplet_uses_batch_hard_over_consecutive_batches(small, teacher):
    """For negatives="batch-hard" the logged test triplet loss is the objective with
    batch-hard mined within consecutive batches of batch_size of the test split, recomputed
    here from the trained model."""
    torch.manual_seed(0)
    model = build_model("paper-student", 10, 1, 8)
    obj = method_config("triplet", negatives="batch-hard")
    history = fit(model, small, config(epochs=1, eval_batch_size=64), obj, teacher)
    images, labels = small.test.images, small.test.labels
    s, t = predict(model, images), predict(teacher, images)
    total, triplet = 0.0, 0.0
    for start in range(0, len(labels), BATCH):
        rows = slice(start, start + BATCH)
        s_neg, t_neg, valid = select_negatives(obj, labels[rows], t[rows], s[rows], None, None,
                                               None)
        parts = objective(obj, student_logits=s[rows], labels=labels[rows], teacher_logits=t[rows],
                          negative_logits=s_neg, negative_teacher_logits=t_neg, valid=valid)
        total += parts["total"].item() * len(labels[rows])
        triplet += parts["triplet"].item() * len(labels[rows])
    last = history.iloc[-1]
    assert last["test_triplet"] == pytest.approx(triplet / len(labels), rel=1e-4)
    assert last["test_total"] == pytest.approx(total / len(labels), rel=1e-4)
    # ... and not the value of the whole split mined at once (a different set of negatives)
    s_neg, t_neg, valid = select_negatives(obj, labels, t, s, None, None, None)
    whole = objective(obj, student_logits=s, labels=labels, teacher_logits=t,
                      negative_logits=s_neg, negative_teacher_logits=t_neg,
                      valid=valid)["triplet"].item()
    assert abs(whole - last["test_triplet"]) > 1e-3
