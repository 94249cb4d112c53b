"""Run records: where they live, writing and reading them, and the checks on reading.

One JSON file per training run, ``<results root>/<preset>/<experiment>/<seed>.json``, holds
the full configuration, the per-epoch history, the final metrics, library versions, the device,
the wall time and the provenance: enough to rebuild every table and figure. Files are written
atomically; a record is read through :func:`read_record`, which refuses a malformed or
misplaced one. The results root is ``$TKD_RESULTS`` if set, else ``results/`` of the project
folder. Whether a record is still current: :mod:`tkd.staleness`.
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

from tkd.checkpoint import safe_load
from tkd.experiments import PRESETS, Preset
from tkd.files import atomic_write_json
from tkd.portable import cpu_mode
from tkd.provenance import code_fingerprint


def project_root() -> Path:
    """The nearest folder at or above the working directory holding ``pyproject.toml`` or
    ``results/`` (so notebooks in ``notebooks/`` write to the project's folders); else cwd."""
    cwd = Path.cwd()
    for folder in (cwd, *cwd.parents):
        if (folder / "pyproject.toml").is_file() or (folder / "results").is_dir():
            return folder
    return cwd


def results_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$TKD_RESULTS``, else ``<project>/results``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("TKD_RESULTS") or project_root() / "results")


def result_path(preset: Preset, experiment: str, seed: int,
                root: str | Path | None = None) -> Path:
    """``<root>/<preset>/<experiment>/<seed>.json``."""
    return results_root(root) / preset.name / experiment / f"{seed}.json"


def teacher_path(preset: Preset, root: str | Path | None = None) -> Path:
    """Where the preset's teacher checkpoint lives: ``<root>/<preset>/teacher/model.pt``
    (``<preset>`` being ``teacher_preset`` for a preset that shares another's teacher)."""
    return results_root(root) / (preset.teacher_preset or preset.name) / "teacher" / "model.pt"


def student_path(preset: Preset, experiment: str, seed: int,
                 root: str | Path | None = None) -> Path:
    """Where a trained student is saved: ``<root>/<preset>/<experiment>/<seed>.pt``."""
    return result_path(preset, experiment, seed, root).with_suffix(".pt")


def failed_path(path: Path) -> Path:
    """``<seed>.failed.json`` beside a run's record: the error of a run that diverged."""
    return path.with_name(path.stem + ".failed.json")


def relative(path: Path, root: str | Path | None) -> str:
    """``path`` relative to the results root (records never hold absolute machine paths)."""
    return Path(path).relative_to(results_root(root)).as_posix()


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


def write_record(path: str | Path, config: dict, history: pd.DataFrame,
                 device: str | torch.device, wall_seconds: float, data,
                 teacher_file: str | Path | None = None,
                 weights: str | Path | None = None) -> dict:
    """Write the record of a finished run (a teacher, a student, ``tkd train``): its
    :func:`provenance` and, where its weights were saved, their sha256 (the record vouches
    for them), then the record itself, the last file a run writes. Returns it."""
    origin = provenance(data, teacher_file)
    if weights is not None:
        origin["model_sha256"] = file_sha256(weights)
    record = make_record(config, history, device, wall_seconds, origin)
    save_record(path, record)
    return record


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


def _history_fault(history: dict) -> str | None:
    """What is wrong with a record's ``history`` on its own, None when nothing is: columns
    ``epoch`` and ``test_acc``, every column a list of numbers, all of one length n, and
    ``epoch`` = 1..n (:func:`record_fault` checks it against the config and ``final``)."""
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
    if history["epoch"] != list(range(1, lengths.pop() + 1)):
        return "its history's epochs are not 1, 2, ..., n"
    return None


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
    fault = _history_fault(history)
    if fault is not None:
        return fault
    n = len(history["epoch"])
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


