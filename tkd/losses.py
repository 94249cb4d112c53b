"""Distillation losses: the paper's triplet loss, its pair variant, the classic KD losses and
the relation- and feature-based ones it is compared with (RKD, PKT, FitNets hints).

Shapes: every ``*_logits`` argument is ``(batch, classes)``; ``labels`` is ``(batch,)`` int64.
Vocabulary of the paper: the *anchor* is the teacher's output for an image ``x``, the
*positive* the student's output for the same ``x``, the *negative* the student's output for an
image ``x'`` of another class. Negatives are chosen by :mod:`tkd.miners` (in-batch) or by
:class:`tkd.data.NegativeSampler` (the paper's draw from the whole training set).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tkd.miners import check_strategy

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


def _check_margin(margin: float) -> None:
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")


def _check_norm(p: float) -> None:
    if not math.isfinite(p) or p <= 0:
        raise ValueError(f"p must be a finite number > 0, got {p}")


def _check_temperature(temperature: float) -> None:
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
    _check_margin(margin)
    _check_valid(valid, len(teacher_logits))
    _check_norm(p)
    if temperature is not None:
        _check_temperature(temperature)
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
    _check_margin(margin)
    _check_valid(valid, len(anchor))
    _check_norm(p)
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
    _check_margin(margin)
    _check_valid(valid, len(teacher_logits))
    pull = distance(student_logits, teacher_logits.detach())
    push = (margin - distance(student_logits, negative_teacher_logits.detach())).clamp(min=0)
    return _weighted_mean(pull + push, valid)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 4.0,
            check_finite: bool = True) -> Tensor:
    """Hinton et al.: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, averaged over the batch."""
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
    _check_temperature(temperature)
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl.clamp(min=0) * temperature**2  # KL >= 0; rounding can give -1e-8


def logit_mse_loss(student_logits: Tensor, teacher_logits: Tensor,
                   check_finite: bool = True) -> Tensor:
    """Ba & Caruana's logit regression: ``mean over batch and classes of (s - t)^2``."""
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
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


def dkd_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
             alpha: float = 1.0, beta: float = 8.0, temperature: float = 4.0,
             check_finite: bool = True) -> Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): Hinton's KL split at the target class.

    ``L = T^2 * (alpha * KL(b^t || b^s) + beta * KL(q^t || q^s))``, batch mean, with
    ``p = softmax(z / T)``, the binary target-vs-rest distribution ``b = (p_y, 1 - p_y)``
    (TCKD) and ``q`` the softmax of ``z / T`` over the non-target classes alone (NCKD).
    student_logits, teacher_logits: (batch, classes); labels: (batch,) int64 (NCKD is 0 for two
    classes, which leave one non-target class)."""
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
    _check_temperature(temperature)
    for name, value in (("alpha", alpha), ("beta", beta)):
        _check_weight(name, value)
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


def dist_loss(student_logits: Tensor, teacher_logits: Tensor, beta: float = 1.0,
              gamma: float = 1.0, temperature: float = 1.0, check_finite: bool = True) -> Tensor:
    """DIST (Huang et al., NeurIPS 2022): correlation, not equality, of class probabilities.

    ``L = T^2 * (beta * (1 - mean_i rho(p^s_i, p^t_i)) + gamma * (1 - mean_c rho(p^s_c, p^t_c)))``
    with ``p = softmax(z / T)``, ``rho`` the Pearson correlation (:func:`pearson_rows`), ``p_i``
    the row of sample ``i`` (inter-class relation) and ``p_c`` the column of class ``c`` over
    the batch (intra-class relation). (batch, classes) x2 -> scalar in [0, 2 T^2 (beta +
    gamma)]; 0 when the student's probabilities are the teacher's. A batch of one row (a short
    last batch) has no intra-class relation: that term adds nothing there."""
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
    _check_temperature(temperature)
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


def _check_anchor(config) -> None:
    """``ValueError`` unless ``config.anchor`` is ``"teacher"``, or ``"student"`` with the
    triplet term alone beside CE and in-batch negatives (the positive comes from the batch)."""
    if config.anchor not in ("teacher", "student"):
        raise ValueError(f"anchor must be 'teacher' or 'student', got {config.anchor!r}")
    if config.anchor == "student" and (config.negatives == "sample" or any(
            t not in ("ce", "triplet") for t in config.terms)):
        raise ValueError("anchor='student' (the teacher-free triplet) needs in-batch negatives "
                         "(negatives='batch-random', 'batch-hard' or 'batch-semihard') and no "
                         f"term but ce and triplet; got negatives={config.negatives!r}, "
                         f"terms {config.terms}")


def _check_weight(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


TERMS = ("ce", "kd", "mse", "triplet", "pair", "rkd_distance", "rkd_angle", "pkt", "hint",
         "dkd", "dist")
"""The objective's terms, in logging order; each has a ``<term>_weight`` in ObjectiveConfig."""
RELATION_TERMS = ("rkd_distance", "rkd_angle", "pkt")

