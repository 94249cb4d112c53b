"""Whether a record is current: it answers today's settings, teacher, data and code.

:func:`stale_reason` is the one check of every path (the grid, the cluster, the notebooks'
saved students, the figures): it compares a record with :func:`expected_run` (what the preset's
recipe runs today), the teacher file it used, the data's identity and the code's fingerprint
(:mod:`tkd.provenance`, vouched for by ``results/code-equivalence.json``).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from functools import lru_cache
from pathlib import Path

from tkd.experiments import (
    EXPERIMENTS,
    PRESETS,
    Preset,
    get_experiment,
    load_data,
    student_config,
    teacher_config,
    teacher_owner,
)
from tkd.objective import ObjectiveConfig
from tkd.provenance import code_fingerprint, load_equivalences, vouched_changes
from tkd.records import (
    file_sha256,
    read_record,
    record_fault,
    result_path,
    results_root,
    student_path,
    teacher_path,
)
from tkd.train import TrainConfig


def run_config(preset: Preset, experiment: str, seed: int, train: TrainConfig,
               objective: dict | None, model: str, label: str | None = None) -> dict:
    """The part of a record that says what was run (compared to decide a record is stale)."""
    train = {k: v for k, v in asdict(train).items()
             if k not in ("device", "progress", "checkpoint_dir", "resume", "tensorboard",
                          "cuda_graph")}
    return {"preset": preset.name, "experiment": experiment, "seed": seed,
            "dataset": preset.dataset, "validation": preset.validation, "subset": preset.subset,
            "model": model, "label": label, "train": train, "objective": objective,
            "paired_design": "the seed fixes the initial weights and the data order "
                             "(shuffling stream) for every method"}


def expected_run(preset: Preset, experiment: str, seed: int,
                 epochs: int | None = None) -> dict:
    """The ``config`` a current record of this run must hold."""
    spec = get_experiment(experiment)
    return run_config(preset, spec.name, seed, student_config(preset, spec, seed, None, epochs),
                      spec.objective().to_dict(), preset.student_model, spec.label)


def expected_teacher_run(preset: Preset) -> dict:
    """The ``config`` a current record of the preset's teacher (``teacher/1.json``) must hold."""
    owner = teacher_owner(preset)
    return run_config(owner, "teacher", 1, teacher_config(owner), None, owner.teacher_model)


def _fields_differ(saved, want: dict | None, kind: type) -> bool:
    """Whether a record's ``train`` (``kind`` TrainConfig) or ``objective`` (ObjectiveConfig)
    settings differ from ``want``; a setting the record lacks counts as equal when today's
    value is the dataclass default (a field added later does not make every old record
    stale)."""
    if want is None or saved is None:
        return saved != want
    if not isinstance(saved, dict):
        return True
    defaults = {f.name: f.default for f in fields(kind)}
    missing = object()
    return any(saved.get(k, defaults.get(k, missing)) != v for k, v in want.items()) \
        or any(k not in want for k in saved)


DESCRIPTIVE = ("label",)
"""Fields of a record's ``config`` that describe a run without changing it: a label reworded
since does not make the record stale."""


def _changed_settings(config: dict, want: dict) -> list[str]:
    kinds = {"train": TrainConfig, "objective": ObjectiveConfig}
    return [k for k in want if k not in DESCRIPTIVE and (
        _fields_differ(config.get(k), want[k], kinds[k]) if k in kinds
        else config.get(k) != want[k])]


def _equivalences(root: str | Path | None) -> list[dict]:
    """The code-equivalence entries of the results root and of this checkout's own
    ``results/`` (equivalences are facts about code, so a copy of one preset's records
    elsewhere is judged with them too)."""
    folders = dict.fromkeys([results_root(root).resolve(),
                             (Path(__file__).resolve().parent.parent / "results").resolve()])
    return [entry for folder in folders for entry in load_equivalences(folder)]


def code_reason(origin: dict, root: str | Path | None = None) -> str | None:
    """Why the code a record names (``provenance["code"]``) is not today's, None when it is
    (unchanged, or vouched for by ``<results>/code-equivalence.json``). The definitions named
    are those changed since the vouched code closest to today's
    (:func:`tkd.provenance.vouched_changes`), not the ones an equivalence entry covers."""
    recorded = origin.get("code")
    if not recorded:
        return "it was recorded before code fingerprints"
    changed = vouched_changes(recorded, code_fingerprint(), _equivalences(root))
    if not changed:
        return None
    more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
    return f"the code changed since it was recorded: {', '.join(changed[:3])}{more}"


