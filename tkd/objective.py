"""The training objective: the term table, who picks each row's negatives, the weighted sum.

A *term* is one row of :data:`TABLE`: its loss (a pure function of :mod:`tkd.losses`), what
it reads beyond the student's logits and the labels, whether it has a warm-up, and — for the
terms that compare a sample with another one — how its negatives are picked. The trainer asks
this module, never the losses' names, what to compute:

- :class:`ObjectiveConfig` holds the weights and settings (a record stores it as a dict);
  :data:`METHODS` names the configurations the paper compares, :func:`method_config` builds one;
- :func:`objective` (keywords only) computes the active rows in table order and returns their
  weighted sum ``total = sum_term weight_term * warmup_term(epoch) * L_term`` with each part;
- :func:`pick_negatives` asks the row that takes negatives for its pick: the paper's sampled
  ``x'`` (:class:`tkd.miners.NegativeSampler`, drawn by the trainer once per epoch) or an
  in-batch miner of :mod:`tkd.miners` ranking candidates by the distance that row's loss pushes.

Adding a KD method: a loss in :mod:`tkd.losses`, its weight (and settings) on
:class:`ObjectiveConfig`, a row in :data:`TABLE`, a name in :data:`METHODS`
(``docs/adding_a_method.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from tkd.losses import (
    _check_logits,
    check_margin,
    check_norm,
    check_temperature,
    check_weight,
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
    student_triplet_loss,
    triplet_kd_loss,
)
from tkd.miners import batch_positives, check_strategy, mine_negatives

TERMS = ("ce", "kd", "mse", "triplet", "pair", "rkd_distance", "rkd_angle", "pkt", "hint",
         "dkd", "dist")
"""The objective's terms, in logging order (the records' columns); each has a
``<term>_weight`` in ObjectiveConfig. :data:`TABLE` lists them in the order they are computed
and summed."""


@dataclass
class ObjectiveConfig:
    """Weights and settings of the combined training objective (see :func:`objective`).

    ``total = ce_weight*CE + kd_weight*KD_T + mse_weight*MSE + triplet_weight*Triplet_m
    + pair_weight*Pair_m + rkd_distance_weight*RKD_D + rkd_angle_weight*RKD_A
    + pkt_weight*PKT + hint_weight*Hint + w(epoch)*dkd_weight*DKD + dist_weight*DIST``; a
    term with weight 0 is not computed. ``temperature`` softens KD, DKD and DIST alike.
    ``triplet_temperature=None`` puts the triplet on raw logits, as the paper does.
    ``dkd_warmup``: the fraction of the schedule over which DKD's weight ``w`` rises
    linearly to 1 (``w = min(epoch / (dkd_warmup * epochs), 1)``, epochs from 1; 0: none);
    any term can have such a field, named in its row of :data:`TABLE`.
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
            check_weight(f"{name}_weight", getattr(self, f"{name}_weight"))
        if self.relation_space not in ("embedding", "logits"):
            raise ValueError(f"relation_space must be 'embedding' or 'logits', "
                             f"got {self.relation_space!r}")
        check_temperature(self.temperature)
        for name in ("dkd_alpha", "dkd_beta", "dist_beta", "dist_gamma"):
            check_weight(name, getattr(self, name))
        for term in TABLE.values():
            if term.warmup and not 0 <= getattr(self, term.warmup) <= 1:
                raise ValueError(f"{term.warmup} is a fraction of the schedule in [0, 1], "
                                 f"got {getattr(self, term.warmup)}")
        check_margin(self.margin)
        check_strategy(self.negatives)
        _check_anchor(self)
        check_norm(self.p)
        if self.triplet_temperature is not None:
            check_temperature(self.triplet_temperature)
        if self.terms == []:
            raise ValueError("every loss weight is 0: set at least one of the *_weight fields")

    @property
    def terms(self) -> list[str]:
        """Names of the terms with a positive weight, in logging order."""
        return [n for n in TERMS if getattr(self, f"{n}_weight") > 0]

    def rows(self) -> list[tuple[str, Term]]:
        """The active rows of the term table, in table (computation) order; the triplet's
        row is :data:`SELF_TRIPLET` when the triplet is anchored on the student."""
        return [(name, SELF_TRIPLET if name == "triplet" and self.anchor == "student" else term)
                for name, term in TABLE.items() if getattr(self, f"{name}_weight") > 0]

    @property
    def needs_teacher(self) -> bool:
        return any(term.teacher for _, term in self.rows())

    @property
    def needs_embeddings(self) -> bool:
        """True when a term compares embeddings (``forward_features``) rather than logits."""
        return any(term.space == "embeddings" or (term.space == "relation"
                                                  and self.relation_space == "embedding")
                   for _, term in self.rows())

    @property
    def in_batch(self) -> bool:
        """True when a term relates the samples of a batch (mined negatives, RKD, PKT, DIST):
        such terms are scored on batches of the training batch size."""
        mined = self.needs_negatives and self.negatives != "sample"
        return mined or any(term.batch for _, term in self.rows())

    @property
    def needs_negatives(self) -> bool:
        return any(term.pick is not None for _, term in self.rows())

    @property
    def student_sees_negatives(self) -> bool:
        """True when the student must run on the drawn negative images ``x'``: a term reads
        the student's logits of the paper's sampled negatives (the triplet)."""
        return self.negatives == "sample" and any(
            term.sampled == "negative_logits" for _, term in self.rows())

    @property
    def teacher_sees_negatives(self) -> bool:
        """True when a term reads the teacher's logits of the paper's sampled negatives ``x'``
        (the pair term)."""
        return self.negatives == "sample" and any(
            term.sampled == "negative_teacher_logits" for _, term in self.rows())

    def to_dict(self) -> dict:
        return asdict(self)

    def warmups(self) -> list[str]:
        """The active terms that have a warm-up setting (their factor is read every step)."""
        return [name for name, term in self.rows() if term.warmup]

    def warmup_factor(self, term: str, epoch: int, epochs: int) -> float:
        """The weight factor of ``term`` in ``epoch`` (from 1) of ``epochs``:
        ``min(epoch / (warmup * epochs), 1)`` with ``warmup`` its row's setting (e.g.
        ``dkd_warmup``); 1 for a term without warm-up."""
        field = TABLE[term].warmup
        warmup = getattr(self, field) if field else 0
        if warmup == 0:
            return 1.0
        return min(epoch / (warmup * epochs), 1.0)


