"""The trainer: one function, :func:`fit`, for a teacher alone or a student with a teacher.

One step: batch indices -> images sliced from the on-device split -> teacher logits (cached or
computed) -> student logits (with the negative images in the same forward) -> objective ->
backward -> SGD step. Per-step loss values stay on the device and are read once per epoch.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import nn

from tkd.checkpoint import (
    CheckpointError,
    load_latest_checkpoint,
    rng_state,
    safe_load,
    save_checkpoint,
    set_rng_state,
)
from tkd.data import Dataset, NegativeSampler, augment, batch_indices, fixed_negatives, to_float
from tkd.losses import ObjectiveConfig, objective


@dataclass
class TrainConfig:
    """Optimisation and run settings. Defaults are the paper's (SGD 0.01, momentum 0.9,
    weight decay 0.007, step LR x0.1 every 100 epochs, batch 100, seed 1, no augmentation)."""

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
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False
    progress: bool = True
    checkpoint_dir: str | None = None
    resume: bool = False
    eval_batch_size: int = 1000

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


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); returns the CPU generator the trainer uses
    for shuffling, negatives and augmentation. ``deterministic`` also pins the kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 1000,
            autocast: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Logits (N, classes) float32 of an eval-mode ``model`` on uint8 images (N, C, H, W)."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast(images.device.type, torch.bfloat16, enabled=autocast):
            out.append(model(x).float())
    model.train(was_training)
    return torch.cat(out)


def _evaluate(model, teacher_logits, split, negatives, config, obj, autocast,
              channels_last) -> dict:
    """Test metrics: accuracy and every loss term, with the split's fixed negatives."""
    logits = predict(model, split.images, config.eval_batch_size, autocast, channels_last)
    metrics = {"acc": (logits.argmax(1) == split.labels).float().mean().item()}
    if obj is not None:
        # The split's fixed negatives for every strategy: mining over the whole split at once
        # would need (N, N) matrices and would not measure the same thing epoch to epoch.
        obj = replace(obj, negatives="sample")
        parts = objective(obj, logits, split.labels, teacher_logits, logits[negatives],
                          None if teacher_logits is None else teacher_logits[negatives],
                          check_finite=False)
        metrics.update({k: v.item() for k, v in parts.items()})
    return metrics


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
    if len(teacher_logits) != 2:
        raise ValueError("teacher_logits must be a pair (train, test) of (N, classes) tensors")
    for part, logits, split in zip(("train", "test"), teacher_logits, (data.train, data.test)):
        want = (len(split), data.num_classes)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != want:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"teacher_logits[{part!r}] must have shape {want}, got {got}")
        if not bool(torch.isfinite(logits).all()):
            raise ValueError(f"teacher_logits[{part!r}] holds NaN or infinite values")


def _resume(directory, config: TrainConfig, obj: ObjectiveConfig, model: nn.Module,
            optimizer, scheduler, generator, mining) -> tuple[list[dict], str | None]:
    """Load the newest good checkpoint into the run; returns (history rows, its path)."""
    state = load_latest_checkpoint(directory)
    if state is None:
        return [], None
    saved = state.get("config", {})
    changed = [f"{k}: {saved.get(k)!r} -> {getattr(config, k)!r}" for k in RESUME_MUST_MATCH
               if saved.get(k) != getattr(config, k)]
    changed += [f"objective {k}: {v!r} -> {obj.to_dict().get(k)!r}"
                for k, v in state.get("objective", {}).items() if obj.to_dict().get(k) != v]
    if changed:
        raise ValueError(f"cannot resume from {state['path']}: the run's settings changed ("
                         + "; ".join(changed) + "). Use the original settings or a new folder.")
    try:
        getattr(model, "_orig_mod", model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], generator, mining)
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"cannot resume from {state['path']}: it does not fit this "
                              f"model or run ({' '.join(str(error).split())[:300]})") from None
    return pd.DataFrame(state["history"]).to_dict("records"), state["path"]