def stale_reason(record: dict, preset: Preset, experiment: str, seed: int,
                 teacher_sha256: str | None, epochs: int | None = None,
                 data_identity: dict | None = None, root: str | Path | None = None,
                 ) -> str | None:
    """Why a saved record no longer answers this run, None when it is current. The one check
    of every path (grid, cluster, notebooks, figures). It compares, in this order: the
    settings (``config``, naming the keys), the teacher (``teacher_sha256``: the sha256 of
    the teacher file a distillation run must have used; for ``experiment="teacher"`` that of
    its own ``model.pt``), the data (``data_identity``, today's ``Dataset.identity()``) and
    the code (:func:`code_reason`). ``None`` for ``teacher_sha256`` / ``data_identity``
    skips that comparison."""
    teacher = experiment == "teacher"
    fault = None if "error" in record else record_fault(record)  # a .failed.json: no final
    if fault is not None:
        return f"it is not a usable record ({fault})"
    if record.get("interrupted"):
        done, total = len(record["history"]["epoch"]), record["config"]["train"]["epochs"]
        return f"it was interrupted after {done} of {total} epochs"
    want = expected_teacher_run(preset) if teacher else expected_run(preset, experiment, seed,
                                                                      epochs)
    changed = _changed_settings(record.get("config", {}), want)
    if changed:
        return f"its settings changed ({', '.join(changed)})"
    origin = record.get("provenance") or {}
    had = origin.get("model_sha256" if teacher else "teacher_sha256")
    if teacher_sha256 is not None and had != teacher_sha256:
        return ("its model.pt is not the file it recorded" if teacher
                else "it was trained with another teacher")
    if data_identity is not None and origin.get("data") != data_identity:
        return "it was trained on other data (dataset identity differs)"
    return code_reason(origin, root)


def saved_student_reason(preset: Preset, experiment: str, seed: int = 1,
                         root: str | Path | None = None,
                         data_identity: dict | None = None) -> str | None:
    """Why the saved student ``<seed>.pt`` cannot be used, None when its record ``<seed>.json``
    is current (:func:`stale_reason`: settings, the saved teacher's sha256, data, code)."""
    record_path = result_path(preset, experiment, seed, root)
    if not student_path(preset, experiment, seed, root).is_file():
        return "it was never saved"
    if not record_path.is_file():
        return f"it has no record {record_path.name} to check it against"
    uses_teacher = get_experiment(experiment).objective().needs_teacher
    saved_teacher = teacher_path(preset, root)
    sha = file_sha256(saved_teacher) if uses_teacher and saved_teacher.is_file() else None
    if uses_teacher and sha is None:
        return "its teacher is not saved"
    record = read_record(record_path)
    weights = (record.get("provenance") or {}).get("model_sha256")
    if weights is None:
        return (f"its record {record_path.name} names no sha256 of its weights (made before "
                "weights were recorded): run `python -m tkd backfill-weights` where the .pt is "
                "known to be the record's")
    if file_sha256(student_path(preset, experiment, seed, root)) != weights:
        return (f"its weights {record_path.stem}.pt are not the ones its record "
                f"{record_path.name} names (sha256 differs): the file was replaced or damaged")
    return stale_reason(record, preset, experiment, seed, sha, data_identity=data_identity,
                        root=root)


@lru_cache(maxsize=8)
def _data_identity(preset: Preset) -> dict | None:
    """Today's identity of a preset's data; None when the data cannot be loaded here."""
    try:
        return load_data(preset).identity()
    except Exception:  # noqa: BLE001 - no data here: the data comparison is skipped
        return None


@lru_cache(maxsize=8)
def _sha256(path: Path, mtime_ns: int) -> str:
    return file_sha256(path)


def record_stale_reason(record: dict, root: str | Path | None = None) -> str | None:
    """Why a record is stale (:func:`stale_reason` against the preset it names, the
    teacher saved under ``root``, today's data when it can be loaded, and today's code);
    None when it is current."""
    config = record.get("config", {})
    preset, name = config.get("preset"), config.get("experiment")
    if preset not in PRESETS or (name != "teacher" and name not in EXPERIMENTS):
        return f"it names no known preset and experiment ({preset}/{name})"
    preset = PRESETS[preset]
    saved = teacher_path(preset, root)
    uses_teacher = name == "teacher" or EXPERIMENTS[name].objective().needs_teacher
    sha = _sha256(saved, saved.stat().st_mtime_ns) if uses_teacher and saved.is_file() else None
    return stale_reason(record, preset, name, config.get("seed"), sha,
                        data_identity=_data_identity(preset), root=root)
