"""Train or load a preset's runs: its teacher, and a student of one experiment x seed.

:func:`run_experiment` trains one student and writes its weights and record (the grid calls it
for every run, :mod:`tkd.grid`); :func:`load_student` / :func:`load_or_train_student` give a
notebook the saved student when its record is current (:mod:`tkd.staleness`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from tkd.checkpoint import load_model, save_model
from tkd.data import Dataset
from tkd.experiments import (
    Experiment,
    Preset,
    get_experiment,
    load_data,
    student_config,
    teacher_config,
    teacher_owner,
)
from tkd.files import atomic_write_json, run_lock
from tkd.live import EpochLog, RunClock
from tkd.models import build_model
from tkd.provenance import code_fingerprint
from tkd.records import (
    environment_info,
    failed_path,
    file_sha256,
    provenance,
    read_record,
    relative,
    result_path,
    save_record,
    student_path,
    teacher_path,
    write_record,
)
from tkd.staleness import expected_run, expected_teacher_run, saved_student_reason
from tkd.train import (
    NonFiniteLossError,
    TrainConfig,
    fit,
    pick_device,
    predict,
    seed_everything,
)


def train_teacher(preset: Preset, data: Dataset | None = None,
                  root: str | Path | None = None, device: str | None = None,
                  force: bool = False, progress: bool = False) -> torch.nn.Module:
    """The preset's teacher: loaded from :func:`teacher_path` if saved, else trained
    (:func:`teacher_config`) and saved there with its record ``teacher/1.json`` (whose
    provenance holds the sha256 of that ``model.pt``). A preset that shares another's teacher
    (``teacher_preset``) trains it with that preset's recipe and data (``data`` is then
    ignored: it is the sharing preset's). Returns the model in eval mode.

    Training checkpoints every epoch into ``teacher/1.run/`` and resumes from there (a kill
    loses at most the epoch in progress; checkpoints of other settings, data or code are
    cleared first). An interrupted training (Ctrl-C) writes nothing, so a saved teacher is
    never replaced by a half-trained one, and raises ``KeyboardInterrupt``."""
    shared = preset.teacher_preset is not None
    preset = teacher_owner(preset)
    path = teacher_path(preset, root)
    if path.is_file() and not force:
        _check_teacher_file(path)
        return load_model(path, pick_device(device))
    data = load_data(preset) if shared or data is None else data
    run = expected_teacher_run(preset)
    with run_lock(path.with_name("1.json")):
        work = _teacher_work(path.with_name("1.run"), {
            "config": run, "data": data.identity(), "code": code_fingerprint()})
        seed_everything(1)  # the initial weights depend on the seed only
        model = build_model(preset.teacher_model, data.num_classes, data.in_channels,
                            data.image_size)
        config = replace(teacher_config(preset, device), progress=progress,
                         checkpoint_dir=str(work / "checkpoints"), resume=True)
        clock = RunClock(work)
        history = fit(model, data, config, on_epoch=clock)
        wall = clock.total(len(history))
        if history.attrs.get("interrupted"):  # nothing half-done is written
            raise KeyboardInterrupt
        save_model(path, model, preset.teacher_model, data.num_classes, data.in_channels,
                   data.image_size, dataset=preset.dataset, preset=preset.name)
        write_record(path.with_name("1.json"), run, history, pick_device(device), wall, data,
                     weights=path)  # last: the teacher is done
        shutil.rmtree(work, ignore_errors=True)
    return load_model(path, pick_device(device))


def _check_teacher_file(path: Path) -> None:
    """``ValueError`` when the teacher's record ``1.json`` names another ``model.pt`` than the
    one at ``path`` (replaced or damaged weights are never served as the recorded teacher)."""
    record = path.with_name("1.json")
    if not record.is_file():
        return
    recorded = (read_record(record).get("provenance") or {}).get("model_sha256")
    if recorded is not None and recorded != file_sha256(path):
        raise ValueError(f"{path} is not the teacher its record {record.name} names (sha256 "
                         "differs): the file was replaced or damaged; restore it (git checkout) "
                         "or run `python -m tkd reproduce` to retrain it")


def _teacher_work(work: Path, stamp: dict) -> Path:
    """The teacher's checkpoint folder ``work``, emptied first unless its ``stamp.json`` says
    it holds checkpoints of this very recipe, data and code (then training resumes there)."""
    marker = work / "stamp.json"
    try:
        same = json.loads(marker.read_text()) == json.loads(json.dumps(stamp))
    except (OSError, ValueError):
        same = False
    if work.exists() and not same:
        shutil.rmtree(work)
    if not same:
        atomic_write_json(marker, stamp)
    return work


def teacher_logits(teacher: torch.nn.Module, data: Dataset,
                   device: str | None = None) -> tuple[torch.Tensor, ...]:
    """The teacher's logits on (train, test[, validation]): (N, classes) float32, on the CPU."""
    dev = pick_device(device)
    teacher = teacher.to(dev).eval()
    splits = [data.train, data.test] + ([data.validation] if data.validation else [])
    return tuple(predict(teacher, split.images.to(dev)).cpu() for split in splits)


