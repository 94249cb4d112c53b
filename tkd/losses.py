"""Distillation losses: the paper's triplet loss, its pair variant and the classic KD losses.

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


def _check_weight(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


@dataclass
class ObjectiveConfig:
    """Weights and settings of the combined training objective (see :func:`objective`).

    ``total = ce_weight*CE + kd_weight*KD_T + mse_weight*MSE + triplet_weight*Triplet_m
    + pair_weight*Pair_m``; a term with weight 0 is not computed.
    ``triplet_temperature=None`` puts the triplet on raw logits, as the paper does.
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

    def __post_init__(self) -> None:
        for name in ("ce_weight", "kd_weight", "mse_weight", "triplet_weight", "pair_weight"):
            _check_weight(name, getattr(self, name))
        _check_temperature(self.temperature)
        _check_margin(self.margin)
        check_strategy(self.negatives)
        _check_norm(self.p)
        if self.triplet_temperature is not None:
            _check_temperature(self.triplet_temperature)
        if self.terms == []:
            raise ValueError("every loss weight is 0: set at least one of the *_weight fields")

    @property
    def terms(self) -> list[str]:
        """Names of the terms with a positive weight, in logging order."""
        names = ("ce", "kd", "mse", "triplet", "pair")
        return [n for n in names if getattr(self, f"{n}_weight") > 0]

    @property
    def needs_teacher(self) -> bool:
        return any(t in self.terms for t in ("kd", "mse", "triplet", "pair"))

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


METHODS: dict[str, dict] = {
    "ce": {},
    "ce-mse": {"mse_weight": 1.0},
    "logit-mse": {"ce_weight": 0.0, "mse_weight": 1.0},
    "kd": {"kd_weight": 1.0, "temperature": 4.0},
    "pair": {"pair_weight": 2.0, "margin": 5.0},
    "triplet": {"triplet_weight": 2.0, "margin": 5.0},
    "triplet-kd": {"kd_weight": 1.0, "temperature": 1.0, "triplet_weight": 2.0, "margin": 5.0},
}
"""The methods the paper compares, as objective settings. ``triplet`` is the 2020 code's
``CE + 2 * triplet`` (margin 5); ``triplet-kd`` the 2022 rewrite's ``KL_{T=1} + CE + 2 * triplet``;
``kd`` is Hinton's ``CE + KD`` (T = 4 by default); ``logit-mse`` is Ba & Caruana's logit
regression (the MSE to the teacher's logits alone, no labels); ``ce-mse`` adds it to the
cross-entropy."""


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
) -> dict[str, Tensor]:
    """Weighted sum of the configured terms; returns ``{"total": ..., "ce": ..., ...}`` scalars.

    student_logits, teacher_logits: (batch, classes); labels: (batch,).
    negative_logits: the student's logits of each row's negative (triplet term);
    negative_teacher_logits: the teacher's logits of each row's negative (pair term); both
    (batch, classes), chosen by the caller (:mod:`tkd.miners` or
    :class:`tkd.data.NegativeSampler`). ``valid`` (batch,) bool: rows that have a negative.
    """
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
    if config.kd_weight > 0:
        parts["kd"] = kd_loss(student_logits, teacher_logits, config.temperature, False)
    if config.mse_weight > 0:
        parts["mse"] = logit_mse_loss(student_logits, teacher_logits, False)
    if config.triplet_weight > 0:
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
    total = sum(getattr(config, f"{name}_weight") * value for name, value in parts.items())
    return {"total": total, **parts}
