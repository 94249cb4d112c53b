"""Run records: one JSON file per training run, enough to rebuild every table and figure.

A record holds the full configuration, the per-epoch history, the final metrics, library
versions, the device and the wall time. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import pandas as pd
import torch

from tkd.files import atomic_write_json
from tkd.portable import cpu_mode
from tkd.provenance import code_fingerprint


def environment_info(device: str | torch.device) -> dict:
    """Library versions, the device a run used (the CPU's model name and vector instruction set
    on the CPU; CUDA, cuDNN and driver versions on a GPU) and torch's thread count."""
    import numpy

    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pd.__version__,
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        # the vector instructions torch's CPU kernels use: other ones can round differently
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cpu":
        info["cpu_mode"] = cpu_mode()  # portable or native kernels; MKL's CNR mode in force
    return {**info, **_cuda_info()} if device.type == "cuda" else info


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cuda_info() -> dict:
    """CUDA and cuDNN versions, the driver version (None if nvidia-smi cannot say) and
    whether TF32 was allowed."""
    from tkd.precision import tf32_state

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=10)
        driver = done.stdout.split("\n")[0].strip() if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        driver = None
    return {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "driver": driver or None, "tf32": tf32_state()}


def file_sha256(path: str | Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_state(folder: str | Path | None = None) -> dict:
    """The package's git commit and whether its code (``tkd/``, ``pyproject.toml``) differs
    from it; ``None`` values outside a git checkout. A launcher that sends a copy of the tree to
    another machine says which commit it sent with ``TKD_GIT_COMMIT`` (and
    ``TKD_GIT_DIRTY=0|1``), which then wins over whatever ``.git`` the copy holds."""
    folder = Path(folder or Path(__file__).resolve().parent.parent)
    if os.environ.get("TKD_GIT_COMMIT"):  # the launcher knows better than a copied .git
        dirty = os.environ.get("TKD_GIT_DIRTY")
        return {"commit": os.environ["TKD_GIT_COMMIT"],
                "dirty": None if dirty is None else dirty != "0"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    changes = git("status", "--porcelain", "--untracked-files=no", "--", "tkd", "pyproject.toml")
    return {"commit": commit, "dirty": bool(changes)}


def provenance(data, teacher_file: str | Path | None, root: str | Path | None = None) -> dict:
    """Where a run's numbers come from: the code's git commit (and whether the tree was
    dirty), the teacher file's sha256 and the dataset's identity (name, split sizes, label
    hashes) and the fingerprint of the code that decides training
    (:func:`tkd.provenance.code_fingerprint`). Holds no absolute path."""
    return {**git_state(), "teacher_sha256": None if teacher_file is None
            else file_sha256(teacher_file), "data": data.identity(),
            "code": code_fingerprint()}


def make_record(config: dict, history: pd.DataFrame, device: str | torch.device,
                wall_seconds: float, provenance: dict | None = None) -> dict:
    """A JSON-ready record of one finished (or interrupted) run."""
    final = history.iloc[-1].to_dict() if len(history) else {}
    return {
        "config": config,
        "provenance": provenance or {},
        "history": {k: history[k].tolist() for k in history.columns} if len(history) else {},
        "final": {k: float(v) for k, v in final.items()},
        "interrupted": bool(history.attrs.get("interrupted", False)),
        "environment": environment_info(device),
        "wall_seconds": wall_seconds,
    }


def save_record(path: str | Path, record: dict) -> Path:
    """Write a record atomically (temporary file + rename)."""
    return atomic_write_json(path, record)


def load_record(path: str | Path) -> dict:
    """Read one record; a clear error for a file that is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RecordError(f"{path} is not a valid results file: {error}") from error


class RecordError(ValueError):
    """A record that cannot be trusted: malformed, cut short, or in the wrong place."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def record_fault(record) -> str | None:
    """What is wrong with a run record's schema or contents, None when nothing is: the parts
    :func:`make_record` writes (``config`` with ``preset``, ``experiment``, ``seed`` and
    ``train.epochs``; ``history`` of equal-length numeric columns with ``epoch`` = 1..n and
    ``test_acc``; ``final`` = its last row; ``interrupted``; ``environment.device``;
    ``wall_seconds`` >= 0; ``provenance``), and a history as long as ``config.train.epochs``
    unless the run was interrupted. Fields a record may hold beyond these (notes, ``moved_from``,
    extra history columns) are accepted."""
    if not isinstance(record, dict):
        return f"it holds a {type(record).__name__}, not a record"
    missing = [k for k in ("config", "history", "final", "environment", "provenance",
                           "wall_seconds", "interrupted") if k not in record]
    if missing:
        return f"it lacks {', '.join(missing)}"
    config, history, final = record["config"], record["history"], record["final"]
    for name, part in (("config", config), ("history", history), ("final", final),
                       ("environment", record["environment"]),
                       ("provenance", record["provenance"])):
        if not isinstance(part, dict):
            return f"its {name} is a {type(part).__name__}, not a mapping"
    if not isinstance(config.get("preset"), str) or not isinstance(config.get("experiment"), str):
        return "its config names no preset or experiment"
    if not isinstance(config.get("seed"), int) or isinstance(config.get("seed"), bool):
        return f"its config.seed is {config.get('seed')!r}, not an integer"
    epochs = (config.get("train") or {}).get("epochs") if isinstance(config.get("train"),
                                                                      dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        return f"its config.train.epochs is {epochs!r}, not a positive integer"
    if not isinstance(record["interrupted"], bool):
        return f"its interrupted is {record['interrupted']!r}, not true or false"
    if not _number(record["wall_seconds"]) or not record["wall_seconds"] >= 0:
        return f"its wall_seconds is {record['wall_seconds']!r}, not a number >= 0"
    if not isinstance(record["environment"].get("device"), str):
        return "its environment names no device"
    for column in ("epoch", "test_acc"):
        if column not in history:
            return f"its history has no {column!r} column"
    lengths = set()
    for column, values in history.items():
        if not isinstance(values, list):
            return f"its history column {column!r} is not a list"
        bad = [v for v in values if not _number(v)]
        if bad:
            return f"its history column {column!r} holds {bad[0]!r}, not a number"
        lengths.add(len(values))
    if len(lengths) != 1:
        return f"its history columns differ in length ({sorted(lengths)})"
    n = lengths.pop()
    if history["epoch"] != list(range(1, n + 1)):
        return "its history's epochs are not 1, 2, ..., n"
    if record["interrupted"] and n >= epochs:
        return f"it says interrupted but holds all {epochs} epochs"
    if not record["interrupted"] and n != epochs:
        return f"its history holds {n} epochs, its config.train.epochs says {epochs}"
    bad = [k for k, v in final.items() if not _number(v)]
    if bad:
        return f"its final {bad[0]!r} is {final[bad[0]]!r}, not a number"
    if n and "test_acc" not in final:
        return "its final has no test_acc"
    last = {k: float(v[-1]) for k, v in history.items()} if n else {}
    if {k: float(v) for k, v in final.items()} != last:
        differ = sorted(k for k in set(final) | set(last) if final.get(k) != last.get(k))
        return f"its final is not the last epoch of its history ({', '.join(differ[:3])})"
    return None


def check_record(record, path: str | Path) -> dict:
    """``record`` if :func:`record_fault` finds nothing wrong with it, else
    :class:`RecordError` naming the file, the fault and what to do."""
    fault = record_fault(record)
    if fault is not None:
        raise RecordError(f"{path} is not a usable run record: {fault}. Restore it (git "
                          "checkout) or delete it (and its .pt) so that the run is made again")
    return record


def history_frame(record: dict) -> pd.DataFrame:
    """The per-epoch history of a record as a DataFrame."""
    return pd.DataFrame(record["history"])