def _check_anchor(config: ObjectiveConfig) -> None:
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



# ---------------------------------------------------------------------- the term table ----


@dataclass
class Inputs:
    """What the terms read: logits (batch, classes) (the student's and the teacher's as
    float32; a term casts the others), ``labels`` (batch,), embeddings (batch, dim);
    ``valid`` (batch,) bool marks the rows that have a negative."""

    student_logits: Tensor
    labels: Tensor
    teacher_logits: Tensor | None = None
    negative_logits: Tensor | None = None  # the student's logits of each row's negative
    negative_teacher_logits: Tensor | None = None  # the teacher's logits of it
    positive_logits: Tensor | None = None  # the student's, of a same-class positive
    valid: Tensor | None = None
    student_features: Tensor | None = None
    teacher_features: Tensor | None = None
    regressor: torch.nn.Module | None = None  # the hint's student -> teacher map
    check_finite: bool = True

    def standardized(self) -> Inputs:
        """These inputs with every logits tensor z-scored (:func:`standardize_logits`)."""
        (student, teacher, negative, negative_teacher, positive) = (
            None if z is None else standardize_logits(z.float()) for z in
            (self.student_logits, self.teacher_logits, self.negative_logits,
             self.negative_teacher_logits, self.positive_logits))
        return Inputs(student, self.labels, teacher, negative, negative_teacher, positive,
                      self.valid, self.student_features, self.teacher_features,
                      self.regressor, self.check_finite)


Picker = Callable[..., dict]


@dataclass(frozen=True)
class Term:
    """One row of :data:`TABLE`. ``loss(config, inputs)`` -> scalar; ``teacher``: it reads the
    teacher; ``raw``: it reads the logits as they are, even when the objective standardizes
    them; ``space``: ``"logits"``, ``"embeddings"`` or ``"relation"`` (the config's
    ``relation_space``); ``batch``: it relates the samples of a batch; ``sampled``: the input
    that the paper's sampled negative ``x'`` fills (``"negative_logits"``: the student's logits
    of ``x'``, ``"negative_teacher_logits"``: the teacher's); ``pick``: how an in-batch miner
    picks its negatives (see :func:`pick_negatives`); ``warmup``: the ObjectiveConfig field
    holding the fraction of the schedule over which its weight rises to 1."""

    loss: Callable[[ObjectiveConfig, Inputs], Tensor]
    teacher: bool = True
    raw: bool = False
    space: str = "logits"
    batch: bool = False
    sampled: str | None = None
    pick: Picker | None = None
    warmup: str | None = None


def _ce(c: ObjectiveConfig, x: Inputs) -> Tensor:
    return F.cross_entropy(x.student_logits, x.labels)


def _dkd(c: ObjectiveConfig, x: Inputs) -> Tensor:
    return dkd_loss(x.teacher_logits, x.student_logits, x.labels, c.dkd_alpha, c.dkd_beta,
                    c.temperature, False)


def _dist(c: ObjectiveConfig, x: Inputs) -> Tensor:
    return dist_loss(x.teacher_logits, x.student_logits, c.dist_beta, c.dist_gamma,
                     c.temperature, False)


