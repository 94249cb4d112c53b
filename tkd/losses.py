"""Distillation losses: the paper's triplet loss, its pair variant, the classic KD losses and
the relation- and feature-based ones it is compared with (RKD, PKT, FitNets hints).

Pure functions of tensors, in one argument order: **teacher first, then student**, then
what else the loss reads (the student's negative, labels), then its settings as keywords, then
``check_finite``. In the paper's vocabulary the *anchor* is the teacher's output for an image
``x``, the *positive* the student's output for the same ``x`` and the *negative* the student's
output for an image ``x'`` of another class, so ``triplet_kd_loss(anchor, positive, negative)``
follows the same order. The losses never choose a negative: :mod:`tkd.miners` returns indices
(in-batch, or the paper's draw from the whole training set) and the caller gathers the rows.
How the terms are weighted and summed into one objective is :mod:`tkd.objective`'s business.

Shapes: every ``*_logits`` argument is ``(batch, classes)``; ``labels`` is ``(batch,)`` int64;
the relation- and feature-based losses take ``(batch, dim)`` rows. Every loss returns a scalar.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-6  # inside the norm, as torch.nn.functional.pairwise_distance does


def _check_logits(check_finite: bool, **tensors: Tensor | None) -> None:
    """Raise ``ValueError`` naming the argument on a wrong rank, shape mismatch or NaN/inf."""
    shape = None
    for name, value in tensors.items():
        if value is None:
            continue
        if not isinstance(value, Tensor) or value.dim() != 2:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a (batch, classes) tensor, got {got}")
        if value.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(value.shape)}")
        if shape is None:
            shape, first = value.shape, name
        elif value.shape != shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)} but {first} has {tuple(shape)}; "
                "they must match"
            )
        if check_finite and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} holds NaN or infinite values")


def _check_valid(valid: Tensor | None, batch: int) -> None:
    if valid is not None and (not isinstance(valid, Tensor) or valid.dtype != torch.bool
                              or tuple(valid.shape) != (batch,)):
        got = f"{valid.dtype} {tuple(valid.shape)}" if isinstance(valid, Tensor) else valid
        raise ValueError(f"valid must be a ({batch},) bool tensor, got {got}")


def check_margin(margin: float) -> None:
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")


def check_norm(p: float) -> None:
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"p must be a finite number > 0, got {p}")


def check_temperature(temperature: float) -> None:
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of ``values`` (batch,) over rows with ``weight`` True; 0 (with a graph) if none."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def distance(x: Tensor, y: Tensor, p: float = 2.0) -> Tensor:
    """Row-wise ``||x - y + eps||_p``: (batch, classes) x2 -> (batch,)."""
    return (x - y + EPS).norm(p=p, dim=1)


def triplet_kd_loss(
    teacher_logits: Tensor,
    student_logits: Tensor,
    negative_logits: Tensor,
    margin: float = 5.0,
    p: float = 2.0,
    temperature: float | None = None,
    valid: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """The paper's triplet loss, anchored on the teacher.

    ``L = mean_i max(0, ||a_i - p_i|| - ||a_i - n_i|| + margin)`` with anchor ``a = teacher(x)``,
    positive ``p = student(x)``, negative ``n = student(x')``, ``x'`` of another class; equal to
    ``F.triplet_margin_loss(a, p, n, margin=margin, p=p)``. With ``temperature=T`` the three are
    first mapped to ``softmax(z / T)`` (then a margin below ``sqrt(2)`` makes sense).
    ``valid`` (batch,) bool drops rows without a negative from the mean; if no row is valid the
    loss is 0. Returns a scalar.
    """
    _check_logits(
        check_finite,
        teacher_logits=teacher_logits,
        student_logits=student_logits,
        negative_logits=negative_logits,
    )
    check_margin(margin)
    _check_valid(valid, len(teacher_logits))
    check_norm(p)
    if temperature is not None:
        check_temperature(temperature)
        teacher_logits, student_logits, negative_logits = (
            F.softmax(z / temperature, dim=1)
            for z in (teacher_logits, student_logits, negative_logits)
        )
    anchor = teacher_logits.detach()
    hinge = (distance(anchor, student_logits, p) - distance(anchor, negative_logits, p) + margin)
    return _weighted_mean(hinge.clamp(min=0), valid)


def student_triplet_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 5.0,
    p: float = 2.0,
    valid: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """The triplet loss with no teacher: the control of the teacher-anchored triplet.

    ``L = mean_i max(0, ||a_i - p_i|| - ||a_i - n_i|| + margin)`` with anchor ``a = student(x)``,
    positive ``p = student(x+)`` (another image of the same class), negative ``n = student(x-)``
    (another class); all three carry gradients, as in metric learning. anchor, positive,
    negative: (batch, classes); ``valid`` (batch,) bool drops rows without a positive or a
    negative. Equal to ``F.triplet_margin_loss(a, p, n, margin=margin, p=p)`` over valid rows.
    """
    _check_logits(check_finite, anchor=anchor, positive=positive, negative=negative)
    check_margin(margin)
    _check_valid(valid, len(anchor))
    check_norm(p)
    hinge = distance(anchor, positive, p) - distance(anchor, negative, p) + margin
    return _weighted_mean(hinge.clamp(min=0), valid)


def pair_kd_loss(
    teacher_logits: Tensor,
    student_logits: Tensor,
    negative_teacher_logits: Tensor,
    margin: float = 5.0,
    valid: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """Contrastive (pair) distillation: pull ``s_i`` to ``t_i``, push it from ``t_j``.

    ``L = mean_i [ ||s_i - t_i|| + max(0, margin - ||s_i - t_j||) ]`` with ``s`` the student's
    logits, ``t`` the teacher's, and ``j`` a sample of another class than ``i``
    (``negative_teacher_logits[i] = t_j``): the positive pair (same image) and the negative pair
    (other class) are scored separately, as in a Siamese network. Distances are not squared, so
    the gradient stays bounded as in the triplet loss (squared distances of raw logits diverge
    at the paper's learning rate). Rows with ``valid`` False are left out of the mean; if none is
    valid the loss is 0. Returns a scalar.
    """
    _check_logits(
        check_finite,
        teacher_logits=teacher_logits,
        student_logits=student_logits,
        negative_teacher_logits=negative_teacher_logits,
    )
    check_margin(margin)
    _check_valid(valid, len(teacher_logits))
    pull = distance(student_logits, teacher_logits.detach())
    push = (margin - distance(student_logits, negative_teacher_logits.detach())).clamp(min=0)
    return _weighted_mean(pull + push, valid)


def kd_loss(teacher_logits: Tensor, student_logits: Tensor, temperature: float = 4.0,
            check_finite: bool = True) -> Tensor:
    """Hinton et al.: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch.
    teacher_logits ``t``, student_logits ``s``: (batch, classes)."""
    _check_logits(check_finite, teacher_logits=teacher_logits, student_logits=student_logits)
    check_temperature(temperature)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl.clamp(min=0) * temperature**2  # KL >= 0; rounding can give -1e-8


def logit_mse_loss(teacher_logits: Tensor, student_logits: Tensor,
                   check_finite: bool = True) -> Tensor:
    """Ba & Caruana's logit regression: ``mean over batch and classes of (s - t)^2``.
    teacher_logits ``t``, student_logits ``s``: (batch, classes)."""
    _check_logits(check_finite, teacher_logits=teacher_logits, student_logits=student_logits)
    return F.mse_loss(student_logits, teacher_logits.detach())


# ---------------------------------------------------------------------------------------------
# Logit distillation of 2022-2024 (DKD, DIST, logit standardization)
# ---------------------------------------------------------------------------------------------


def standardize_logits(logits: Tensor, eps: float = 1e-7) -> Tensor:
    """Logit standardization (Sun et al., CVPR 2024): each row z-scored,
    ``Z(z) = (z - mean_c z) / (std_c z + eps)`` with the unbiased standard deviation over the
    classes. (batch, classes) -> (batch, classes); rows of mean 0 and standard deviation 1
    (norm ``sqrt(classes - 1)``), so the KD temperature no longer has to match the two
    networks' logit scales."""
    centred = logits - logits.mean(dim=1, keepdim=True)
    return centred / (logits.std(dim=1, keepdim=True) + eps)


def _binary_and_rest(log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """From log-probabilities (batch, classes) and a (batch, classes) bool target mask: the
    log of the binary distribution ``(p_y, 1 - p_y)`` (batch, 2) and the log-softmax of the
    non-target classes alone (batch, classes - 1)."""
    batch, classes = log_probs.shape
    log_target = log_probs[target].view(batch, 1)
    log_rest = log_probs.masked_fill(target, -math.inf).logsumexp(1, keepdim=True)
    others = log_probs[~target].view(batch, classes - 1)
    return torch.cat([log_target, log_rest], 1), F.log_softmax(others, dim=1)


def dkd_loss(teacher_logits: Tensor, student_logits: Tensor, labels: Tensor,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
             check_finite: bool = True) -> Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): Hinton's KL split at the target class.

    ``L = T^2 * (alpha * KL(b^t || b^s) + beta * KL(q^t || q^s))``, batch mean, with
    ``p = softmax(z / T)``, the binary target-vs-rest distribution ``b = (p_y, 1 - p_y)``
    (TCKD) and ``q`` the softmax of ``z / T`` over the non-target classes alone (NCKD).
    teacher_logits, student_logits: (batch, classes); labels: (batch,) int64 (NCKD is 0 for two
    classes, which leave one non-target class)."""
    _check_logits(check_finite, teacher_logits=teacher_logits, student_logits=student_logits)
    check_temperature(temperature)
    for name, value in (("alpha", alpha), ("beta", beta)):
        check_weight(name, value)
    target = F.one_hot(labels, student_logits.shape[1]).bool()
    b_s, q_s = _binary_and_rest(F.log_softmax(student_logits / temperature, dim=1), target)
    b_t, q_t = _binary_and_rest(F.log_softmax(teacher_logits.detach() / temperature, dim=1),
                                target)
    tckd = F.kl_div(b_s, b_t, reduction="batchmean", log_target=True)
    nckd = F.kl_div(q_s, q_t, reduction="batchmean", log_target=True)
    return (alpha * tckd + beta * nckd).clamp(min=0) * temperature**2


def pearson_rows(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Pearson correlation of each row of ``x`` with the same row of ``y``: the cosine of the
    centred rows. (n, d) x2 -> (n,)."""
    x, y = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1) + eps)


