"""The trainer: :func:`fit` trains a teacher alone or a student with a teacher.

Read it top-down: :func:`train_step` is one optimisation step (batch indices -> images ->
teacher logits, cached or computed -> student logits -> negatives -> objective -> backward ->
SGD); :func:`train_epoch` runs the steps of one epoch, replaying a captured CUDA graph of the
step where it can; :func:`evaluate` scores a split; :func:`fit` is the loop around them with
checkpoints, resume and logging. The run's tensors live in a small :class:`Run`.

The step has static shapes and never synchronises with the host: it reads its batch through a
step counter kept on the device, draws random numbers from device generators and writes its
losses into preallocated device tensors, read once per epoch. That is what lets a CUDA graph
capture and replay it (``TrainConfig.cuda_graph``).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from tkd.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    rng_state,
    safe_load,
    save_checkpoint,
    set_rng_state,
)
from tkd.data import Dataset, NegativeSampler, TensorSplit, augment, fixed_negatives, to_float
from tkd.losses import ObjectiveConfig, hint_regressor, objective, standardize_logits
from tkd.miners import batch_positives, mine_negatives
from tkd.precision import autocast_dtype, make_scaler, pick_precision, set_tf32


@dataclass
class TrainConfig:
    """Optimisation and run settings. Defaults are the paper's (SGD 0.01, momentum 0.9,
    weight decay 0.007, step LR x0.1 every 100 epochs, batch 100, seed 1, no augmentation).

    ``precision``: "auto" (bf16 autocast on GPUs that have it, fp16 with a gradient scaler on
    older GPUs, fp32 on CPU and MPS), or "bf16", "fp16", "fp32". ``cuda_graph``: on CUDA,
    capture the training step once and replay it (eager elsewhere, and with fp16).
    The environment variable ``TKD_CUDA_GRAPH=0`` turns capture off by default (e.g. for
    worker processes). ``tensorboard``: a folder for TensorBoard event files (every loss and
    accuracy per epoch).
    """

    epochs: int = 10
    batch_size: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.007
    lr_step: int = 100
    lr_gamma: float = 0.1
    augment: bool = False
    seed: int = 1
    deterministic: bool = False
    device: str | None = None
    precision: str = "auto"
    channels_last: bool = True
    cuda_graph: bool = field(default_factory=lambda: os.environ.get("TKD_CUDA_GRAPH") != "0")
    compile: bool = False
    progress: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    eval_batch_size: int = 1000
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_step", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "lr_gamma"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        for name in ("momentum", "weight_decay"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {self.precision!r}")
        if self.resume and not self.checkpoint_dir:
            raise ValueError("resume=True needs checkpoint_dir, the folder the run saved into")


RESUME_MUST_MATCH = ("batch_size", "lr", "momentum", "weight_decay", "lr_step", "lr_gamma",
                     "augment", "seed")
"""TrainConfig fields that a resumed run must share with its checkpoint (epochs may grow)."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names epoch, batch and term."""


