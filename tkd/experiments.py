"""The paper's experiments as data, and the functions that run them.

A *preset* fixes the scale (dataset, models, epochs, seeds); an *experiment* is a named method
with its settings (e.g. ``kd-t4`` = Hinton KD at T = 4). :func:`reproduce` trains the preset's
teacher first (or loads it), computes its logits once, then trains every experiment x seed,
skipping runs whose results file already exists. Every run writes
``<results root>/<preset>/<experiment>/<seed>.json`` (see :mod:`tkd.results`).

The results root is ``$TKD_RESULTS`` if set, else ``results/`` of the project folder.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from tkd.checkpoint import load_model, save_model
from tkd.data import Dataset, load_dataset
from tkd.losses import method_config
from tkd.models import build_model
from tkd.results import load_record, make_record, save_record
from tkd.train import TrainConfig, fit, pick_device, predict, seed_everything


@dataclass(frozen=True)
class Experiment:
    """One trained student: a method of :data:`tkd.losses.METHODS` with overrides."""

    name: str
    method: str
    label: str
    overrides: dict = field(default_factory=dict)

    def objective(self):
        """The :class:`tkd.losses.ObjectiveConfig` of this experiment."""
        return method_config(self.method, **self.overrides)


def _experiments(*items: Experiment) -> dict[str, Experiment]:
    return {e.name: e for e in items}


MAIN = _experiments(
    Experiment("ce", "ce", "student alone (CE)"),
    Experiment("mse", "mse", "Ba & Caruana (logit MSE)"),
    Experiment("kd-t1", "kd", "Hinton KD, T=1", {"temperature": 1.0}),
    Experiment("kd-t4", "kd", "Hinton KD, T=4", {"temperature": 4.0}),
    Experiment("pair", "pair", "pair loss (margin 5)"),
    Experiment("triplet", "triplet", "triplet, paper (CE + 2 triplet, m=5)"),
    Experiment("triplet-kd", "triplet-kd", "triplet-KD 2022 (KL T=1 + CE + 2 triplet)"),
    Experiment("triplet-batch-random", "triplet", "triplet, batch-random negatives",
               {"negatives": "batch-random"}),
    Experiment("triplet-batch-hard", "triplet", "triplet, batch-hard negatives",
               {"negatives": "batch-hard"}),
    Experiment("triplet-batch-semihard", "triplet", "triplet, batch-semihard negatives",
               {"negatives": "batch-semihard"}),
)
"""The main comparison. The first seven are the paper's family; the batch-mined negatives are
an addition of this package."""

BASELINES = ["ce", "mse", "kd-t1", "kd-t4"]
TRIPLET = ["pair", "triplet", "triplet-kd", "triplet-batch-random", "triplet-batch-hard",
           "triplet-batch-semihard"]
QUICKSTART = ["ce", "kd-t4", "triplet"]

MARGINS = (1.0, 2.0, 5.0, 10.0)
TEMPERATURES = (1.0, 2.0, 4.0, 8.0)


def _number(value: float) -> str:
    return f"{value:g}"


def margin_experiment(margin: float) -> Experiment:
    """The paper's triplet (CE + 2 triplet, sampled negatives) at another margin."""
    if margin == 5.0:
        return MAIN["triplet"]
    return Experiment(f"triplet-m{_number(margin)}", "triplet",
                      f"triplet, margin {_number(margin)}", {"margin": margin})


def temperature_experiment(temperature: float) -> Experiment:
    """Hinton KD (CE + T^2 KL) at temperature ``temperature``."""
    return Experiment(f"kd-t{_number(temperature)}", "kd", f"Hinton KD, T={_number(temperature)}",
                      {"temperature": temperature})


SWEEPS = _experiments(*(margin_experiment(m) for m in MARGINS),
                      *(temperature_experiment(t) for t in TEMPERATURES))
EXPERIMENTS: dict[str, Experiment] = {**MAIN, **SWEEPS}
SWEEP_NAMES = {"margin": [margin_experiment(m).name for m in MARGINS],
               "temperature": [temperature_experiment(t).name for t in TEMPERATURES]}