def dist_loss(teacher_logits: Tensor, student_logits: Tensor, beta: float = 1.0,
              gamma: float = 1.0, temperature: float = 1.0, check_finite: bool = True) -> Tensor:
    """DIST (Huang et al., NeurIPS 2022): correlation, not equality, of class probabilities.

    ``L = T^2 * (beta * (1 - mean_i rho(p^s_i, p^t_i)) + gamma * (1 - mean_c rho(p^s_c, p^t_c)))``
    with ``p = softmax(z / T)``, ``rho`` the Pearson correlation (:func:`pearson_rows`), ``p_i``
    the row of sample ``i`` (inter-class relation) and ``p_c`` the column of class ``c`` over
    the batch (intra-class relation). (batch, classes) x2 -> scalar in [0, 2 T^2 (beta +
    gamma)]; 0 when the student's probabilities are the teacher's. A batch of one row (a short
    last batch) has no intra-class relation: that term adds nothing there. Arguments: teacher
    logits, student logits (batch, classes)."""
    _check_logits(check_finite, teacher_logits=teacher_logits, student_logits=student_logits)
    check_temperature(temperature)
    p_s = F.softmax(student_logits / temperature, dim=1)
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=1)
    inter = 1 - pearson_rows(p_s, p_t).mean()
    if len(p_s) < 2:  # one row: no class varies over the batch, the intra term adds nothing
        return beta * inter * temperature**2
    intra = 1 - pearson_rows(p_s.T, p_t.T).mean()
    return (beta * inter + gamma * intra) * temperature**2