def pick_device(device: str | None = None) -> torch.device:
    """The given device, else CUDA, then Apple MPS, then CPU. ``ValueError`` for a device name
    that torch does not know or a device this machine does not have."""
    if device:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device={device!r} is not a device name: {error}") from None
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": bool(getattr(torch.backends, "mps", None)
                                 and torch.backends.mps.is_available())}
        if not available.get(chosen.type, True):
            raise ValueError(f"device={device!r} is not available on this machine")
        if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices). ``deterministic`` also pins the kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """The run's CPU random streams, one per use, so that a seed fixes the data order for
    every method (a paired design): ``order`` shuffles the training split each epoch,
    ``negatives`` draws the paper's other-class images, ``batch`` serves augmentation and
    in-batch random mining on the CPU (on CUDA those use the device's default generator)."""
    return {name: torch.Generator().manual_seed(seed + 7919 * k)
            for k, name in enumerate(("order", "negatives", "batch"))}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000,
            dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """Logits (N, classes) float32 of an eval-mode ``model`` on uint8 images (N, C, H, W);
    ``dtype`` (e.g. ``torch.bfloat16``) runs the forward under autocast."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(images.device.type, dtype or torch.float32, enabled=dtype is not None):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def predict_features(model: nn.Module, images: torch.Tensor, batch_size: int = 1000,
                     dtype: torch.dtype | None = None,
                     channels_last: bool = False) -> tuple[Tensor, Tensor]:
    """``(logits, embeddings)`` float32 of an eval-mode :class:`tkd.models.Classifier` on
    uint8 images (N, C, H, W): (N, classes) and (N, dim) from ``forward_features``."""
    was_training = model.training
    model.eval()
    logits, features = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(images.device.type, dtype or torch.float32, enabled=dtype is not None):
            f = model.forward_features(x)
            logits.append(model.head(f).float())
        features.append(f.float())
    model.train(was_training)
    return torch.cat(logits), torch.cat(features)


@dataclass
class Run:
    """What one training run holds on its device: model, teacher, optimiser, data, cached
    teacher logits, random streams and the step's preallocated buffers."""

    model: nn.Module
    step_model: nn.Module
    teacher: nn.Module | None
    obj: ObjectiveConfig
    config: TrainConfig
    device: torch.device
    train: TensorSplit
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    dtype: torch.dtype | None
    memory_format: torch.memory_format | None
    teacher_train: Tensor | None
    generators: dict[str, torch.Generator]
    batch_generator: torch.Generator | None  # None: the device's default (graph-safe)
    sampler: NegativeSampler
    terms: list[str]
    joint_forward: bool
    order: Tensor = field(init=False)  # (steps, batch) indices of this epoch's full batches
    negatives: Tensor = field(init=False)  # (steps, batch) their drawn negatives
    sums: Tensor = field(init=False)  # (steps + 1, terms) per-batch losses
    correct: Tensor = field(init=False)  # () correctly classified training images
    step: Tensor = field(init=False)  # (1,) the step counter the captured graph reads
    warmup: Tensor = field(init=False)  # () DKD's warm-up factor this epoch, read by the step
    graph: object = None
    graph_lr: float | None = None
    eager_steps: int = 0
    regressor: nn.Module | None = None  # the hint term's student -> teacher map
    teacher_train_features: Tensor | None = None  # (N, dim) cached teacher embeddings

    def __post_init__(self) -> None:
        steps = len(self.train) // self.config.batch_size
        shape = (steps, self.config.batch_size)
        self.order = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.negatives = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.sums = torch.zeros(steps + 1, len(self.terms), device=self.device)
        self.correct = torch.zeros((), device=self.device)
        self.step = torch.zeros(1, dtype=torch.long, device=self.device)
        self.warmup = torch.ones((), device=self.device)

    @property
    def batches(self) -> int:
        """Batches per epoch, the last one possibly smaller."""
        return -(-len(self.train) // self.config.batch_size)

    def images(self, index: Tensor) -> Tensor:
        """Float images (B, C, H, W) of training indices ``index``, augmented if configured."""
        x = to_float(self.train.images[index])
        x = augment(x, self.batch_generator) if self.config.augment else x
        return x.contiguous(memory_format=self.memory_format) if self.memory_format else x

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, self.dtype, cache_enabled=False)