def _kd(c: ObjectiveConfig, x: Inputs) -> Tensor:
    return kd_loss(x.teacher_logits, x.student_logits, c.temperature, False)


def _mse(c: ObjectiveConfig, x: Inputs) -> Tensor:
    return logit_mse_loss(x.teacher_logits, x.student_logits, False)


def _triplet(c: ObjectiveConfig, x: Inputs) -> Tensor:
    if x.negative_logits is None:
        raise ValueError("negative_logits are required for the triplet term")
    return triplet_kd_loss(x.teacher_logits, x.student_logits, x.negative_logits.float(),
                           c.margin, c.p, c.triplet_temperature, x.valid, x.check_finite)


def _self_triplet(c: ObjectiveConfig, x: Inputs) -> Tensor:
    if x.negative_logits is None or x.positive_logits is None:
        raise ValueError("positive_logits and negative_logits are required for the "
                         "teacher-free triplet term")
    return student_triplet_loss(x.student_logits, x.positive_logits.float(),
                                x.negative_logits.float(), c.margin, c.p, x.valid,
                                x.check_finite)


def _pair(c: ObjectiveConfig, x: Inputs) -> Tensor:
    if x.negative_teacher_logits is None:
        raise ValueError("negative_teacher_logits are required for the pair term")
    return pair_kd_loss(x.teacher_logits, x.student_logits, x.negative_teacher_logits.float(),
                        c.margin, x.valid, x.check_finite)


def _relation(loss: Callable) -> Callable[[ObjectiveConfig, Inputs], Tensor]:
    """A relation term (RKD, PKT) on the space the config names."""
    def term(c: ObjectiveConfig, x: Inputs) -> Tensor:
        teacher, student = ((x.teacher_logits, x.student_logits)
                            if c.relation_space == "logits"
                            else (x.teacher_features, x.student_features))
        return loss(teacher.float(), student.float(), check_finite=x.check_finite)
    return term


def _hint(c: ObjectiveConfig, x: Inputs) -> Tensor:
    if x.regressor is None:
        raise ValueError("the hint term needs the regressor (tkd.losses.hint_regressor)")
    return hint_loss(x.teacher_features.float(), x.regressor(x.student_features.float()),
                     x.check_finite)


# ------------------------------------------------------------- who picks the negatives ----


def _ranked(anchor: str) -> Picker:
    """An in-batch pick ranking the candidates by ``||anchor_i - other_j||``, the distance
    the loss pushes: anchor ``"teacher"`` for the triplet (``||t_i - s_j||``), ``"student"``
    for the pair loss (``||s_i - t_j||``); between standardized logits when the objective
    standardizes them. The paper's sampled negatives were computed by the caller."""
    def pick(config: ObjectiveConfig, labels: Tensor, teacher: Tensor | None, student: Tensor,
             sampled_student: Tensor | None, sampled_teacher: Tensor | None,
             generator: torch.Generator | None) -> dict:
        if config.negatives == "sample":
            return {"negative_logits": sampled_student,
                    "negative_teacher_logits": sampled_teacher, "valid": None}
        t, s = ((standardize_logits(teacher), standardize_logits(student))
                if config.standardize else (teacher, student))
        a, b = (t, s) if anchor == "teacher" else (s, t)
        index, valid = mine_negatives(config.negatives, labels, a, b, b, generator)
        return {"negative_logits": student[index], "negative_teacher_logits": teacher[index],
                "valid": valid}
    return pick


def _pick_self(config: ObjectiveConfig, labels: Tensor, teacher: Tensor | None,
               student: Tensor, sampled_student: Tensor | None,
               sampled_teacher: Tensor | None, generator: torch.Generator | None) -> dict:
    """The teacher-free triplet's pick: per row a random other same-class row of the batch
    (:func:`tkd.miners.batch_positives`), then the negative by ``config.negatives`` with the
    student's own logits ``student`` (batch, classes) as the anchor."""
    s = standardize_logits(student) if config.standardize else student
    positive, has_positive = batch_positives(labels, generator)
    negative, has_negative = mine_negatives(config.negatives, labels, s, s[positive], s,
                                            generator)
    return {"positive_logits": student[positive], "negative_logits": student[negative],
            "valid": has_positive & has_negative}


TABLE: dict[str, Term] = {
    "ce": Term(_ce, teacher=False, raw=True),
    "dkd": Term(_dkd, warmup="dkd_warmup"),
    "dist": Term(_dist, batch=True),
    "kd": Term(_kd),
    "mse": Term(_mse),
    "triplet": Term(_triplet, sampled="negative_logits", pick=_ranked("teacher")),
    "pair": Term(_pair, sampled="negative_teacher_logits", pick=_ranked("student")),
    "rkd_distance": Term(_relation(rkd_distance_loss), space="relation", batch=True),
    "rkd_angle": Term(_relation(rkd_angle_loss), space="relation", batch=True),
    "pkt": Term(_relation(pkt_loss), space="relation", batch=True),
    "hint": Term(_hint, space="embeddings"),
}
"""The terms in the order they are computed and summed (the order fixes the bits of a run:
keep it). The cross-entropy reads the raw logits, every other term the standardized ones when
the config standardizes."""