def place_fault(path: str | Path, record: dict) -> str | None:
    """What breaks the place rule for the record at ``path`` (``<preset>/<experiment>/
    <seed>.json``), None when nothing does: its ``config.preset``, ``config.experiment`` and
    ``config.seed`` must be the folders' and the file's, and a student's device kind
    (``environment.device`` before ``:``) the preset's :attr:`Preset.device` (teachers, the
    shared input of every run, are exempt from the device part)."""
    path = Path(path)
    config = record.get("config") or {}
    stem = path.name.removesuffix(".failed.json").removesuffix(".json")
    here = {"preset": path.parent.parent.name, "experiment": path.parent.name, "seed": stem}
    said = {k: str(config.get(k)) for k in here}
    wrong = [f"config.{k} is {said[k]!r}, not {here[k]!r}" for k in here if said[k] != here[k]]
    if wrong:
        return (f"it is not where it belongs ({'; '.join(wrong)}): move it to "
                f"{said['preset']}/{said['experiment']}/{said['seed']}.json or delete it")
    spec = PRESETS.get(here["preset"])
    device = str((record.get("environment") or {}).get("device", "")).split(":")[0]
    if spec is not None and here["experiment"] != "teacher" and device != spec.device:
        return (f"it was trained on {device or 'an unrecorded device'}, but every student of "
                f"preset {spec.name!r} comes from {spec.device}: move it to a preset of "
                f"{device or 'its'} runs or delete it")
    return None


def read_record(path: str | Path) -> dict:
    """A run record read from ``path`` and checked: its schema and contents
    (:func:`record_fault`) and its place (:func:`place_fault`); :class:`RecordError` naming
    the file, the fault and the fix otherwise."""
    record = check_record(load_record(path), path)
    fault = place_fault(path, record)
    if fault is not None:
        raise RecordError(f"{path} is refused: {fault}")
    return record


def load_records(preset: Preset, root: str | Path | None = None) -> list[dict]:
    """Every finished run record of a preset (the teacher's included), sorted by experiment
    and seed; diverged runs (``*.failed.json``) are read by :func:`load_failures`."""
    folder = results_root(root) / preset.name
    paths = sorted(p for p in folder.glob("*/*.json") if not p.name.endswith(".failed.json")) \
        if folder.is_dir() else []
    records = [read_record(p) for p in paths]  # RecordError: refused, never counted
    return sorted(records, key=lambda r: (r["config"]["experiment"], r["config"]["seed"]))


def load_failures(preset: Preset, root: str | Path | None = None) -> pd.DataFrame:
    """Runs that stopped on a NaN/inf loss: experiment, seed, error."""
    folder = results_root(root) / preset.name
    rows = [{"experiment": r["config"]["experiment"], "seed": r["config"]["seed"],
             "error": r["error"]}
            for r in map(load_record, sorted(folder.glob("*/*.failed.json")))]
    return pd.DataFrame(rows, columns=["experiment", "seed", "error"])


def backfill_weights(root: str | Path | None = None, log=print) -> list[Path]:
    """Add ``provenance.model_sha256`` (the sha256 of ``<seed>.pt``) to every student record
    under ``root`` that has its weights saved beside it but was made before records named
    their weights' hash; marked ``model_sha256_added``. A ``.pt`` whose own ``info`` names
    another experiment or seed is not vouched for. Idempotent; returns the records changed."""
    changed = []
    for path in sorted(results_root(root).glob("*/*/*.json")):
        weights = path.with_suffix(".pt")
        if path.name.endswith(".failed.json") or path.parent.name == "teacher" \
                or not weights.is_file():
            continue
        record = load_record(path)
        origin = record.setdefault("provenance", {})
        if origin.get("model_sha256"):
            continue
        info = (safe_load(weights).get("info") or {})
        config = record.get("config") or {}
        if (info.get("experiment"), info.get("seed")) != (config.get("experiment"),
                                                           config.get("seed")):
            log(f"{path}: {weights.name} says it is {info.get('experiment')} seed "
                f"{info.get('seed')}; not vouched for")
            continue
        origin["model_sha256"] = file_sha256(weights)
        origin["model_sha256_added"] = f"backfilled from the saved {weights.name}"
        save_record(path, record)
        changed.append(path)
    log(f"backfill-weights: {len(changed)} record(s) now name their weights' sha256")
    return changed
