"""What one training run holds: its settings (:class:`TrainConfig`), its device, and its
tensors on it (:class:`Run`, built by :func:`setup`): model, teacher, optimiser, the training
split, cached teacher outputs, random streams and the step's preallocated buffers.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from tkd.data import Dataset, TensorSplit, augment, to_float
from tkd.losses import hint_regressor
from tkd.miners import NegativeSampler
from tkd.models import predict
from tkd.objective import ObjectiveConfig
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


def run_generators(seed: int) -> dict[str, torch.Generator]:
    """The run's CPU random streams, one per use, so that a seed fixes the data order for
    every method (a paired design): ``order`` shuffles the training split each epoch,
    ``negatives`` draws the paper's other-class images, ``batch`` serves augmentation and
    in-batch random mining on the CPU (on CUDA those use the device's default generator)."""
    return {name: torch.Generator().manual_seed(seed + 7919 * k)
            for k, name in enumerate(("order", "negatives", "batch"))}


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
    warmup: dict[str, Tensor] = field(init=False)  # () per warmed-up term, read by the step
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
        self.warmup = {term: torch.ones((), device=self.device) for term in self.obj.warmups()}

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
        teacher_train_features=(predict(teacher, data.train.images.to(device),
                                        config.eval_batch_size, dtype, memory_format is not None,
                                        features=True)[1]
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


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