def train_step(run: Run, index: Tensor, negative: Tensor) -> None:
    """One SGD step on the training images ``index`` (B,), whose drawn other-class images
    are ``negative`` (B,) (used by the paper's sampled negatives only). Adds the batch's loss
    terms to row ``run.step`` of ``run.sums`` and its correct count to ``run.correct``."""
    obj, x, y = run.obj, run.images(index), run.train.labels[index]
    pair_sampled = obj.negatives == "sample" and "pair" in obj.terms  # needs teacher(x')
    live_teacher = run.teacher is not None and run.teacher_train is None
    x_neg = (run.images(negative) if obj.student_sees_negatives
             or (pair_sampled and live_teacher) else None)
    s_feat = None  # the student's embeddings, when a term compares them
    with run.autocast():
        if not obj.student_sees_negatives:
            (s, s_feat), s_neg = student_outputs(run, x), None
        elif run.joint_forward:  # one forward over x and x' (no BatchNorm to share)
            s, s_neg = run.step_model(torch.cat([x, x_neg])).float().chunk(2)
        else:  # BatchNorm: x and x' as two batches, as the authors' code runs them
            s, s_neg = run.step_model(x).float(), run.step_model(x_neg).float()
        t, t_feat = teacher_logits_of(run, index, x), teacher_features_of(run, index, x)
        t_neg = teacher_logits_of(run, negative, x_neg) if pair_sampled else None
    others = negatives_for(obj, y, t, s, s_neg, t_neg, run.batch_generator)
    parts = objective(obj, s, y, t, check_finite=False, student_features=s_feat,
                      teacher_features=t_feat, regressor=run.regressor, warmup=run.warmup,
                      **others)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is None:
        parts["total"].backward()
        run.optimizer.step()
    else:
        run.scaler.scale(parts["total"]).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    values = torch.stack([parts[k].detach().float() for k in run.terms])
    run.sums.index_copy_(0, run.step, values[None])
    run.correct += (s.detach().argmax(1) == y).sum()
    run.step += 1