@dataclass(frozen=True)
class Preset:
    """The scale of a reproduction. Student optimiser defaults are the paper's (SGD 0.01,
    momentum 0.9, weight decay 0.007 — 0.01 for the student alone — StepLR 100 x0.1, batch 100).
    ``subset``: a class-balanced subset of the training split (seed 0), the same for all runs."""

    name: str
    dataset: str
    epochs: int
    teacher_epochs: int
    seeds: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    teacher_model: str = "paper-teacher"
    student_model: str = "paper-student"
    subset: int | None = None
    batch_size: int = 100
    lr: float = 0.01
    weight_decay: float = 0.007
    ce_weight_decay: float = 0.01
    lr_step: int = 100
    teacher_weight_decay: float = 5e-4
    teacher_lr_step: int = 100
    threads: int | None = None
    description: str = ""


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick", "digits", epochs=40, teacher_epochs=30, seeds=(1, 2, 3), sweep_seeds=(1, 2, 3),
        threads=1,
        description="sklearn's 8x8 digits (1438 train / 359 test images), 40 student epochs, "
                    "3 seeds; a few minutes on one CPU core"),
    "fashion": Preset(
        "fashion", "fashion-mnist", epochs=15, teacher_epochs=15, seeds=(1, 2, 3),
        sweep_seeds=(1, 2), subset=10_000, threads=1,
        description="Fashion-MNIST, a balanced 10,000-image training subset, the full "
                    "10,000-image test set, 15 teacher and 15 student epochs, 3 seeds (2 for "
                    "the sweeps); about 30 minutes on a 2-core CPU"),
    "paper": Preset(
        "paper", "cifar10", epochs=500, teacher_epochs=200, seeds=(1, 2, 3),
        sweep_seeds=(1, 2, 3),
        description="CIFAR-10, the paper's full protocol (500 epochs, batch 100, SGD 0.01/0.9, "
                    "wd 0.007, StepLR 100 x0.1); needs a GPU and internet"),
}


def get_preset(preset: str | Preset) -> Preset:
    """A :class:`Preset` by name (or the preset itself); ``ValueError`` for unknown names."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def get_experiment(experiment: str | Experiment) -> Experiment:
    """An :class:`Experiment` by name (or the experiment itself); ``ValueError`` if unknown."""
    if isinstance(experiment, Experiment):
        return experiment
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}; "
                         f"choose one of {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[experiment]


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


def result_path(preset: str | Preset, experiment: str, seed: int,
                root: str | Path | None = None) -> Path:
    """``<root>/<preset>/<experiment>/<seed>.json``."""
    return results_root(root) / get_preset(preset).name / experiment / f"{seed}.json"


def teacher_path(preset: str | Preset, root: str | Path | None = None) -> Path:
    """Where the preset's teacher checkpoint lives: ``<root>/<preset>/teacher/model.pt``."""
    return results_root(root) / get_preset(preset).name / "teacher" / "model.pt"


def load_data(preset: str | Preset, data_root: str | Path | None = None) -> Dataset:
    """The preset's dataset (on the CPU), its training split cut to ``preset.subset``."""
    preset = get_preset(preset)
    data = load_dataset(preset.dataset, data_root)
    if preset.subset:
        data.train = data.train.subset(preset.subset, seed=0)
    return data


def _run_config(preset: Preset, experiment: str, method: str, model: str, seed: int,
                train: TrainConfig, objective: dict | None, teacher: str | None) -> dict:
    return {"preset": preset.name, "experiment": experiment, "method": method, "seed": seed,
            "dataset": preset.dataset, "subset": preset.subset, "model": model,
            "teacher": teacher, "train": asdict(train), "objective": objective}