@dataclass
class ObjectiveConfig:
    """Weights and settings of the combined training objective (see :func:`objective`).

    ``total = ce_weight*CE + kd_weight*KD_T + mse_weight*MSE + triplet_weight*Triplet_m
    + pair_weight*Pair_m + rkd_distance_weight*RKD_D + rkd_angle_weight*RKD_A
    + pkt_weight*PKT + hint_weight*Hint + w(epoch)*dkd_weight*DKD + dist_weight*DIST``; a
    term with weight 0 is not computed. ``temperature`` softens KD, DKD and DIST alike.
    ``triplet_temperature=None`` puts the triplet on raw logits, as the paper does.
    ``dkd_warmup``: the fraction of the schedule over which DKD's weight ``w`` rises
    linearly to 1 (``w = min(epoch / (dkd_warmup * epochs), 1)``, epochs from 1; 0: none).
    ``standardize``: z-score teacher, student and negative logits
    (:func:`standardize_logits`) before every term that compares them with the teacher's
    (KD, DKD, DIST, MSE, triplet, pair); the cross-entropy keeps the raw logits.
    ``relation_space``: where RKD and PKT compare samples, ``"embedding"`` (the 128-d rows
    before the classifier, as RKD's and PKT's papers do) or ``"logits"`` (the triplet's space);
    the hint always regresses embeddings.
    ``anchor``: ``"teacher"`` (the paper's triplet, anchored on ``teacher(x)``) or
    ``"student"``, the teacher-free control: the triplet anchored on ``student(x)`` with a
    same-class positive from the batch (:func:`student_triplet_loss`; in-batch negatives only).
    """

    ce_weight: float = 1.0
    kd_weight: float = 0.0
    temperature: float = 4.0
    mse_weight: float = 0.0
    triplet_weight: float = 0.0
    pair_weight: float = 0.0
    margin: float = 5.0
    negatives: str = "sample"
    p: float = 2.0
    triplet_temperature: float | None = None
    rkd_distance_weight: float = 0.0
    rkd_angle_weight: float = 0.0
    pkt_weight: float = 0.0
    hint_weight: float = 0.0
    relation_space: str = "embedding"
    dkd_weight: float = 0.0
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup: float = 0.0
    dist_weight: float = 0.0
    dist_beta: float = 1.0
    dist_gamma: float = 1.0
    standardize: bool = False
    anchor: str = "teacher"

    def __post_init__(self) -> None:
        for name in TERMS:
            _check_weight(f"{name}_weight", getattr(self, f"{name}_weight"))
        if self.relation_space not in ("embedding", "logits"):
            raise ValueError(f"relation_space must be 'embedding' or 'logits', "
                             f"got {self.relation_space!r}")
        _check_temperature(self.temperature)
        for name in ("dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma"):
            _check_weight(name, getattr(self, name))
        if not 0 <= self.dkd_warmup <= 1:
            raise ValueError(f"dkd_warmup is a fraction of the schedule in [0, 1], "
                             f"got {self.dkd_warmup}")
        _check_margin(self.margin)
        check_strategy(self.negatives)
        _check_anchor(self)
        _check_norm(self.p)
        if self.triplet_temperature is not None:
            _check_temperature(self.triplet_temperature)
        if self.terms == []:
            raise ValueError("every loss weight is 0: set at least one of the *_weight fields")

    @property
    def terms(self) -> list[str]:
        """Names of the terms with a positive weight, in logging order."""
        return [n for n in TERMS if getattr(self, f"{n}_weight") > 0]

    @property
    def needs_teacher(self) -> bool:
        own = ("ce", "triplet") if self.anchor == "student" else ("ce",)
        return any(t not in own for t in self.terms)

    @property
    def needs_embeddings(self) -> bool:
        """True when a term compares embeddings (``forward_features``) rather than logits."""
        relations = any(t in self.terms for t in RELATION_TERMS)
        return "hint" in self.terms or (relations and self.relation_space == "embedding")

    @property
    def in_batch(self) -> bool:
        """True when a term relates the samples of a batch (mined negatives, RKD, PKT): such
        terms are scored on batches of the training batch size."""
        mined = self.needs_negatives and self.negatives != "sample"
        return mined or any(t in self.terms for t in (*RELATION_TERMS, "dist"))

    @property
    def needs_negatives(self) -> bool:
        return any(t in self.terms for t in ("triplet", "pair"))

    @property
    def student_sees_negatives(self) -> bool:
        """True when the student must run on the drawn negative images ``x'``: the triplet
        term with the paper's sampled negatives (the pair term needs only ``teacher(x')``)."""
        return "triplet" in self.terms and self.negatives == "sample"

    def to_dict(self) -> dict:
        return asdict(self)

    def warmup_factor(self, epoch: int, epochs: int) -> float:
        """DKD's weight factor in ``epoch`` (from 1) of ``epochs``: ``min(epoch / (dkd_warmup
        * epochs), 1)``, 1 without warm-up."""
        if self.dkd_warmup == 0:
            return 1.0
        return min(epoch / (self.dkd_warmup * epochs), 1.0)


