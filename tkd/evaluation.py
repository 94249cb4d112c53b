"""Scoring a run on its validation and test splits every epoch: accuracy, every loss term of
its objective (with the run's own negative strategy) and the fidelity to the teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tkd.data import Dataset, TensorSplit
from tkd.miners import fixed_negatives
from tkd.models import predict
from tkd.objective import objective, pick_negatives
from tkd.state import Run


@dataclass
class EvalSplit:
    """A split scored every epoch: its tensors on the device, the teacher's logits of it and
    one fixed drawn negative per image."""

    name: str
    split: TensorSplit
    teacher_logits: Tensor | None
    negatives: Tensor
    teacher_features: Tensor | None = None  # (N, dim), when a term compares embeddings
    reference: Tensor | None = None  # (N, classes) the teacher's logits, for fidelity only


def eval_splits(run: Run, data: Dataset, logits: tuple[Tensor, ...] | None,
                 reference: tuple[Tensor, ...] | None = None) -> list[EvalSplit]:
    """``val`` (when the dataset has a validation split) and ``test``. ``reference``: the
    teacher's logits (train, test[, validation]) that fidelity is scored against when the
    run itself has no teacher (its own teacher's logits otherwise)."""
    named = [("val", data.validation, 2), ("test", data.test, 1)]
    out = []
    for name, split, position in named:
        if split is None:
            continue
        split = split.to(run.device)
        teacher = None
        if run.teacher is not None:
            teacher = (logits[position].to(run.device).float()
                       if logits is not None and len(logits) > position else
                       predict(run.teacher, split.images, run.config.eval_batch_size, run.dtype,
                               run.memory_format is not None))
        negatives = fixed_negatives(split.labels.cpu(), data.num_classes, run.config.seed)
        features = (predict(run.teacher, split.images, run.config.eval_batch_size,
                            run.dtype, run.memory_format is not None, features=True)[1]
                    if run.teacher is not None and run.obj.needs_embeddings else None)
        fidelity = (teacher if teacher is not None else
                    reference[position].to(run.device).float()
                    if reference is not None and len(reference) > position else None)
        out.append(EvalSplit(name, split, teacher, negatives.to(run.device), features, fidelity))
    return out


def evaluate(run: Run, split: TensorSplit, teacher_logits: Tensor | None,
             negatives: Tensor, teacher_features: Tensor | None = None,
             reference: Tensor | None = None) -> dict:
    """Accuracy and every loss term on ``split`` with the run's own negative strategy: the
    split's fixed drawn negatives (``negatives``, (N,)) for the paper's sampling, the same
    miner over consecutive batches of ``batch_size`` for in-batch strategies and relation
    terms. ``teacher_features`` (N, dim): the teacher's embeddings, for embedding terms.
    ``reference`` (N, classes): the teacher's logits; adds :func:`fidelity` when given."""
    args = (run.config.eval_batch_size, run.dtype, run.memory_format is not None)
    logits, features = (predict(run.model, split.images, *args, features=True)
                        if run.obj.needs_embeddings else (predict(run.model, split.images, *args),
                                                          None))
    metrics = {"acc": (logits.argmax(1) == split.labels).float().mean().item()}
    if reference is not None:
        metrics.update(fidelity(logits, reference))
    if run.teacher is None and run.obj.needs_teacher:
        return metrics
    size = run.config.batch_size if run.obj.in_batch else len(split)  # relations need batches
    generator = torch.Generator().manual_seed(run.config.seed)  # the same draw every epoch
    parts = []
    for start in range(0, len(split), size):
        rows = slice(start, start + size)
        s, y, neg = logits[rows], split.labels[rows], negatives[rows]
        t, t_neg = ((None, None) if teacher_logits is None
                    else (teacher_logits[rows], teacher_logits[neg]))
        others = pick_negatives(run.obj, y, t, s, logits[neg], t_neg, generator)
        embeddings = ((None, None) if features is None
                      else (features[rows], teacher_features[rows]))
        batch = objective(run.obj, student_logits=s, labels=y, teacher_logits=t,
                          student_features=embeddings[0], teacher_features=embeddings[1],
                          regressor=run.regressor, warmup=run.warmup, check_finite=False,
                          **others)
        parts.append(torch.stack([batch[k] for k in run.terms]) * len(y))
    means = torch.stack(parts).sum(0) / len(split)
    metrics.update({k: v.item() for k, v in zip(run.terms, means)})
    return metrics


@torch.no_grad()
def fidelity(student_logits: Tensor, teacher_logits: Tensor) -> dict[str, float]:
    """How closely a student matches its teacher (Stanton et al., NeurIPS 2021):
    ``teacher_agreement`` = mean 1[argmax s = argmax t] (top-1 agreement) and ``teacher_kl`` =
    mean_i KL(softmax(t_i) || softmax(s_i)) in nats. Both (N, classes)."""
    log_t = torch.log_softmax(teacher_logits.float(), dim=1)
    log_s = torch.log_softmax(student_logits.float(), dim=1)
    agreement = (student_logits.argmax(1) == teacher_logits.argmax(1)).float().mean()
    kl = (log_t.exp() * (log_t - log_s)).sum(1).mean()
    return {"teacher_agreement": agreement.item(), "teacher_kl": kl.item()}