def train_teacher(preset: str | Preset, data: Dataset | None = None,
                  root: str | Path | None = None, device: str | None = None,
                  force: bool = False, progress: bool = False) -> torch.nn.Module:
    """The preset's teacher: loaded from :func:`teacher_path` if saved, else trained (seed 1)
    and saved there with its record ``teacher/1.json``. Returns the model in eval mode."""
    preset = get_preset(preset)
    path = teacher_path(preset, root)
    if path.is_file() and not force:
        return load_model(path, pick_device(device))
    data = data or load_data(preset)
    seed_everything(1)  # the initial weights depend on the seed only
    model = build_model(preset.teacher_model, data.num_classes, data.in_channels, data.image_size)
    config = TrainConfig(epochs=preset.teacher_epochs, batch_size=preset.batch_size,
                         lr=preset.lr, weight_decay=preset.teacher_weight_decay,
                         lr_step=preset.teacher_lr_step, seed=1, device=device,
                         progress=progress)
    start = time.perf_counter()
    history = fit(model, data, config)
    wall = time.perf_counter() - start
    save_model(path, model, preset.teacher_model, data.num_classes, data.in_channels,
               data.image_size, dataset=preset.dataset, preset=preset.name)
    run = _run_config(preset, "teacher", "ce", preset.teacher_model, 1, config, None, None)
    save_record(path.with_name("1.json"), make_record(run, history, pick_device(device), wall))
    return load_model(path, pick_device(device))