def train_student(preset: Preset, experiment: str | Experiment, seed: int, data: Dataset,
                  teacher: torch.nn.Module | None = None,
                  logits: tuple[torch.Tensor, ...] | None = None,
                  device: str | None = None, epochs: int | None = None,
                  progress: bool = False, checkpoint_dir: Path | None = None,
                  on_epoch=None) -> tuple[torch.nn.Module, pd.DataFrame, TrainConfig]:
    """Train one student (``experiment`` x ``seed``) with the preset's settings.

    logits: the teacher's logits from :func:`teacher_logits`, reused by every run.
    ``epochs`` overrides the preset's; ``checkpoint_dir`` checkpoints every epoch and resumes
    from what is there. Returns the model, its history and its TrainConfig.
    """
    experiment = get_experiment(experiment)
    objective = experiment.objective()
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"experiment {experiment.name!r} needs the teacher")
    config = replace(student_config(preset, experiment, seed, device, epochs), progress=progress,
                     checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
                     resume=checkpoint_dir is not None)
    seed_everything(seed)  # the initial weights depend on the seed only, not on run order
    model = build_model(preset.student_model, data.num_classes, data.in_channels,
                        data.image_size)
    reference = (logits if logits is not None or teacher is None
                 else teacher_logits(teacher, data, device))
    history = fit(model, data, config, objective, teacher if objective.needs_teacher else None,
                  logits if objective.needs_teacher else None, on_epoch=on_epoch,
                  reference_logits=reference)
    return model, history, config


def run_experiment(preset: Preset, experiment: str | Experiment, seed: int,
                   data: Dataset, teacher: torch.nn.Module | None = None,
                   logits: tuple[torch.Tensor, ...] | None = None,
                   root: str | Path | None = None, device: str | None = None,
                   epochs: int | None = None, progress: bool = False,
                   tensorboard: str | None = None) -> dict:
    """Train one student with :func:`train_student`, checkpointing every epoch into
    ``<seed>.run/`` (resumed if there, with a live ``history.csv``); then save it
    (:func:`student_path`) beside its record ``<seed>.json`` (:func:`result_path`), the last
    file written, and remove the checkpoints. Returns the record."""
    experiment = get_experiment(experiment)
    path = result_path(preset, experiment.name, seed, root)
    with run_lock(path):  # BusyError when another process writes this run
        return _run_experiment(preset, experiment, seed, data, teacher, logits, root, device,
                               epochs, progress, tensorboard, path)


def _run_experiment(preset: Preset, experiment: Experiment, seed: int, data: Dataset,
                    teacher, logits, root, device, epochs, progress, tensorboard,
                    path: Path) -> dict:
    """The body of :func:`run_experiment`, under its lock."""
    work = path.with_name(f"{seed}.run")
    log = EpochLog(work, tensorboard, f"{preset.name}/{experiment.name}/{seed}")
    clock = RunClock(work)

    def on_epoch(row: dict) -> None:
        log(row)
        clock(row)
    try:
        model, history, config = train_student(preset, experiment, seed, data, teacher, logits,
                                               device, epochs, progress, work / "checkpoints",
                                               on_epoch)
    except NonFiniteLossError as error:  # a finding, kept: the grid does not retry it
        run = expected_run(preset, experiment.name, seed, epochs)
        save_record(failed_path(path), {
            "config": run, "error": str(error), "history": log.rows,
            "environment": environment_info(pick_device(device)),
            "provenance": provenance(data, teacher_path(preset, root) if teacher is not None
                                     and experiment.objective().needs_teacher else None, root)})
        raise
    finally:
        log.close()
    if history.attrs.get("interrupted"):
        raise KeyboardInterrupt
    wall = clock.total(len(history))
    run = expected_run(preset, experiment.name, seed, epochs)
    tpath = teacher_path(preset, root)
    run["teacher"] = relative(tpath, root) if experiment.objective().needs_teacher else None
    weights = save_model(student_path(preset, experiment.name, seed, root), model,
                         preset.student_model, data.num_classes, data.in_channels,
                         data.image_size, preset=preset.name, experiment=experiment.name,
                         seed=seed)
    record = write_record(path, run, history, pick_device(device), wall, data,
                          tpath if run["teacher"] else None, weights)  # last: the run is done
    shutil.rmtree(work, ignore_errors=True)
    return record


