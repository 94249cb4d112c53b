"""The trainer: :func:`fit` trains a teacher alone or a student with a teacher.

Read it top-down: :func:`train_step` is one optimisation step (batch indices -> images ->
teacher logits, cached or computed -> student logits -> negatives, picked as the objective's
term table says (:func:`tkd.objective.pick_negatives`) -> objective -> backward -> SGD);
:func:`train_epoch` runs the steps of one epoch, replaying a captured CUDA graph of the step
where it can; :func:`run_epoch` adds the scores of the splits (:func:`tkd.evaluation.evaluate`);
:func:`fit` is the loop around them with checkpoints, resume and logging. The run's tensors
live in a small :class:`tkd.state.Run`, built by :func:`tkd.state.setup`. The trainer never
names a loss: what to compute comes from the objective's properties.

The step has static shapes and never synchronises with the host: it reads its batch through a
step counter kept on the device, draws random numbers from device generators and writes its
losses into preallocated device tensors, read once per epoch. That is what lets a CUDA graph
capture and replay it (``TrainConfig.cuda_graph``).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict

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
from tkd.data import Dataset, to_float
from tkd.evaluation import EvalSplit, eval_splits, evaluate, fidelity
from tkd.models import predict
from tkd.objective import ObjectiveConfig, objective, pick_negatives
from tkd.precision import pick_precision
from tkd.state import Run, TrainConfig, pick_device, run_generators, setup

__all__ = ["NonFiniteLossError", "Run", "TrainConfig", "fidelity", "fingerprint", "fit",
           "pick_device", "predict", "run_epoch", "run_generators", "seed_everything", "setup",
           "train_epoch", "train_step"]
"""The public face of training; :class:`TrainConfig`, :func:`setup` and :class:`Run` live in
:mod:`tkd.state`, :func:`fidelity` in :mod:`tkd.evaluation`, :func:`predict` in
:mod:`tkd.models`."""


RESUME_MUST_MATCH = ("batch_size", "lr", "momentum", "weight_decay", "lr_step", "lr_gamma",
                     "augment", "seed")
"""TrainConfig fields that a resumed run must share with its checkpoint (epochs may grow)."""


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the message names epoch, batch and term."""


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


def train_step(run: Run, index: Tensor, negative: Tensor) -> None:
    """One SGD step on the training images ``index`` (B,), whose drawn other-class images
    are ``negative`` (B,) (used by the paper's sampled negatives only). Adds the batch's loss
    terms to row ``run.step`` of ``run.sums`` and its correct count to ``run.correct``."""
    obj, x, y = run.obj, run.images(index), run.train.labels[index]
    live_teacher = run.teacher is not None and run.teacher_train is None
    x_neg = (run.images(negative) if obj.student_sees_negatives
             or (obj.teacher_sees_negatives and live_teacher) else None)
    s_feat = None  # the student's embeddings, when a term compares them
    with run.autocast():
        if not obj.student_sees_negatives:
            (s, s_feat), s_neg = student_outputs(run, x), None
        elif run.joint_forward:  # one forward over x and x' (no BatchNorm to share)
            s, s_neg = run.step_model(torch.cat([x, x_neg])).float().chunk(2)
        else:  # BatchNorm: x and x' as two batches, as the authors' code runs them
            s, s_neg = run.step_model(x).float(), run.step_model(x_neg).float()
        t, t_feat = teacher_logits_of(run, index, x), teacher_features_of(run, index, x)
        t_neg = teacher_logits_of(run, negative, x_neg) if obj.teacher_sees_negatives else None
    others = pick_negatives(obj, y, t, s, s_neg, t_neg, run.batch_generator)
    parts = objective(obj, student_logits=s, labels=y, teacher_logits=t, student_features=s_feat,
                      teacher_features=t_feat, regressor=run.regressor, warmup=run.warmup,
                      check_finite=False, **others)
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


def run_epoch(run: Run, epoch: int, splits: list[EvalSplit]) -> dict:
    """Train one epoch, then score every split; returns the epoch's history row."""
    run.model.train()
    for term, factor in run.warmup.items():
        factor.fill_(run.obj.warmup_factor(term, epoch, run.config.epochs))
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
    splits = eval_splits(run, data, teacher_logits, reference_logits)
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


def fingerprint(model: nn.Module | None) -> str | None:
    """sha256 (16 hex digits) of a model's weights and buffers: which teacher a run used."""
    if model is None:
        return None
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


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
