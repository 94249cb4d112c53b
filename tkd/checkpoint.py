"""Training checkpoints that survive a kill, and saved models.

Every file is written atomically (:mod:`tkd.files`), so a kill leaves either the old file or
the new one, never half of one. Each checkpoint gets a ``.sha256`` sidecar so that a corrupted
file is detected, not half-loaded.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from tkd.files import atomic_write_bytes, atomic_write_text

CHECKPOINT_FORMAT = "tkd-checkpoint-1"
MODEL_FORMAT = "tkd-model-1"
KEEP_CHECKPOINTS = 2


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted: truncated, corrupted or not ours."""


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def safe_load(path: str | Path, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with clear errors; never runs pickled code.

    A file that needs arbitrary pickle (e.g. a whole pickled model) is refused with
    :class:`CheckpointError`; so is a truncated or corrupted file, or one whose ``.sha256``
    sidecar does not match its bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists() and sidecar.read_text().strip() != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"{path} is corrupted: its bytes do not match {sidecar.name}")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe is None:  # not a forbidden object: the bytes themselves are broken
            raise CheckpointError(f"{path} is truncated or corrupted: {_first_line(error)}") \
                from error
        raise CheckpointError(
            f"{path} needs arbitrary pickle to load ({unsafe.group(1)}) and was refused: "
            "tkd loads with weights_only=True and never runs code from a file. Save plain "
            "state dicts (tkd.checkpoint.save_model) instead of whole objects."
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as error:
        raise CheckpointError(f"{path} is truncated or corrupted: {_first_line(error)}") \
            from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def save_checkpoint(directory: str | Path, epoch: int, state: dict) -> Path:
    """Write ``epoch-NNNN.pt`` (+ sidecar) atomically and keep the newest two; returns its path."""
    directory = Path(directory)
    data = _torch_bytes({"format": CHECKPOINT_FORMAT, "epoch": epoch, **state})
    path = directory / f"epoch-{epoch:04d}.pt"
    sidecar = path.with_name(path.name + ".sha256")
    sidecar.unlink(missing_ok=True)  # a stale sidecar must never vouch for the new bytes
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar, hashlib.sha256(data).hexdigest())
    for old in list_checkpoints(directory)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
        old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    for stray in directory.glob(".epoch-*.tmp"):  # left by a run killed while writing
        stray.unlink(missing_ok=True)
    return path


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first."""
    directory = Path(directory)
    return sorted(directory.glob("epoch-*.pt")) if directory.is_dir() else []


def load_latest_checkpoint(directory: str | Path) -> dict | None:
    """Newest checkpoint in ``directory`` that loads; warns about and skips bad ones.

    A checkpoint without its ``.sha256`` sidecar cannot be verified and is skipped too (the
    first one of a run, killed before its sidecar was written, counts as no checkpoint).
    Returns ``None`` when the folder holds no checkpoint; raises :class:`CheckpointError` when
    checkpoints exist but none of them loads (the run must not silently start over).
    """
    paths = list_checkpoints(directory)
    problems = []
    for path in reversed(paths):
        try:
            state = safe_load(path)
        except CheckpointError as error:
            problems.append(str(error))
            warnings.warn(f"skipping bad checkpoint: {error}", stacklevel=2)
            continue
        if not path.with_name(path.name + ".sha256").is_file():
            # written last: a kill inside the write leaves the newest one without it; anywhere
            # else it was removed, and flipped bytes would load unnoticed
            problems.append(f"{path} has no {path.name}.sha256 to verify it")
            warnings.warn(f"skipping unverifiable checkpoint {path}: its .sha256 sidecar is "
                          "missing", stacklevel=2)
            continue
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            problems.append(f"{path} is not a tkd training checkpoint")
            warnings.warn(f"skipping {path}: not a tkd training checkpoint", stacklevel=2)
            continue
        state["path"] = str(path)
        return state
    if len(problems) == 1 and len(paths) == 1 and "has no" in problems[0]:
        return None  # the first checkpoint, killed before its sidecar: nothing to resume
    if problems:
        raise CheckpointError(
            "no usable checkpoint to resume from:\n  " + "\n  ".join(problems)
            + "\nDelete the folder to start over, or restore a good checkpoint."
        )
    return None


def save_model(path: str | Path, model: torch.nn.Module, name: str, num_classes: int,
               in_channels: int, image_size: int, **info) -> Path:
    """Atomically save a model's weights with what is needed to rebuild it by registry name."""
    module = getattr(model, "_orig_mod", model)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "name": name, "num_classes": num_classes,
               "in_channels": in_channels, "image_size": image_size, "state_dict": state,
               "info": info}
    return atomic_write_bytes(path, _torch_bytes(payload))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model saved by :func:`save_model` (weights_only loading) in eval mode."""
    from tkd.models import build_model

    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a model saved by tkd.checkpoint.save_model")
    model = build_model(payload["name"], payload["num_classes"], payload["in_channels"],
                        payload["image_size"])
    model.load_state_dict(payload["state_dict"])
    model.tkd_info = {k: payload[k] for k in ("name", "num_classes", "in_channels", "image_size")}
    return model.to(device).eval()


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """Every random state a run depends on: Python, NumPy, torch (CPU and CUDA) and the
    trainer's named ``generators``; in a form that loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    """Restore what :func:`rng_state` captured; ``KeyError`` if a generator is missing."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