def student_outputs(run: Run, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The student's logits (B, classes) float32 and, when the objective compares
    embeddings, its embeddings (B, dim) (else None)."""
    if not run.obj.needs_embeddings:
        return run.step_model(x).float(), None
    features = run.model.forward_features(x)
    return run.model.head(features).float(), features.float()


def teacher_features_of(run: Run, index: Tensor, x: Tensor) -> Tensor | None:
    """The teacher's embeddings (B, dim) of training images ``index`` when the objective
    compares embeddings: cached, or computed on the (augmented) batch ``x``."""
    if run.teacher is None or not run.obj.needs_embeddings:
        return None
    if run.teacher_train_features is not None:
        return run.teacher_train_features[index]
    with torch.no_grad():
        return run.teacher.forward_features(x).float()


def teacher_logits_of(run: Run, index: Tensor, x: Tensor | None) -> Tensor | None:
    """The teacher's logits (B, classes) of training images ``index``: cached when the
    images are not augmented, else computed on the augmented batch ``x``."""
    if run.teacher is None:
        return None
    if run.teacher_train is not None:
        return run.teacher_train[index]
    with torch.no_grad():
        return run.teacher(x).float()


def select_negatives(obj: ObjectiveConfig, labels: Tensor, teacher: Tensor | None,
                     student: Tensor, student_neg: Tensor | None, teacher_neg: Tensor | None,
                     generator: torch.Generator | None):
    """``(negative student logits, negative teacher logits, valid)`` for the objective.

    With the paper's sampled negatives they were computed by the caller; with an in-batch
    strategy a miner picks, per row, another row of the batch, ranked by the distance the loss
    pushes: ``||t_i - s_j||`` for the triplet, ``||s_i - t_j||`` for the pair loss (between
    standardized logits when the objective standardizes them)."""
    if not obj.needs_negatives or obj.negatives == "sample":
        return student_neg, teacher_neg, None
    t, s = ((standardize_logits(teacher), standardize_logits(student)) if obj.standardize
            else (teacher, student))
    if obj.anchor == "student":
        raise ValueError("the teacher-free triplet picks positives too: use select_triplet")
    if "triplet" in obj.terms:
        index, valid = mine_negatives(obj.negatives, labels, t, s, s, generator)
    else:
        index, valid = mine_negatives(obj.negatives, labels, s, t, t, generator)
    return student[index], teacher[index], valid


def select_triplet(obj: ObjectiveConfig, labels: Tensor, student: Tensor,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(positive logits, negative logits, valid)`` of the teacher-free triplet
    (``obj.anchor == "student"``): per row a random other same-class row of the batch
    (:func:`tkd.miners.batch_positives`), then the negative by ``obj.negatives`` with the
    student's own logits ``student`` (batch, classes) as the anchor."""
    s = standardize_logits(student) if obj.standardize else student
    positive, has_positive = batch_positives(labels, generator)
    negative, has_negative = mine_negatives(obj.negatives, labels, s, s[positive], s, generator)
    return student[positive], student[negative], has_positive & has_negative


def negatives_for(obj: ObjectiveConfig, labels: Tensor, teacher: Tensor | None,
                  student: Tensor, student_neg: Tensor | None, teacher_neg: Tensor | None,
                  generator: torch.Generator | None) -> dict:
    """The objective's keyword arguments that name other rows: ``negative_logits``,
    ``negative_teacher_logits``, ``positive_logits`` and ``valid``
    (:func:`select_triplet` for the teacher-free triplet, else :func:`select_negatives`)."""
    if obj.anchor == "student" and "triplet" in obj.terms:
        positive, negative, valid = select_triplet(obj, labels, student, generator)
        return {"negative_logits": negative, "negative_teacher_logits": None,
                "positive_logits": positive, "valid": valid}
    negative, teacher_negative, valid = select_negatives(obj, labels, teacher, student,
                                                         student_neg, teacher_neg, generator)
    return {"negative_logits": negative, "negative_teacher_logits": teacher_negative,
            "positive_logits": None, "valid": valid}


def train_epoch(run: Run, epoch_order: Tensor, epoch_negatives: Tensor) -> None:
    """All steps of one epoch: the full batches through the captured graph (or eagerly), a
    last smaller batch eagerly. ``epoch_order``, ``epoch_negatives``: (N,) device indices."""
    batch = run.config.batch_size
    steps = len(run.order)
    run.order.copy_(epoch_order[:steps * batch].view(steps, batch))
    run.negatives.copy_(epoch_negatives[:steps * batch].view(steps, batch))
    run.sums.zero_()
    run.correct.zero_()
    run.step.zero_()
    graph = _use_graph(run)
    for i in range(steps):
        if graph and run.eager_steps >= _WARMUP_STEPS:
            _replay(run)
        elif graph:  # warm-up before the first capture, on a side stream as CUDA graphs want
            side = torch.cuda.Stream(run.device)
            side.wait_stream(torch.cuda.current_stream(run.device))
            with torch.cuda.stream(side):
                train_step(run, run.order[i], run.negatives[i])
            torch.cuda.current_stream(run.device).wait_stream(side)
            run.eager_steps += 1
        else:
            train_step(run, run.order[i], run.negatives[i])
    if steps * batch < len(epoch_order):
        train_step(run, epoch_order[steps * batch:], epoch_negatives[steps * batch:])


_WARMUP_STEPS = 3  # eager steps before the first capture (lazy state: momentum, cuDNN plans)


def _use_graph(run: Run) -> bool:
    return (run.device.type == "cuda" and run.config.cuda_graph and run.scaler is None
            and not run.config.compile)


def _replay(run: Run) -> None:
    """Replay the captured step, capturing it first (again after a learning-rate change,
    since the fused optimiser bakes the rate into the graph). The graph reads its batch from
    row ``run.step`` of the epoch's buffers."""
    lr = run.optimizer.param_groups[0]["lr"]
    if run.graph is None or run.graph_lr != lr:
        torch.cuda.synchronize(run.device)
        previous, run.graph = run.graph, torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(run.graph, pool=None if previous is None else previous.pool()):
                train_step(run, run.order.index_select(0, run.step)[0],
                           run.negatives.index_select(0, run.step)[0])
        except RuntimeError as error:  # eager is always correct: fall back to it, loudly
            warnings.warn(f"CUDA graph capture failed, training eagerly: {error}", stacklevel=2)
            run.config.cuda_graph = False
            torch.cuda.synchronize(run.device)
            train_step(run, run.order.index_select(0, run.step)[0],
                       run.negatives.index_select(0, run.step)[0])
            return
        run.graph_lr = lr  # capture records the step without running it: replay runs it
    run.graph.replay()


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


def evaluate(run: Run, split: TensorSplit, teacher_logits: Tensor | None,
             negatives: Tensor, teacher_features: Tensor | None = None,
             reference: Tensor | None = None) -> dict:
    """Accuracy and every loss term on ``split`` with the run's own negative strategy: the
    split's fixed drawn negatives (``negatives``, (N,)) for the paper's sampling, the same
    miner over consecutive batches of ``batch_size`` for in-batch strategies and relation
    terms. ``teacher_features`` (N, dim): the teacher's embeddings, for embedding terms.
    ``reference`` (N, classes): the teacher's logits; adds :func:`fidelity` when given."""
    args = (run.config.eval_batch_size, run.dtype, run.memory_format is not None)
    logits, features = (predict_features(run.model, split.images, *args)
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
        others = negatives_for(run.obj, y, t, s, logits[neg], t_neg, generator)
        embeddings = ((None, None) if features is None
                      else (features[rows], teacher_features[rows]))
        batch = objective(run.obj, s, y, t, check_finite=False, student_features=embeddings[0],
                          teacher_features=embeddings[1], regressor=run.regressor,
                          warmup=run.warmup, **others)
        parts.append(torch.stack([batch[k] for k in run.terms]) * len(y))
    means = torch.stack(parts).sum(0) / len(split)
    metrics.update({k: v.item() for k, v in zip(run.terms, means)})
    return metrics


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fingerprint(model: nn.Module | None) -> str | None:
    """sha256 (16 hex digits) of a model's weights and buffers: which teacher a run used."""
    if model is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


def setup(model: nn.Module, data: Dataset, config: TrainConfig, obj: ObjectiveConfig,
          teacher: nn.Module | None, logits: tuple[Tensor, ...] | None) -> Run:
    """Move model, teacher and data to the device, cache the teacher's training logits
    (unless augmentation needs fresh ones) and build optimiser, scheduler and buffers."""
    device = pick_device(config.device)
    precision = pick_precision(device, config.precision)
    set_tf32(precision, device)
    # channels_last helps oneDNN's CPU convolutions as much as cuDNN's (about 2x measured on
    # the paper's student on a 2-core CPU); MPS is left in its default layout.
    memory_format = (torch.channels_last if config.channels_last and device.type in ("cuda", "cpu")
                     else None)
    model = model.to(device, memory_format=memory_format)
    dtype = autocast_dtype(precision)
    teacher_train = None
    if teacher is not None:
        teacher = teacher.to(device, memory_format=memory_format).eval().requires_grad_(False)
        if not config.augment:
            teacher_train = (logits[0].to(device).float() if logits is not None else
                             predict(teacher, data.train.images.to(device),
                                     config.eval_batch_size, dtype, memory_format is not None))
    regressor = _regressor(model, teacher, data, device) if "hint" in obj.terms else None
    optimizer = torch.optim.SGD([*model.parameters(),
                                 *(regressor.parameters() if regressor else [])],
                                lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay,
                                fused=device.type == "cuda" or None)
    generators = run_generators(config.seed)
    return Run(
        model=model, step_model=torch.compile(model) if config.compile else model,
        teacher=teacher, obj=obj, config=config, device=device, train=data.train.to(device),
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma),
        scaler=make_scaler(precision, device), dtype=dtype, memory_format=memory_format,
        teacher_train=teacher_train, generators=generators,
        batch_generator=None if device.type == "cuda" else generators["batch"],
        sampler=NegativeSampler(data.train.labels, data.num_classes),
        terms=["total", *obj.terms], joint_forward=not _has_batchnorm(model),
        regressor=regressor,
        teacher_train_features=(predict_features(teacher, data.train.images.to(device),
                                                 config.eval_batch_size, dtype,
                                                 memory_format is not None)[1]
                                if obj.needs_embeddings and teacher_train is not None else None))


def _regressor(model: nn.Module, teacher: nn.Module, data: Dataset,
               device: torch.device) -> nn.Module:
    """The hint term's regressor from the student's embedding width to the teacher's, built
    after the student's initial weights (so that they do not depend on the method)."""
    x = to_float(data.train.images[:2].to(device))
    with torch.no_grad():
        widths = [net.eval().forward_features(x).shape[1] for net in (model, teacher)]
    model.train()
    return hint_regressor(*widths).to(device)


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


def _eval_splits(run: Run, data: Dataset, logits: tuple[Tensor, ...] | None,
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
        features = (predict_features(run.teacher, split.images, run.config.eval_batch_size,
                                     run.dtype, run.memory_format is not None)[1]
                    if run.teacher is not None and run.obj.needs_embeddings else None)
        fidelity = (teacher if teacher is not None else
                    reference[position].to(run.device).float()
                    if reference is not None and len(reference) > position else None)
        out.append(EvalSplit(name, split, teacher, negatives.to(run.device), features, fidelity))
    return out


def run_epoch(run: Run, epoch: int, splits: list[EvalSplit]) -> dict:
    """Train one epoch, then score every split; returns the epoch's history row."""
    run.model.train()
    run.warmup.fill_(run.obj.warmup_factor(epoch, run.config.epochs))
    start = time.perf_counter()
    order = torch.randperm(len(run.train), generator=run.generators["order"])
    negatives = run.sampler.draw(run.train.labels.cpu()[order], run.generators["negatives"])
    train_epoch(run, order.to(run.device), negatives.to(run.device))
    _check_finite(run, epoch)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - start
    steps = run.batches
    sizes = torch.full((steps,), float(run.config.batch_size), device=run.device)
    sizes[-1] = len(run.train) - (steps - 1) * run.config.batch_size
    means = (run.sums[:steps] * sizes[:, None]).sum(0) / len(run.train)
    row = {"epoch": epoch, "lr": run.optimizer.param_groups[0]["lr"]}
    row.update({f"train_{k}": v.item() for k, v in zip(run.terms, means)})
    row["train_acc"] = run.correct.item() / len(run.train)
    for part in splits:
        scores = evaluate(run, part.split, part.teacher_logits, part.negatives,
                          part.teacher_features, part.reference)
        row.update({f"{part.name}_{k}": v for k, v in scores.items()})
    row["epoch_seconds"] = seconds
    row["images_per_second"] = len(run.train) / seconds
    run.scheduler.step()
    return row


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    objective_config: ObjectiveConfig | None = None,
    teacher: nn.Module | None = None,
    teacher_logits: tuple[Tensor, ...] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    reference_logits: tuple[Tensor, ...] | None = None,
) -> pd.DataFrame:
    """Train ``model`` on ``data`` and return the per-epoch history.

    Without ``teacher`` the model is trained with ``objective_config`` (default: cross-entropy
    alone). With a teacher it is frozen (eval, no grad); with augmentation off its logits are
    computed once. Columns: ``epoch, lr, train_<term>, train_acc, val_<term>, val_acc`` (when
    the dataset has a validation split), ``test_<term>, test_acc, epoch_seconds,
    images_per_second``. ``teacher_logits=(train, test[, validation])``, each (N, classes),
    reuses logits computed earlier. ``on_epoch(row)`` is called after each finished (and
    checkpointed) epoch. Ctrl-C returns the history so far; ``history.attrs["interrupted"]``.
    Fidelity to the teacher (:func:`fidelity`: columns ``val_/test_teacher_agreement``,
    ``val_/test_teacher_kl``) is scored against the teacher's logits, or against
    ``reference_logits`` (train, test[, validation]) for a run without a teacher; it only
    reads the model and changes nothing of the training.
    """
    config = config or TrainConfig()
    obj = objective_config or ObjectiveConfig()
    _check_inputs(model, data, config, obj, teacher, teacher_logits)
    seed_everything(config.seed, config.deterministic)
    run = setup(model, data, config, obj, teacher, teacher_logits)
    splits = _eval_splits(run, data, teacher_logits, reference_logits)
    provenance = {"teacher": fingerprint(teacher), "data": data.identity()}
    rows, last = (_resume(run, provenance) if config.resume else ([], None))
    callbacks = [c for c in (on_epoch, _tensorboard(config)) if c is not None]
    bar = _progress(config, initial=len(rows))
    interrupted = False
    try:
        for epoch in range(len(rows) + 1, config.epochs + 1):
            row = run_epoch(run, epoch, splits)
            if config.checkpoint_dir:
                last = _checkpoint(run, epoch, [*rows, row], provenance)
            rows.append(row)
            for callback in callbacks:
                callback(row)
            _advance(bar, row)
    except KeyboardInterrupt:
        interrupted = True
        if last:  # the model goes back to the last finished epoch, as in the history
            run.model.load_state_dict(safe_load(last)["model"])
        print(f"interrupted: returning {len(rows)} finished epochs"
              + (f"; resume from {config.checkpoint_dir}" if config.checkpoint_dir else ""))
    finally:
        for closer in (bar, *callbacks):
            getattr(closer, "close", lambda: None)()
    model.eval()
    history = pd.DataFrame(rows)
    history.attrs["interrupted"] = interrupted
    return history


def _check_inputs(model, data: Dataset, config: TrainConfig, obj: ObjectiveConfig,
                  teacher, teacher_logits) -> None:
    """``ValueError`` for a model or teacher that does not fit the data, a missing teacher,
    or cached teacher logits of the wrong shape."""
    if obj.needs_teacher and teacher is None:
        raise ValueError(f"the objective's terms {obj.terms} need a teacher; pass teacher=")
    for name, net in (("model", model), ("teacher", teacher)):
        if obj.needs_embeddings and net is not None and not hasattr(net, "forward_features"):
            raise ValueError(f"the terms {obj.terms} compare embeddings: {name} needs a "
                             "forward_features method (a tkd.models.Classifier has one)")
    device = pick_device(config.device)
    pick_precision(device, config.precision)
    _check_fits("model", model.to(device), data, device)
    if teacher is not None:
        _check_fits("teacher", teacher.to(device), data, device)
    if teacher_logits is not None:
        _check_teacher_logits(teacher_logits, data)


def _check_fits(name: str, net: nn.Module, data: Dataset, device: torch.device) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``net`` maps the dataset's images to
    (batch, num_classes) logits. Runs one eval-mode forward of two images (no RNG used)."""
    x = to_float(data.train.images[:2].to(device))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x)
    except RuntimeError as error:
        raise ValueError(
            f"{name} does not fit dataset {data.name!r} (images {tuple(x.shape[1:])}): "
            f"{str(error).splitlines()[0]}") from None
    finally:
        net.train(was_training)
    if out.dim() != 2 or out.shape[1] != data.num_classes:
        raise ValueError(f"{name} outputs {tuple(out.shape[1:])} per image but dataset "
                         f"{data.name!r} has {data.num_classes} classes")


def _check_teacher_logits(teacher_logits, data: Dataset) -> None:
    splits = [("train", data.train), ("test", data.test), ("validation", data.validation)]
    if len(teacher_logits) != (2 if data.validation is None else 3):
        raise ValueError("teacher_logits must be (train, test) or, with a validation split, "
                         "(train, test, validation) tensors of shape (N, classes)")
    for (part, split), logits in zip(splits, teacher_logits):
        want = (len(split), data.num_classes)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != want:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"teacher_logits[{part!r}] must have shape {want}, got {got}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError(f"teacher_logits[{part!r}] holds NaN or infinite values")


def _checkpoint(run: Run, epoch: int, rows: list[dict], provenance: dict) -> str:
    """Write the run's full state after ``epoch`` atomically; returns the file's path."""
    return str(save_checkpoint(run.config.checkpoint_dir, epoch, {
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "rng": rng_state(run.generators),
        "history": pd.DataFrame(rows).to_dict("list"), "config": asdict(run.config),
        "objective": run.obj.to_dict(), "provenance": provenance,
        **({"regressor": run.regressor.state_dict()} if run.regressor else {})}))


def _resume(run: Run, provenance: dict) -> tuple[list[dict], str | None]:
    """Load the newest good checkpoint into the run; returns (history rows, its path).
    Refuses one made with other settings, another teacher or other data."""
    state = load_latest_checkpoint(run.config.checkpoint_dir)
    if state is None:
        return [], None
    saved, config, obj = state.get("config", {}), run.config, run.obj.to_dict()
    changed = [f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in RESUME_MUST_MATCH
               if saved.get(k) != getattr(config, k)]
    changed += [f"objective {k}: {v!r} -> {obj.get(k)!r}"
                for k, v in state.get("objective", {}).items() if obj.get(k) != v]
    old = state.get("provenance", {})
    changed += [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in provenance.items() if old.get(k) != v]
    if changed:
        raise ValueError(f"cannot resume from {state['path']}: the run's settings, teacher or "
                         "data changed (" + "; ".join(changed) + "). Use the original ones or "
                         "a new folder.")
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], run.generators)
        if run.regressor is not None:
            run.regressor.load_state_dict(state["regressor"])
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot resume from {state['path']}: it does not fit this "
                              f"model or run ({' '.join(str(error).split())[:300]})") from None
    return pd.DataFrame(state["history"]).to_dict("records"), state["path"]


def _check_finite(run: Run, epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` naming the first bad batch and loss term of the epoch
    (a component such as ``triplet`` rather than ``total`` when one is to blame), or the first
    weight that is no longer finite."""
    kept = "the last good checkpoint is kept" if run.config.checkpoint_dir else \
        "no checkpoint was written for it"
    sums, terms = run.sums[:run.batches], run.terms
    bad = ~torch.isfinite(sums)
    if bool(bad.any()):
        step = int(bad.any(1).nonzero()[0])
        columns = bad[step].nonzero().flatten().tolist()
        column = next((c for c in columns if terms[c] != "total"), columns[0])
        raise NonFiniteLossError(
            f"the {terms[column]} loss became {sums[step, column].item()} at epoch {epoch}, "
            f"batch {step + 1} of {len(sums)}; the run stopped and {kept}. Lower the learning "
            "rate or check the inputs."
        )
    tensors = [(n, t) for n, t in [*run.model.named_parameters(), *run.model.named_buffers()]
               if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors]) if tensors else None
    if finite is not None and not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0])][0]
        raise NonFiniteLossError(
            f"the weights ({name}) became NaN or infinite at epoch {epoch}, after its last "
            f"batch; the run stopped and {kept}. Lower the learning rate."
        )


def _tensorboard(config: TrainConfig):
    if not config.tensorboard:
        return None
    from tkd.live import EpochLog

    return EpochLog(None, tensorboard=config.tensorboard)


def _progress(config: TrainConfig, initial: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc="epochs", initial=initial, total=config.epochs, leave=False)


def _advance(bar, row: dict) -> None:
    if bar is not None:
        bar.update(1)
        accuracy = row.get("val_acc", row["test_acc"])
        bar.set_postfix(loss=f"{row['train_total']:.3f}", acc=f"{accuracy:.3f}")