def teacher_logits(teacher: torch.nn.Module, data: Dataset,
                   device: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits on (train, test): two (N, classes) float32 tensors, on the CPU."""
    dev = pick_device(device)
    teacher = teacher.to(dev).eval()
    return tuple(predict(teacher, split.images.to(dev)).cpu() for split in (data.train, data.test))


def student_path(preset: str | Preset, experiment: str, seed: int,
                 root: str | Path | None = None) -> Path:
    """Where a trained student is saved: ``<root>/<preset>/<experiment>/<seed>.pt``."""
    return result_path(preset, experiment, seed, root).with_suffix(".pt")


def train_student(preset: str | Preset, experiment: str | Experiment, seed: int, data: Dataset,
                  teacher: torch.nn.Module | None = None,
                  logits: tuple[torch.Tensor, torch.Tensor] | None = None,
                  device: str | None = None, epochs: int | None = None,
                  progress: bool = False) -> tuple[torch.nn.Module, pd.DataFrame, TrainConfig]:
    """Train one student (``experiment`` x ``seed``) with the preset's settings; writes nothing.

    logits: the teacher's (train, test) logits from :func:`teacher_logits`, reused by every run.
    ``epochs`` overrides the preset's. Returns the model, its history and its TrainConfig.
    """
    preset, experiment = get_preset(preset), get_experiment(experiment)
    objective = experiment.objective()
    if objective.needs_teacher and teacher is None:
        raise ValueError(f"experiment {experiment.name!r} needs the teacher")
    weight_decay = preset.ce_weight_decay if experiment.method == "ce" else preset.weight_decay
    config = TrainConfig(epochs=epochs or preset.epochs, batch_size=preset.batch_size,
                         lr=preset.lr, weight_decay=weight_decay, lr_step=preset.lr_step,
                         seed=seed, device=device, progress=progress)
    seed_everything(seed)  # the initial weights depend on the seed only, not on run order
    model = build_model(preset.student_model, data.num_classes, data.in_channels,
                        data.image_size)
    history = fit(model, data, config, objective, teacher if objective.needs_teacher else None,
                  logits if objective.needs_teacher else None)
    return model, history, config


def run_experiment(preset: str | Preset, experiment: str | Experiment, seed: int,
                   data: Dataset, teacher: torch.nn.Module | None = None,
                   logits: tuple[torch.Tensor, torch.Tensor] | None = None,
                   root: str | Path | None = None, device: str | None = None,
                   epochs: int | None = None, progress: bool = False) -> dict:
    """Train one student with :func:`train_student`, save it (:func:`student_path`) beside its
    record ``<seed>.json`` (:func:`result_path`); returns the record."""
    preset, experiment = get_preset(preset), get_experiment(experiment)
    start = time.perf_counter()
    model, history, config = train_student(preset, experiment, seed, data, teacher, logits,
                                           device, epochs, progress)
    wall = time.perf_counter() - start
    run = _run_config(preset, experiment.name, experiment.method, preset.student_model, seed,
                      config, experiment.objective().to_dict(), str(teacher_path(preset, root)))
    run["label"] = experiment.label
    record = make_record(run, history, pick_device(device), wall)
    save_model(student_path(preset, experiment.name, seed, root), model, preset.student_model,
               data.num_classes, data.in_channels, data.image_size, preset=preset.name,
               experiment=experiment.name, seed=seed)
    save_record(result_path(preset, experiment.name, seed, root), record)  # last: run is done
    return record


def plan(preset: str | Preset, experiments: list[str] | None = None,
         seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """The (experiment, seed) runs of a reproduction: main comparison with ``preset.seeds``,
    then the margin and temperature sweeps with ``preset.sweep_seeds`` (duplicates dropped)."""
    preset = get_preset(preset)
    if experiments is not None:
        unknown = [e for e in experiments if e not in EXPERIMENTS]
        if unknown:
            raise ValueError(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
        runs = [(e, s) for e in experiments for s in (seeds or preset.seeds)]
    else:
        runs = [(e, s) for e in MAIN for s in (seeds or preset.seeds)]
        runs += [(e, s) for e in SWEEPS for s in (seeds or preset.sweep_seeds)]
    return list(dict.fromkeys(runs))


def reproduce(preset: str | Preset = "quick", experiments: list[str] | None = None,
              seeds: list[int] | None = None, root: str | Path | None = None,
              device: str | None = None, data_root: str | Path | None = None,
              epochs: int | None = None, threads: int | None = None,
              log=print) -> list[Path]:
    """Run a preset end to end: teacher first (trained once, then reused), then every
    experiment x seed of :func:`plan` whose results file does not exist yet.

    Returns the results paths of all planned runs. ``log`` gets one line per run.
    ``threads`` (default ``preset.threads``) sets ``torch.set_num_threads`` for the runs; one
    thread is much faster than two on a CPU shared with other jobs.
    """
    preset = get_preset(preset)
    if threads or preset.threads:
        torch.set_num_threads(threads or preset.threads)
    runs = plan(preset, experiments, seeds)
    data = load_data(preset, data_root)
    start = time.perf_counter()
    had_teacher = teacher_path(preset, root).is_file()
    teacher = train_teacher(preset, data, root, device)
    log(f"[{preset.name}] teacher {'loaded' if had_teacher else 'trained'}: "
        f"{teacher_path(preset, root)} ({time.perf_counter() - start:.1f} s)")
    logits = None
    paths = []
    for i, (name, seed) in enumerate(runs, 1):
        path = result_path(preset, name, seed, root)
        paths.append(path)
        if path.is_file():
            log(f"[{preset.name}] {i}/{len(runs)} {name} seed {seed}: exists, skipped")
            continue
        if logits is None:
            logits = teacher_logits(teacher, data, device)
        record = run_experiment(preset, name, seed, data, teacher, logits, root, device, epochs)
        final = record["final"]
        log(f"[{preset.name}] {i}/{len(runs)} {name} seed {seed}: test acc "
            f"{final.get('test_acc', float('nan')):.4f} ({record['wall_seconds']:.1f} s)")
    return paths


def teacher_accuracy(preset: str | Preset, root: str | Path | None = None) -> float | None:
    """The final test accuracy of the preset's saved teacher, or None if not trained yet."""
    path = teacher_path(preset, root).with_name("1.json")
    return load_record(path)["final"]["test_acc"] if path.is_file() else None


def load_or_train_student(preset: str | Preset, experiment: str, data: Dataset,
                          teacher: torch.nn.Module, seed: int = 1, epochs: int | None = None,
                          root: str | Path | None = None, device: str | None = None,
                          log=print) -> torch.nn.Module:
    """The student of ``experiment`` (a name of :data:`EXPERIMENTS`), loaded from
    :func:`student_path` if saved, else trained with the preset's settings
    (:func:`train_student`) for at most ``epochs`` epochs (None: the preset's; only a run of
    the preset's length is saved). Returned in eval mode."""
    spec = get_preset(preset)
    path = student_path(spec, experiment, seed, root)
    if path.is_file():
        log(f"{experiment}: loaded {path}")
        return load_model(path, device or "cpu")
    epochs = min(epochs or spec.epochs, spec.epochs)
    model, history, _ = train_student(spec, experiment, seed, data, teacher, device=device,
                                      epochs=epochs)
    log(f"{experiment}: trained {epochs} epochs, test accuracy "
        f"{history['test_acc'].iloc[-1]:.3f}")
    if epochs == spec.epochs:
        save_model(path, model, spec.student_model, data.num_classes, data.in_channels,
                   data.image_size, dataset=spec.dataset, preset=spec.name,
                   experiment=experiment, seed=seed)
    return model.eval()