def fit(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig | None = None,
    objective_config: ObjectiveConfig | None = None,
    teacher: nn.Module | None = None,
    teacher_logits: tuple[torch.Tensor, torch.Tensor] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Train ``model`` on ``data`` and return the per-epoch history.

    Without ``teacher`` the model is trained with ``objective_config`` (default: cross-entropy
    alone). With a teacher it is frozen (eval, no grad); with augmentation off its logits are
    computed once for both splits. Columns: ``epoch, lr, train_<term>, train_acc, test_<term>,
    test_acc, epoch_seconds, images_per_second``. Ctrl-C returns the history so far (the last
    finished epoch is checkpointed); ``history.attrs["interrupted"]`` tells.
    ``teacher_logits=(train, test)``, each (N, classes), reuses logits computed earlier (e.g.
    by :func:`predict`) so that several students of one teacher pay for them once.
    ``on_epoch(row)`` is called with each finished epoch's history row (e.g. to move a widget).
    """
    config = config or TrainConfig()
    obj = objective_config or ObjectiveConfig()
    if obj.needs_teacher and teacher is None:
        raise ValueError(f"the objective's terms {obj.terms} need a teacher; pass teacher=")
    device = pick_device(config.device)
    _check_fits("model", model.to(device), data, device)
    if teacher is not None:
        _check_fits("teacher", teacher.to(device), data, device)
    if teacher_logits is not None:
        _check_teacher_logits(teacher_logits, data)
    generator = seed_everything(config.seed, config.deterministic)
    # In-batch mining draws on the device: no host-to-device copy (and sync) per step.
    mining = (torch.Generator(device).manual_seed(config.seed) if device.type == "cuda"
              else generator)
    on_cuda = device.type == "cuda"
    autocast = config.bf16 and on_cuda
    # channels_last helps oneDNN's CPU convolutions as much as cuDNN's (about 2x measured on
    # the paper's student on this project's 2-core CPU); MPS is left in its default layout.
    memory_format = (torch.channels_last if config.channels_last and device.type in ("cuda", "cpu")
                     else None)

    train, test = data.train.to(device), data.test.to(device)
    model = model.to(device, memory_format=memory_format)
    step_model = torch.compile(model) if config.compile else model
    teacher_train = teacher_test = None
    if teacher is not None:
        teacher = teacher.to(device, memory_format=memory_format).eval().requires_grad_(False)
        if teacher_logits is not None:
            teacher_train, teacher_test = (t.to(device).float() for t in teacher_logits)
            if config.augment:
                teacher_train = None  # augmented images need fresh teacher logits
        else:
            teacher_test = predict(teacher, test.images, config.eval_batch_size, autocast,
                                   memory_format is not None)
            if not config.augment:
                teacher_train = predict(teacher, train.images, config.eval_batch_size,
                                        autocast, memory_format is not None)
    sampler = NegativeSampler(data.train.labels, data.num_classes)
    test_negatives = fixed_negatives(data.test.labels, data.num_classes, config.seed).to(device)
    sample_negatives = obj.needs_negatives and obj.negatives == "sample"

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, fused=on_cuda or None)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma)
    rows: list[dict] = []  # one per finished *and checkpointed* epoch
    last_checkpoint = None
    if config.resume:
        rows, last_checkpoint = _resume(config.checkpoint_dir, config, obj, model, optimizer,
                                        scheduler, generator, mining)

    def images_at(index: torch.Tensor) -> torch.Tensor:
        x = to_float(train.images[index])
        x = augment(x, generator) if config.augment else x
        return x.contiguous(memory_format=memory_format) if memory_format else x

    history = pd.DataFrame(rows)
    history.attrs["interrupted"] = False
    epochs = range(len(rows) + 1, config.epochs + 1)
    bar = _progress(epochs, config.progress, initial=len(rows), total=config.epochs)
    try:
        for epoch in bar:
            model.train()
            start = time.perf_counter()
            batches = batch_indices(len(train), config.batch_size, True, generator)
            order = torch.cat(batches)
            negatives = sampler.draw(data.train.labels[order], generator).to(device) \
                if sample_negatives else None
            order = order.to(device)  # one transfer per epoch; batches are slices of it
            terms = ["total", *obj.terms]
            sums = torch.zeros(len(batches), len(terms), device=device)
            correct = torch.zeros((), device=device)
            offset = 0
            for step, size in enumerate(len(b) for b in batches):
                index_dev = order[offset:offset + size]
                x, y = images_at(index_dev), train.labels[index_dev]
                if sample_negatives:
                    negative = negatives[offset:offset + size]
                    x = torch.cat([x, images_at(negative)])
                offset += size
                with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
                    out = step_model(x).float()
                    t = t_neg = None
                    if teacher is not None:
                        t = teacher_train[index_dev] if teacher_train is not None else \
                            _teacher_logits(teacher, x)
                        if sample_negatives:
                            t, t_neg = (t.chunk(2) if teacher_train is None
                                        else (t, teacher_train[negative]))
                    s, s_neg = (out.chunk(2) if sample_negatives else (out, None))
                    parts = objective(obj, s, y, t, s_neg, t_neg, mining, check_finite=False)
                optimizer.zero_grad(set_to_none=True)
                parts["total"].backward()
                optimizer.step()
                sums[step] = torch.stack([parts[k].detach() for k in terms])
                correct += (s.detach().argmax(1) == y).sum()
            _check_finite(sums, terms, epoch, model, last_checkpoint)
            if on_cuda:
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            sizes = torch.tensor([len(b) for b in batches], dtype=torch.float32, device=device)
            means = (sums * sizes[:, None]).sum(0) / len(train)
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            row.update({f"train_{k}": v.item() for k, v in zip(terms, means)})
            row["train_acc"] = correct.item() / len(train)
            evaluation = _evaluate(model, teacher_test, test, test_negatives, config, obj,
                                   autocast, memory_format is not None)
            row.update({f"test_{k}": v for k, v in evaluation.items()})
            row["epoch_seconds"] = seconds
            row["images_per_second"] = len(train) / seconds
            scheduler.step()
            history = pd.DataFrame([*rows, row])
            if config.checkpoint_dir:
                last_checkpoint = str(save_checkpoint(config.checkpoint_dir, epoch, {
                    "model": getattr(model, "_orig_mod", model).state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_state(generator, mining), "history": history.to_dict("list"),
                    "config": asdict(config), "objective": obj.to_dict()}))
            rows.append(row)
            if on_epoch is not None:
                on_epoch(row)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{row['train_total']:.3f}", test_acc=f"{row['test_acc']:.3f}")
    except KeyboardInterrupt:
        history = pd.DataFrame(rows)
        history.attrs["interrupted"] = True
        if last_checkpoint:  # the model goes back to the last finished epoch, as in history
            saved = safe_load(last_checkpoint)["model"]
            getattr(model, "_orig_mod", model).load_state_dict(saved)
        print(f"interrupted: returning {len(rows)} finished epochs"
              + (f"; resume from {config.checkpoint_dir}" if config.checkpoint_dir else ""))
    finally:
        if hasattr(bar, "close"):
            bar.close()
    model.eval()
    history.attrs.setdefault("interrupted", False)
    return history


def _teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return teacher(x).float()


def _check_finite(sums: torch.Tensor, terms: list[str], epoch: int, model: nn.Module,
                  last_checkpoint: str | None) -> None:
    """Raise :class:`NonFiniteLossError` naming the first bad batch and loss term of the epoch
    (a component such as ``triplet`` rather than ``total`` when one is to blame), or the first
    weight that is no longer finite. ``sums``: (batches, terms)."""
    kept = (f"the last good checkpoint, {last_checkpoint}, is kept" if last_checkpoint
            else "no checkpoint was written for it")
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
    tensors = [(n, t) for n, t in [*model.named_parameters(), *model.named_buffers()]
               if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for _, t in tensors]) if tensors else None
    if finite is not None and not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0])][0]
        raise NonFiniteLossError(
            f"the weights ({name}) became NaN or infinite at epoch {epoch}, after its last "
            f"batch; the run stopped and {kept}. Lower the learning rate."
        )


def _progress(epochs, enabled: bool, initial: int, total: int):
    if not enabled:
        return epochs
    from tqdm.auto import tqdm

    return tqdm(epochs, desc="epochs", initial=initial, total=total, leave=False)