# ---------------------------------------------------------------------------------------------
# Relation- and feature-based distillation (RKD, PKT, FitNets hints)
# ---------------------------------------------------------------------------------------------
# Here teacher and student tensors are (batch, dim) rows: the 128-d embeddings before each
# network's classifier (``Classifier.forward_features``) or the logits. The two dims may differ
# for RKD and PKT, which only compare (batch, batch) relations.


def _check_rows(check_finite: bool, least: int, **tensors: Tensor) -> None:
    """Raise ``ValueError`` naming the argument unless every tensor is (batch, dim) with the
    same batch of at least ``least`` rows and, with ``check_finite``, finite values."""
    batch = None
    for name, value in tensors.items():
        if not isinstance(value, Tensor) or value.dim() != 2:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a (batch, dim) tensor, got {got}")
        if value.shape[0] < least:
            raise ValueError(f"{name} has {value.shape[0]} rows; relations need at least {least}")
        if batch is not None and value.shape[0] != batch:
            raise ValueError(f"{name} has {value.shape[0]} rows but the teacher has {batch}")
        batch = value.shape[0]
        if check_finite and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} holds NaN or infinite values")


def _no_relation(student: Tensor) -> Tensor:
    """A relation term's value on a batch too small to hold one relation (a short last
    batch): 0, joined to the student's graph with a zero gradient (the sum over no rows), as
    the triplet term is 0 when no row has a negative."""
    return student[:0].sum()


def pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x``: (batch, dim) -> (batch, batch), zero on
    the diagonal (whose gradient is zero too)."""
    squared = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return squared.clamp(min=1e-12).sqrt() * off


def rkd_distance_loss(teacher: Tensor, student: Tensor, check_finite: bool = True) -> Tensor:
    """RKD's distance term (Park et al., CVPR 2019).

    ``L = mean_{i != j} huber(d^s_ij / mu_s, d^t_ij / mu_t)`` with ``d_ij = ||x_i - x_j||`` and
    ``mu`` the mean of ``d_ij`` over the batch's pairs ``i != j``; ``huber`` is the smooth L1
    loss with threshold 1. The student copies the *shape* of the teacher's point cloud, not its
    scale. teacher, student: (batch, dim); returns a scalar, 0 for a batch of one row (no
    pair, :func:`_no_relation`).
    """
    _check_rows(check_finite, 1, teacher=teacher, student=student)
    if len(teacher) < 2:
        return _no_relation(student)
    off = ~torch.eye(len(teacher), dtype=torch.bool, device=teacher.device)
    relations = []
    for x in (teacher.detach(), student):
        d = pairwise_distances(x)[off]
        relations.append(d / d.mean().clamp(min=1e-12))
    return F.smooth_l1_loss(relations[1], relations[0])


def triplet_angles(x: Tensor) -> Tensor:
    """Cosines of the angles at every vertex: ``cos[j, i, k]`` is the cosine of the angle at
    ``x_j`` between ``x_i`` and ``x_k``, ``<x_i - x_j, x_k - x_j> / (d_ji d_jk)``, and 0 when
    ``i = j`` or ``k = j``. (batch, dim) -> (batch, batch, batch).

    The inner products come from the Gram matrix ``G = x x^T`` of the centred rows as
    ``G_ik - G_ij - G_jk + G_jj``, so the cost is batch^3 rather than batch^3 * dim; the
    cosines are clamped to [-1, 1] against rounding between near-duplicate rows."""
    x = x - x.mean(0)  # angles do not move; smaller Gram entries round less
    gram = x @ x.T
    inner = gram[None, :, :] - gram[:, :, None] - gram[:, None, :] \
        + gram.diagonal()[:, None, None]
    d = pairwise_distances(x)
    off = (d > 0).to(x.dtype)  # zero distance: i = j (or a repeated row)
    lengths = (d[:, :, None] * d[:, None, :]).clamp(min=1e-12)
    return (inner * off[:, :, None] * off[:, None, :] / lengths).clamp(-1, 1)


def rkd_angle_loss(teacher: Tensor, student: Tensor, check_finite: bool = True) -> Tensor:
    """RKD's angle term (Park et al., CVPR 2019).

    ``L = mean over distinct (i, j, k) of huber(cos angle^s_ijk, cos angle^t_ijk)``, the angle
    at ``x_j`` between ``x_i`` and ``x_k`` (see :func:`triplet_angles`). teacher, student:
    (batch, dim); returns a scalar, 0 for a batch of fewer than 3 rows (no triangle,
    :func:`_no_relation`). Memory grows as batch^2 * dim + batch^3.
    """
    _check_rows(check_finite, 1, teacher=teacher, student=student)
    if len(teacher) < 3:
        return _no_relation(student)
    n = len(teacher)
    huber = F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher.detach()),
                             reduction="none")
    # Degenerate (i, j, k) add nothing: i = j or k = j gives cos 0 for both networks (a zero
    # edge), i = k gives cos 1 for both up to rounding, which the diagonal term removes.
    degenerate = huber.diagonal(dim1=1, dim2=2).sum()
    return (huber.sum() - degenerate) / (n * (n - 1) * (n - 2))


def similarity_distribution(x: Tensor) -> Tensor:
    """PKT's conditional probabilities ``P[i, j] = K(x_i, x_j) / sum_k K(x_i, x_k)`` with the
    cosine kernel ``K(a, b) = (1 + cos(a, b)) / 2``: (batch, dim) -> (batch, batch), rows sum
    to 1 (the sum over ``k`` includes ``k = i``, as in the authors' code)."""
    unit = F.normalize(x, dim=1)
    kernel = (unit @ unit.T + 1) / 2
    return kernel / kernel.sum(1, keepdim=True)


def pkt_loss(teacher: Tensor, student: Tensor, eps: float = 1e-7,
             check_finite: bool = True) -> Tensor:
    """PKT (Passalis & Tefas, ECCV 2018): the KL divergence between the teacher's and the
    student's distributions of cosine similarities (:func:`similarity_distribution`).

    ``L = mean_i sum_j P^t[i, j] log((P^t[i, j] + eps) / (P^s[i, j] + eps))``.
    teacher, student: (batch, dim); returns a scalar (0 when the student's rows are the
    teacher's up to a positive scale per row, and for a batch of one row, whose only
    similarity is with itself)."""
    _check_rows(check_finite, 1, teacher=teacher, student=student)
    target = similarity_distribution(teacher.detach())
    model = similarity_distribution(student)
    return (target * torch.log((target + eps) / (model + eps))).sum(1).mean()


def hint_loss(teacher: Tensor, regressed_student: Tensor, check_finite: bool = True) -> Tensor:
    """FitNets hint (Romero et al., ICLR 2015): ``L = mean over batch and dims of
    (r(s) - t)^2``, with ``r(s)`` the student's embedding mapped by a trained regressor to the
    teacher's width (see :func:`hint_regressor`). teacher, regressed_student: (batch, dim)."""
    _check_rows(check_finite, 1, teacher=teacher, regressed_student=regressed_student)
    if teacher.shape != regressed_student.shape:
        raise ValueError(f"regressed_student has shape {tuple(regressed_student.shape)} but the "
                         f"teacher has {tuple(teacher.shape)}; the regressor must map to it")
    return F.mse_loss(regressed_student, teacher.detach())


def hint_regressor(student_dim: int, teacher_dim: int) -> torch.nn.Module:
    """The FitNets regressor on embeddings: one linear layer ``student_dim -> teacher_dim``,
    trained with the student and discarded after training."""
    return torch.nn.Linear(student_dim, teacher_dim)


def check_weight(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