def teacher_accuracy(preset: Preset, root: str | Path | None = None) -> float | None:
    """The final test accuracy of the preset's saved teacher, or None if not trained yet."""
    path = teacher_path(preset, root).with_name("1.json")
    return read_record(path)["final"]["test_acc"] if path.is_file() else None


def reproduce_hint(spec: Preset, experiment: str, seed: int) -> str:
    """The sentence that tells a user how to (re)make ``experiment`` x ``seed`` of ``spec``."""
    return (f"run `python -m tkd reproduce --preset {spec.name} --experiments {experiment} "
            f"--seeds {seed}`")


def load_student(preset: Preset, experiment: str, seed: int = 1,
                 root: str | Path | None = None, device: str | None = None,
                 data_identity: dict | None = None) -> torch.nn.Module:
    """The saved student of ``experiment`` x ``seed`` in eval mode, only if its record is
    current (:func:`saved_student_reason`; ``data_identity`` defaults to the preset's data
    loaded now); ``ValueError`` saying why and how to fix it otherwise."""
    identity = data_identity if data_identity is not None else load_data(preset).identity()
    reason = saved_student_reason(preset, experiment, seed, root, identity)
    if reason is not None:
        raise ValueError(f"the saved {preset.name}/{experiment} seed {seed} cannot be used: "
                         f"{reason}; {reproduce_hint(preset, experiment, seed)}")
    return load_model(student_path(preset, experiment, seed, root), device or "cpu")


def load_or_train_student(preset: Preset, experiment: str, data: Dataset,
                          teacher: torch.nn.Module, seed: int = 1, epochs: int | None = None,
                          root: str | Path | None = None, device: str | None = None,
                          log=print, retrain: bool | None = None, save: bool = True,
                          max_train: int | None = None) -> torch.nn.Module:
    """The student of ``experiment``: loaded from :func:`student_path` if saved and its record
    is current (:func:`saved_student_reason`), else trained with the preset's settings for at
    most ``epochs`` epochs (None: the preset's). With ``save``, only a run of the preset's
    length is saved, with its record (:func:`run_experiment`; ``teacher`` must be the preset's
    saved one); without it nothing is written. A student is trained only where ``data`` has at
    most ``max_train`` training images (None: any size), and a saved one that is stale only
    when ``retrain`` (default: when ``epochs`` is the preset's length); otherwise
    ``ValueError`` says why and gives the command that saves it. Returned in eval mode."""
    epochs = min(epochs or preset.epochs, preset.epochs)
    path = student_path(preset, experiment, seed, root)
    reason = saved_student_reason(preset, experiment, seed, root, data.identity())
    if reason is None:
        log(f"{experiment}: loaded {path.name}")
        return load_model(path, device or "cpu")
    too_large = max_train is not None and len(data.train) > max_train
    stale = path.is_file()
    if too_large or (stale and not (epochs == preset.epochs if retrain is None else retrain)):
        raise ValueError(f"the saved {preset.name}/{experiment} seed {seed} cannot be used: "
                         f"{reason}; {reproduce_hint(preset, experiment, seed)}"
                         + ("" if too_large else ", or pass retrain=True"))
    log(f"{experiment}: no usable saved student ({reason}); training it here")
    uses_teacher = get_experiment(experiment).objective().needs_teacher
    saved_teacher = not uses_teacher or teacher_path(preset, root).is_file()
    if save and epochs == preset.epochs and saved_teacher:
        record = run_experiment(preset, experiment, seed, data, teacher, root=root,
                                device=device)
        log(f"{experiment}: trained {epochs} epochs, test accuracy "
            f"{record['final']['test_acc']:.3f}")
        return load_model(path, device or "cpu")
    model, history, _ = train_student(preset, experiment, seed, data, teacher, device=device,
                                      epochs=epochs)
    log(f"{experiment}: trained {epochs} epochs, test accuracy "
        f"{history['test_acc'].iloc[-1]:.3f}")
    return model.eval()