SELF_TRIPLET = Term(_self_triplet, teacher=False, pick=_pick_self)
"""The triplet's row when ``anchor="student"``: the teacher-free control."""


def pick_negatives(config: ObjectiveConfig, labels: Tensor, teacher: Tensor | None,
                   student: Tensor, sampled_student: Tensor | None = None,
                   sampled_teacher: Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict:
    """The keyword arguments of :func:`objective` that name other rows (``negative_logits``,
    ``negative_teacher_logits``, ``positive_logits``, ``valid``), picked the way the first
    active row that takes negatives says (:data:`TABLE` order: the triplet before the pair
    term); empty when no row takes any. labels (batch,); teacher, student: (batch, classes)
    logits of the batch; sampled_student, sampled_teacher: the student's and the teacher's
    logits of the paper's drawn negatives ``x'`` (when the config samples them)."""
    picks = [term.pick for _, term in config.rows() if term.pick is not None]
    if not picks:
        return {}
    return picks[0](config, labels, teacher, student, sampled_student, sampled_teacher,
                    generator)


# ----------------------------------------------------------------- the weighted sum ----


def objective(config: ObjectiveConfig, *, student_logits: Tensor, labels: Tensor,
              teacher_logits: Tensor | None = None, negative_logits: Tensor | None = None,
              negative_teacher_logits: Tensor | None = None,
              positive_logits: Tensor | None = None, valid: Tensor | None = None,
              student_features: Tensor | None = None, teacher_features: Tensor | None = None,
              regressor: torch.nn.Module | None = None,
              warmup: dict[str, Tensor | float] | None = None,
              check_finite: bool = True) -> dict[str, Tensor]:
    """The weighted sum of the active rows of :data:`TABLE`, in table order:
    ``{"total": sum_term weight * warmup[term] * L_term, "<term>": L_term, ...}`` scalars.

    student_logits, teacher_logits: (batch, classes); labels: (batch,) int64. The rows'
    other rows (:func:`pick_negatives`): negative_logits, negative_teacher_logits,
    positive_logits (batch, classes), ``valid`` (batch,) bool. student_features,
    teacher_features: (batch, dim) embeddings when ``config.needs_embeddings``; ``regressor``
    maps the student's to the teacher's (hint). ``warmup``: each warmed-up term's weight factor
    this epoch (:meth:`ObjectiveConfig.warmup_factor`; 0-d tensors in the trainer, so that a
    captured step reads them), 1 for a term it does not name."""
    _check_labels(labels, student_logits, check_finite)
    if config.needs_teacher and teacher_logits is None:
        raise ValueError(f"teacher_logits are required for the terms {config.terms}")
    if config.needs_embeddings and (student_features is None or teacher_features is None):
        raise ValueError(f"student_features and teacher_features are required for the terms "
                         f"{config.terms}")
    student_logits = student_logits.float()
    teacher_logits = None if teacher_logits is None else teacher_logits.float()
    _check_logits(check_finite, student_logits=student_logits, teacher_logits=teacher_logits)
    raw = Inputs(student_logits, labels, teacher_logits, negative_logits,
                 negative_teacher_logits, positive_logits, valid, student_features,
                 teacher_features, regressor, check_finite)
    inputs, parts = None, {}
    for name, term in config.rows():
        if inputs is None and not term.raw:  # after the raw terms, as the sum's order wants
            inputs = raw.standardized() if config.standardize else raw
        parts[name] = term.loss(config, raw if term.raw else inputs)
    factors = warmup or {}
    total = sum(getattr(config, f"{name}_weight") * factors.get(name, 1) * value
                for name, value in parts.items())
    return {"total": total, **parts}


def _check_labels(labels: Tensor, student_logits: Tensor, check_finite: bool) -> None:
    """``ValueError`` unless ``labels`` are (batch,) int64 class indices of the logits."""
    if labels.dim() != 1 or labels.shape[0] != student_logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({student_logits.shape[0]},), got {tuple(labels.shape)}"
        )
    if labels.dtype != torch.int64 or (check_finite and len(labels) and (  # no sync if not
            labels.min() < 0 or labels.max() >= student_logits.shape[-1])):
        raise ValueError(f"labels must be int64 class indices in 0..{student_logits.shape[-1] - 1}"
                         f", got {labels.dtype} values {labels.unique()[:10].tolist()}")