METHODS: dict[str, dict] = {
    "ce": {},
    "ce-mse": {"mse_weight": 1.0},
    "logit-mse": {"ce_weight": 0.0, "mse_weight": 1.0},
    "kd": {"kd_weight": 1.0, "temperature": 4.0},
    "pair": {"pair_weight": 2.0, "margin": 5.0},
    "triplet": {"triplet_weight": 2.0, "margin": 5.0},
    "triplet-kd": {"kd_weight": 1.0, "temperature": 1.0, "triplet_weight": 2.0, "margin": 5.0},
    "rkd": {"rkd_distance_weight": 25.0, "rkd_angle_weight": 50.0},
    "pkt": {"pkt_weight": 30000.0 / 64},
    "hint": {"hint_weight": 100.0},
    "dkd": {"dkd_weight": 1.0, "temperature": 4.0, "dkd_alpha": 1.0, "dkd_beta": 8.0,
            "dkd_warmup": 20 / 240},
    "dist": {"dist_weight": 1.0, "temperature": 1.0, "dist_beta": 1.0, "dist_gamma": 1.0},
    "kd-ls": {"ce_weight": 0.1, "kd_weight": 9.0, "temperature": 2.0, "standardize": True},
    "triplet-ls": {"triplet_weight": 2.0, "margin": 1.0, "standardize": True},
    "triplet-self": {"triplet_weight": 2.0, "margin": 5.0, "anchor": "student",
                     "negatives": "batch-semihard"},
}
"""The methods the paper compares, as objective settings. ``triplet`` is the 2020 code's
``CE + 2 * triplet`` (margin 5); ``triplet-kd`` the 2022 rewrite's ``KL_{T=1} + CE + 2 * triplet``;
``kd`` is Hinton's ``CE + KD`` (T = 4 by default); ``logit-mse`` is Ba & Caruana's logit
regression (the MSE to the teacher's logits alone, no labels); ``ce-mse`` adds it to the
cross-entropy. The relation- and feature-based methods keep the cross-entropy beside their term
with the weights of RepDistiller (Tian et al., ICLR 2020), the common benchmark of these
methods: ``rkd`` = CE + 25 distance + 50 angle; ``pkt`` = CE + 30000 x the mean of the
(batch, batch) KL matrix at its batch of 64, which is 30000 / 64 = 468.75 x
:func:`pkt_loss` (a mean over anchors, so the weight no longer depends on the batch size);
``hint`` = CE + 100 x :func:`hint_loss`.

Today's logit distillation, at its published defaults: ``dkd`` = CE + DKD (alpha 1, beta 8,
T = 4, its weight warmed up over the first 20/240 of the schedule, as over 20 of 240 epochs);
``dist`` = CE + DIST (beta = gamma = 1, T = 1); ``kd-ls`` = 0.1 CE + 9 KD at base T = 2 on
standardized logits. ``triplet-ls`` is the paper's triplet on standardized logits, whose rows
have norm ``sqrt(classes - 1)`` (3 for 10 classes), so the margin is 1, not 5.

``triplet-self`` is a control, not a distillation method: CE + 2 x the triplet anchored on the
student's own logits (:func:`student_triplet_loss`), semi-hard negatives (the miner chosen
for the teacher-anchored triplet), margin 5, no teacher anywhere in the run."""


def method_config(method: str, **overrides) -> ObjectiveConfig:
    """The :class:`ObjectiveConfig` of a named method in :data:`METHODS`, with overrides."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; choose one of {', '.join(METHODS)}")
    settings = {**METHODS[method], **{k: v for k, v in overrides.items() if v is not None}}
    return ObjectiveConfig(**settings)


def objective(
    config: ObjectiveConfig,
    student_logits: Tensor,
    labels: Tensor,
    teacher_logits: Tensor | None = None,
    negative_logits: Tensor | None = None,
    negative_teacher_logits: Tensor | None = None,
    valid: Tensor | None = None,
    check_finite: bool = True,
    student_features: Tensor | None = None,
    teacher_features: Tensor | None = None,
    regressor: torch.nn.Module | None = None,
    warmup: Tensor | float = 1.0,
    positive_logits: Tensor | None = None,
) -> dict[str, Tensor]:
    """Weighted sum of the configured terms; returns ``{"total": ..., "ce": ..., ...}`` scalars.

    student_logits, teacher_logits: (batch, classes); labels: (batch,). negative_logits,
    negative_teacher_logits: (batch, classes), the student's (triplet term) and the teacher's
    (pair term) logits of each row's negative, chosen by :mod:`tkd.miners` or
    :class:`tkd.data.NegativeSampler`; ``valid`` (batch,) bool: rows that have a negative.
    student_features, teacher_features: (batch, dim) embeddings when
    ``config.needs_embeddings``; ``regressor`` maps the student's to the teacher's (hint term).
    ``warmup``: DKD's weight factor this epoch (:meth:`ObjectiveConfig.warmup_factor`; a 0-d
    tensor in the trainer, so that a captured step reads it). ``positive_logits`` (batch,
    classes): the student's logits of each row's same-class positive, for the teacher-free
    triplet (``config.anchor == "student"``)."""
    if labels.dim() != 1 or labels.shape[0] != student_logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({student_logits.shape[0]},), got {tuple(labels.shape)}"
        )
    if labels.dtype != torch.int64 or (check_finite and len(labels) and (  # no sync if not
            labels.min() < 0 or labels.max() >= student_logits.shape[-1])):
        raise ValueError(f"labels must be int64 class indices in 0..{student_logits.shape[-1] - 1}"
                         f", got {labels.dtype} values {labels.unique()[:10].tolist()}")
    if config.needs_teacher and teacher_logits is None:
        raise ValueError(f"teacher_logits are required for the terms {config.terms}")
    student_logits = student_logits.float()
    teacher_logits = None if teacher_logits is None else teacher_logits.float()
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
    parts: dict[str, Tensor] = {}
    if config.ce_weight > 0:
        parts["ce"] = F.cross_entropy(student_logits, labels)
    if config.standardize:
        (student_logits, teacher_logits, negative_logits, negative_teacher_logits,
         positive_logits) = (None if z is None else standardize_logits(z.float()) for z in
                             (student_logits, teacher_logits, negative_logits,
                              negative_teacher_logits, positive_logits))
    if config.dkd_weight > 0:
        parts["dkd"] = dkd_loss(student_logits, teacher_logits, labels, config.dkd_alpha,
                                config.dkd_beta, config.temperature, False)
    if config.dist_weight > 0:
        parts["dist"] = dist_loss(student_logits, teacher_logits, config.dist_beta,
                                  config.dist_gamma, config.temperature, False)
    if config.kd_weight > 0:
        parts["kd"] = kd_loss(student_logits, teacher_logits, config.temperature, False)
    if config.mse_weight > 0:
        parts["mse"] = logit_mse_loss(student_logits, teacher_logits, False)
    if config.triplet_weight > 0 and config.anchor == "student":
        if negative_logits is None or positive_logits is None:
            raise ValueError("positive_logits and negative_logits are required for the "
                             "teacher-free triplet term")
        parts["triplet"] = student_triplet_loss(
            student_logits, positive_logits.float(), negative_logits.float(), config.margin,
            config.p, valid, check_finite)
    elif config.triplet_weight > 0:
        if negative_logits is None:
            raise ValueError("negative_logits are required for the triplet term")
        parts["triplet"] = triplet_kd_loss(
            teacher_logits, student_logits, negative_logits.float(), config.margin, config.p,
            config.triplet_temperature, valid, check_finite,
        )
    if config.pair_weight > 0:
        if negative_teacher_logits is None:
            raise ValueError("negative_teacher_logits are required for the pair term")
        parts["pair"] = pair_kd_loss(
            teacher_logits, student_logits, negative_teacher_logits.float(), config.margin,
            valid, check_finite,
        )
    parts.update(_relation_terms(config, student_logits, teacher_logits, student_features,
                                 teacher_features, regressor, check_finite))
    total = sum(getattr(config, f"{name}_weight") * (warmup if name == "dkd" else 1) * value
                for name, value in parts.items())
    return {"total": total, **parts}


def _relation_terms(config: ObjectiveConfig, student_logits: Tensor, teacher_logits: Tensor,
                    student_features: Tensor | None, teacher_features: Tensor | None,
                    regressor: torch.nn.Module | None, check_finite: bool) -> dict[str, Tensor]:
    """The RKD, PKT and hint terms of :func:`objective` that ``config`` weights."""
    parts: dict[str, Tensor] = {}
    if config.needs_embeddings and (student_features is None or teacher_features is None):
        raise ValueError(f"student_features and teacher_features are required for the terms "
                         f"{config.terms}")
    student, teacher = ((student_logits, teacher_logits) if config.relation_space == "logits"
                        else (student_features, teacher_features))
    relations = {"rkd_distance": rkd_distance_loss, "rkd_angle": rkd_angle_loss,
                 "pkt": pkt_loss}
    for name, loss in relations.items():
        if name in config.terms:
            parts[name] = loss(teacher.float(), student.float(), check_finite=check_finite)
    if "hint" in config.terms:
        if regressor is None:
            raise ValueError("the hint term needs the regressor (tkd.losses.hint_regressor)")
        parts["hint"] = hint_loss(teacher_features.float(),
                                  regressor(student_features.float()), check_finite)
    return parts
