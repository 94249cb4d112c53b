"""The paper's experiments as data, and the functions that run them.

A *preset* fixes the scale (dataset, models, epochs, seeds); an *experiment* is a named method
with its settings (e.g. ``kd-t4`` = Hinton KD at T = 4). :func:`reproduce` trains the preset's
teacher first (or loads it), computes its logits once, then trains every experiment x seed,
skipping runs whose results file already exists. Every run writes
``<results root>/<preset>/<experiment>/<seed>.json`` (see :mod:`tkd.results`).

The results root is ``$TKD_RESULTS`` if set, else ``results/`` of the project folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pandas as pd
import torch

from tkd.checkpoint import load_model, safe_load, save_model
from tkd.data import Dataset, load_dataset
from tkd.files import atomic_write_json, run_lock
from tkd.live import EpochLog
from tkd.losses import METHODS, ObjectiveConfig, method_config
from tkd.models import build_model
from tkd.provenance import code_changes, code_fingerprint, equivalent_code, load_equivalences
from tkd.results import (
    RecordError,
    check_record,
    environment_info,
    file_sha256,
    load_record,
    make_record,
    provenance,
    record_fault,
    save_record,
)
from tkd.train import (
    NonFiniteLossError,
    TrainConfig,
    fit,
    pick_device,
    predict,
    seed_everything,
)


@dataclass(frozen=True)
class Experiment:
    """One trained student: a method of :data:`tkd.losses.METHODS` with overrides."""

    name: str
    method: str
    label: str
    overrides: dict = field(default_factory=dict)
    weight_decay: float | None = None  # None: the preset's (0.01 for ce, 0.007 otherwise)
    lr: float | None = None  # None: the preset's

    def objective(self):
        """The :class:`tkd.losses.ObjectiveConfig` of this experiment."""
        return method_config(self.method, **self.overrides)


def _experiments(*items: Experiment) -> dict[str, Experiment]:
    return {e.name: e for e in items}


MAIN = _experiments(
    Experiment("ce", "ce", "student alone (CE, wd 0.01)"),
    Experiment("ce-wd0.007", "ce", "student alone (CE, wd 0.007)", weight_decay=0.007),
    Experiment("logit-mse", "logit-mse", "Ba & Caruana (logit MSE alone)"),
    Experiment("logit-mse-lr0.001", "logit-mse", "Ba & Caruana (logit MSE alone), lr 0.001",
               lr=0.001),
    Experiment("ce-mse", "ce-mse", "CE + logit MSE"),
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
"""The main comparison: the student alone (at the authors' weight decay 0.01 and at the
distillation runs' 0.007, so that one baseline differs from them only in its loss), Ba &
Caruana's logit regression (at the paper's learning rate and at 0.001, where the MSE to a
strong teacher's raw logits does not blow up the student; its 0.003 rung is in
:data:`LR_SWEEP`, and the verdict takes the rate chosen on validation), Hinton KD, and the
paper's pair and triplet losses; the batch-mined negatives are an addition of this package."""

HEADLINE = ["ce", "kd-t4", "triplet", "triplet-kd", "triplet-batch-random",
            "triplet-batch-hard", "triplet-batch-semihard"]
"""Experiments run with ``Preset.headline_seeds`` (the others with ``Preset.seeds``)."""

BASELINES = ["ce", "ce-wd0.007", "logit-mse", "logit-mse-lr0.001", "ce-mse", "kd-t1", "kd-t4"]
TRIPLET = ["pair", "triplet", "triplet-kd", "triplet-batch-random", "triplet-batch-hard",
           "triplet-batch-semihard"]
MINED = ["triplet-batch-random", "triplet-batch-hard", "triplet-batch-semihard"]
QUICKSTART = ["ce", "kd-t4", "triplet"]
LESSON = ["ce-wd0.007", "kd-t4", "triplet", "triplet-batch-semihard"]
"""The lesson-sized live run (preset ``lesson``): the student alone at the distilled students'
weight decay, Hinton KD, the paper's triplet and the best mined triplet."""

MARGINS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
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


GENERALITY = _experiments(
    Experiment("triplet-semihard-kd-t4", "triplet-kd",
               "semi-hard triplet + Hinton KD T=4 (CE + T^2 KL + 2 triplet, m=5)",
               {"temperature": 4.0, "negatives": "batch-semihard"}),
)
"""Is "mined triplet > Hinton KD" general? The semi-hard triplet and Hinton KD at T = 4 in one
objective (weights 1 CE, 1 KD, 2 triplet), to test against both parents; the other student
(``student-2022``, with BatchNorm) is the preset ``fashion-bn``."""

HINT_WEIGHTS = (METHODS["hint"]["hint_weight"], 10.0, 1.0)
PKT_WEIGHTS = (METHODS["pkt"]["pkt_weight"], 100.0)
"""Weight grids: each method's published weight (:data:`tkd.losses.METHODS`) first."""


def hint_experiment(weight: float) -> Experiment:
    """The FitNets hint at ``weight``: ``hint`` at RepDistiller's 100, else ``hint-w<weight>``."""
    name = "hint" if weight == HINT_WEIGHTS[0] else f"hint-w{_number(weight)}"
    return Experiment(name, "hint", f"FitNets hint (CE + {_number(weight)} MSE of a linear "
                                    f"regressor, embeddings)", {"hint_weight": weight})


def pkt_experiment(weight: float) -> Experiment:
    """PKT at ``weight``: ``pkt`` at RepDistiller's 30000 / 64 = 468.75, else ``pkt-w<weight>``."""
    name = "pkt" if weight == PKT_WEIGHTS[0] else f"pkt-w{_number(weight)}"
    return Experiment(name, "pkt", f"PKT (CE + {_number(weight)} KL of cosine similarities, "
                                   f"embeddings)", {"pkt_weight": weight})


RELATIONS = _experiments(
    Experiment("rkd", "rkd", "RKD (CE + 25 distance + 50 angle, embeddings)"),
    Experiment("rkd-logits", "rkd", "RKD on logits (CE + 25 distance + 50 angle)",
               {"relation_space": "logits"}),
    *(pkt_experiment(w) for w in PKT_WEIGHTS),
    *(hint_experiment(w) for w in HINT_WEIGHTS),
)
"""The relation- and feature-based methods beside the paper's triplet, on the 128-d
embeddings before the classifier (and RKD also on the logits, the triplet's space), with
RepDistiller's weights (see :data:`tkd.losses.METHODS`). Two published weights fail this plain
student on some seeds: the hint's 100 drives it to chance (its ReLUs die), and so does PKT's
468.75 on one Fashion seed of three (in the first epoch). Their weights are therefore chosen on
validation from ``HINT_WEIGHTS`` and ``PKT_WEIGHTS``; run with ``preset.headline_seeds``."""
HINT_GRID = [hint_experiment(w).name for w in HINT_WEIGHTS]
PKT_GRID = [pkt_experiment(w).name for w in PKT_WEIGHTS]
WEIGHT_GRIDS = {"pkt": PKT_GRID, "hint": HINT_GRID}
"""Per method whose weight is chosen on validation, its experiments over the weight grid."""

DKD_BETAS = (8.0, 4.0, 2.0, 1.0)
LS_MARGINS = (1.0, 0.5, 2.0)


def dkd_experiment(beta: float) -> Experiment:
    """DKD (CE + DKD, alpha 1, T = 4, warm-up over 20/240 of the schedule) at NCKD weight
    ``beta``: ``dkd`` at the published 8, else ``dkd-b<beta>``."""
    name = "dkd" if beta == DKD_BETAS[0] else f"dkd-b{_number(beta)}"
    return Experiment(name, "dkd", f"DKD (CE + TCKD + {_number(beta)} NCKD, T=4)",
                      {"dkd_beta": beta})


def ls_triplet_experiment(base: str, margin: float) -> Experiment:
    """``base`` (``triplet`` or ``triplet-batch-semihard``) on standardized logits at
    ``margin``: ``<base>-ls`` at margin 1 (see ``triplet-ls`` in :data:`tkd.losses.METHODS`),
    else ``<base>-ls-m<margin>``."""
    name = f"{base}-ls" + ("" if margin == LS_MARGINS[0] else f"-m{_number(margin)}")
    negatives = MAIN[base].overrides.get("negatives", "sample")
    return Experiment(name, "triplet-ls", f"{MAIN[base].label}, standardized logits, "
                                          f"margin {_number(margin)}",
                      {"margin": margin, "negatives": negatives})


MODERN = _experiments(
    *(dkd_experiment(b) for b in DKD_BETAS),
    Experiment("dist", "dist", "DIST (CE + inter + intra correlation, T=1)"),
    Experiment("dist-t4", "dist", "DIST (CE + inter + intra correlation, T=4)",
               {"temperature": 4.0}),
    Experiment("kd-ls", "kd-ls", "Hinton KD, standardized logits (0.1 CE + 9 KD, T=2)"),
    Experiment("kd-ls-w1", "kd-ls", "Hinton KD, standardized logits (CE + KD, T=2)",
               {"ce_weight": 1.0, "kd_weight": 1.0}),
    *(ls_triplet_experiment(b, m) for b in ("triplet", "triplet-batch-semihard")
      for m in LS_MARGINS),
)
"""Today's logit distillation beside the triplet: DKD (Zhao et al., CVPR 2022), DIST (Huang
et al., NeurIPS 2022) and logit standardization (Sun et al., CVPR 2024) applied to Hinton KD
and to the paper's and the semi-hard triplet. Each starts from its published setting; the
settings of :data:`MODERN_GRIDS` are chosen on validation, run with ``preset.headline_seeds``
at the chosen one and 1-3 seeds elsewhere."""
MODERN_GRIDS = {
    "dkd": [dkd_experiment(b).name for b in DKD_BETAS],
    "dist": ["dist", "dist-t4", "dist-w2", "dist-t4-w2"],
    "kd-ls": ["kd-ls", "kd-ls-w1"],
    "triplet-ls": [ls_triplet_experiment("triplet", m).name for m in LS_MARGINS],
    "triplet-batch-semihard-ls": [ls_triplet_experiment("triplet-batch-semihard", m).name
                                  for m in LS_MARGINS],
}
"""Per method of :data:`MODERN`, its candidate settings, the published one first (for DKD the
NCKD weight beta, DIST its temperature, KD+LS its loss weights, the standardized triplets
their margin)."""
MODERN_HEADS = ["dkd-b4", "dist-t4", "kd-ls", "triplet-ls-m2", "triplet-batch-semihard-ls"]
"""Per :data:`MODERN_GRIDS` method, the setting validation chose at seed 1 on Fashion-MNIST
(the committed records; ``tests/test_experiments.py`` checks it): the one :func:`plan` runs
with ``preset.headline_seeds``, as the grids' other settings run with ``preset.sweep_seeds``."""

LR_RATES = (0.01, 0.003, 0.001)


def lr_experiment(family: str, lr: float) -> Experiment:
    """The main comparison's ``family`` (``logit-mse`` or ``ce-mse``) at learning rate ``lr``:
    the main experiment itself at the presets' 0.01 (and ``logit-mse-lr0.001``), else
    ``<family>-lr<lr>``."""
    name = family if lr == 0.01 else f"{family}-lr{_number(lr)}"
    if name in MAIN:
        return MAIN[name]
    base = MAIN[family]
    return Experiment(name, base.method, f"{base.label}, lr {_number(lr)}", base.overrides,
                      lr=lr)


LR_SWEEP = _experiments(*(lr_experiment(f, lr) for f in ("logit-mse", "ce-mse")
                          for lr in LR_RATES if lr_experiment(f, lr).name not in MAIN))
"""Ba & Caruana's learning-rate grid beyond the main comparison: run by ``reproduce`` by
default (with ``preset.seeds``, like the main comparison), not by ``--main-only``."""
LR_GRID = {f: [lr_experiment(f, lr).name for lr in LR_RATES] for f in ("logit-mse", "ce-mse")}
"""Per family, its experiments at the learning rates of ``LR_RATES`` (0.01, 0.003, 0.001):
the one with the best mean validation accuracy over seeds is the family's chosen rate."""

SWEEPS = _experiments(*(margin_experiment(m) for m in MARGINS),
                      *(temperature_experiment(t) for t in TEMPERATURES))

AUTHOR_SETTINGS = _experiments(
    Experiment("kd-t4-w0.9", "kd", "Hinton KD, T=4, 0.1 CE + 0.9 KD (mdistiller, RepDistiller)",
               {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}),
    Experiment("dist-w2", "dist", "DIST (CE + 2 x (inter + intra correlation), T=1)",
               {"dist_weight": 2.0}),
    Experiment("dist-t4-w2", "dist", "DIST (CE + 2 x (inter + intra correlation), T=4)",
               {"temperature": 4.0, "dist_weight": 2.0}),
    Experiment("triplet-self", "triplet-self",
               "teacher-free control: CE + 2 triplet anchored on the student (semi-hard, m=5)"),
)
"""Settings the fair comparison adds: Hinton KD as the KD benchmarks train it (0.1 CE + 0.9 KD
at T = 4), DIST at the weight 2 of its released configurations (at T = 1 and 4), and the
teacher-free control of the mined triplet (``triplet-self``: no teacher anywhere in the run)."""

SETTING_GRIDS = {
    "kd": [temperature_experiment(t).name for t in TEMPERATURES] + ["kd-t4-w0.9"],
    "triplet": [margin_experiment(m).name for m in MARGINS],
    "mined": list(MINED),
    "dkd": [dkd_experiment(b).name for b in DKD_BETAS],
    "dist": ["dist", "dist-t4", "dist-w2", "dist-t4-w2"],
}
"""Per tuned method, its candidate settings (the authors' among them), chosen on validation
before its learning rate: Hinton KD's temperature and weights, the paper's triplet's margin,
the mined triplet's miner, DKD's NCKD weight, DIST's temperature and weight."""
TUNED_METHODS = {"student": "ce-wd0.007", **{m: m for m in SETTING_GRIDS}}
"""The methods whose learning rate is tuned, each named by its setting grid (the student
alone has one setting)."""
TUNED_RATES = (0.003, 0.01, 0.03)
"""The learning-rate grid every tuned method gets, after its setting is chosen."""


def rate_experiment(setting: str, lr: float) -> Experiment:
    """``setting`` (an experiment run at the preset's rate 0.01) at learning rate ``lr``:
    itself at 0.01, else ``<setting>-lr<lr>``."""
    base = EXPERIMENTS[setting]
    if lr == 0.01:
        return base
    return replace(base, name=f"{base.name}-lr{_number(lr)}",
                   label=f"{base.label}, lr {_number(lr)}", lr=lr)


EXPERIMENTS: dict[str, Experiment] = {**MAIN, **LR_SWEEP, **SWEEPS, **GENERALITY, **RELATIONS,
                                      **MODERN, **AUTHOR_SETTINGS}
RATE_BASES = list(dict.fromkeys([TUNED_METHODS["student"], "triplet-self",
                                 *(n for grid in SETTING_GRIDS.values() for n in grid)]))
RATES = _experiments(*(rate_experiment(n, lr) for n in RATE_BASES for lr in TUNED_RATES
                       if lr != 0.01))
"""Every setting a tuned method may choose (and the teacher-free control) at the rates of
:data:`TUNED_RATES` other than 0.01: ``<setting>-lr0.003``, ``<setting>-lr0.03``."""
EXPERIMENTS.update(RATES)

SWEEP_NAMES = {"margin": [margin_experiment(m).name for m in MARGINS],
               "temperature": [temperature_experiment(t).name for t in TEMPERATURES]}


@dataclass(frozen=True)
class Preset:
    """The scale of a reproduction. Student optimiser defaults are the paper's (SGD 0.01,
    momentum 0.9, batch 100, weight decay 0.007, 0.01 for the student alone); the paper's
    x0.1 step schedule is compressed to ``lr_step`` within ``epochs``.
    ``validation``: training images held out (class-stratified, seed 0, the same for every
    run) to choose on; ``subset``: a class-balanced subset of the rest (seed 0)."""

    name: str
    dataset: str
    epochs: int
    lr_step: int
    seeds: tuple[int, ...]
    headline_seeds: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    validation: int
    teacher_epochs: int
    teacher_lr_step: int
    teacher_lr: float = 0.01
    teacher_augment: bool = False
    teacher_weight_decay: float = 5e-4
    teacher_model: str = "paper-teacher"
    student_model: str = "paper-student"
    subset: int | None = None
    batch_size: int = 100
    lr: float = 0.01
    weight_decay: float = 0.007
    ce_weight_decay: float = 0.01
    precision: str = "fp32"
    threads: int | None = None
    description: str = ""
    teacher_preset: str | None = None  # share another preset's saved teacher (same data)
    mse_lr: float | None = None  # Ba & Caruana's rate in the main comparison, if not 0.01
    device: str = "cpu"  # the kind of device every student record of the preset comes from


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "quick", "digits", epochs=85, lr_step=60, seeds=(1, 2, 3), headline_seeds=(1, 2, 3),
        sweep_seeds=(1, 2, 3), validation=300, teacher_epochs=40, teacher_lr_step=20,
        threads=1, mse_lr=0.003,
        description="sklearn's 8x8 digits (1138 train / 300 validation / 359 test images), "
                    "85 student epochs (x0.1 at 60: the student alone needs 25-40 epochs at "
                    "lr 0.01 to leave chance, 11 steps an epoch), 3 seeds; a few minutes on a "
                    "CPU"),
    "fashion": Preset(
        "fashion", "fashion-mnist", epochs=30, lr_step=10, seeds=(1, 2, 3),
        headline_seeds=(1, 2, 3, 4, 5), sweep_seeds=(1, 2, 3), validation=5000,
        teacher_epochs=30, teacher_lr_step=12, teacher_lr=0.05, teacher_augment=True,
        description="Fashion-MNIST: 55,000 train / 5,000 validation / 10,000 test images, "
                    "30 student epochs (x0.1 at 10, 20), 5 seeds for the headline methods and "
                    "3 for the rest; a GPU for an hour-scale grid, days on a 2-core CPU"),
    "paper": Preset(
        "paper", "cifar10", epochs=500, lr_step=100, seeds=(1, 2, 3),
        headline_seeds=(1, 2, 3), sweep_seeds=(1, 2, 3), validation=5000,
        teacher_epochs=200, teacher_lr_step=60, teacher_lr=0.05, teacher_augment=True,
        description="CIFAR-10, the paper's full protocol (500 epochs, batch 100, SGD 0.01/0.9, "
                    "wd 0.007, StepLR 100 x0.1); needs a GPU and internet"),
}


def _longer(base: Preset, factor: int) -> Preset:
    """``base`` with every phase of its step schedule ``factor`` times as long but the last,
    which keeps half a phase (StepLR every ``factor * lr_step`` epochs); same teacher."""
    step = factor * base.lr_step
    epochs = 2 * step + step // 2
    return replace(base, name=f"{base.name}-{factor}x", epochs=epochs, lr_step=step,
                   seeds=(1, 2, 3), headline_seeds=(1, 2, 3), sweep_seeds=(1, 2, 3),
                   teacher_preset=base.name,
                   description=f"{base.name} with a {factor}x longer schedule: {epochs} epochs, "
                               f"x0.1 at {step} and {2 * step}; {base.name}'s teacher")


PRESETS.update({p.name: p for p in (_longer(PRESETS["fashion"], k) for k in (2, 4))})
PRESETS["fashion-bn"] = replace(
    PRESETS["fashion"], name="fashion-bn", student_model="student-2022", seeds=(1, 2, 3),
    headline_seeds=(1, 2, 3), sweep_seeds=(1, 2, 3), teacher_preset="fashion",
    description="the fashion recipe with the 2022 student (3 convs with BatchNorm, channels "
                "16, 32, 64, pooled to 4x4) and the fashion teacher")
PRESETS["fashion-h200"] = replace(
    PRESETS["fashion"], name="fashion-h200", teacher_preset="fashion", device="cuda",
    description="the fashion recipe with every student trained on an NVIDIA H200 (CUDA): kept "
                "apart from the CPU set of fashion, so that no comparison mixes devices; the "
                "fashion teacher")
PRESETS["lesson"] = replace(
    PRESETS["fashion"], name="lesson", subset=10_000, seeds=(1, 2, 3), headline_seeds=(1, 2, 3),
    sweep_seeds=(1, 2, 3), teacher_preset="fashion",
    description="a lesson-sized Fashion-MNIST run: the fashion recipe (30 epochs, x0.1 at 10, "
                "20) on 10,000 of its 55,000 training images, same validation and test sets and "
                "the same teacher; the four LESSON methods of one seed take about 7 min on an "
                "idle 2-core CPU with --jobs 2 (35 min with other jobs sharing the cores)")


def get_preset(preset: str | Preset) -> Preset:
    """A :class:`Preset` by name (or the preset itself); ``ValueError`` for unknown names.

    The functions a user or a notebook calls with a preset's name (:func:`load_data`,
    :func:`result_path`, :func:`teacher_path`, :func:`train_teacher`, :func:`train_student`,
    :func:`plan`, :func:`load_student`, ...) resolve it here once; the internals of a run they
    call (:func:`teacher_owner`, :func:`teacher_config`, :func:`student_config`,
    :func:`expected_run`, :func:`run_experiment`, :func:`stale_reason`) take the
    :class:`Preset` itself."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def main_experiments(preset: str | Preset) -> list[str]:
    """The main comparison of a preset, as ``--main-only`` (and ``make reproduce``) trains it:
    :data:`MAIN`, except that where the preset sets ``mse_lr`` (the rate of Ba & Caruana's
    logit regression chosen on validation from :data:`LR_GRID` among the rates below 0.01) that
    run takes the place of the one at 0.01, which stays in the learning-rate grid. On digits
    the rate 0.01 sits at the edge of divergence: a rounding difference decided whether a seed
    ends at chance on one CPU model and not on another, and validation does not separate it
    from 0.003 by more than one image per seed (``tests/test_experiments.py`` checks both on
    the records)."""
    preset = get_preset(preset)
    if preset.mse_lr is None:
        return list(MAIN)
    chosen = lr_experiment("logit-mse", preset.mse_lr).name
    return list(dict.fromkeys(chosen if n == "logit-mse" else n for n in MAIN))


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
    """Where the preset's teacher checkpoint lives: ``<root>/<preset>/teacher/model.pt``
    (``<preset>`` being ``teacher_preset`` for a preset that shares another's teacher)."""
    preset = get_preset(preset)
    return results_root(root) / (preset.teacher_preset or preset.name) / "teacher" / "model.pt"


def load_data(preset: str | Preset, data_root: str | Path | None = None) -> Dataset:
    """The preset's dataset on the CPU: ``preset.validation`` training images held out as
    the validation split, the rest cut to ``preset.subset`` if set."""
    preset = get_preset(preset)
    data = load_dataset(preset.dataset, data_root).with_validation(preset.validation, seed=0)
    if preset.subset:
        data.train = data.train.subset(preset.subset, seed=0)
    return data


def _relative(path: Path, root: str | Path | None) -> str:
    """``path`` relative to the results root (records never hold absolute machine paths)."""
    return Path(path).relative_to(results_root(root)).as_posix()


def teacher_config(preset: Preset, device: str | None = None) -> TrainConfig:
    """The teacher's recipe: SGD (momentum 0.9, wd 5e-4) with the preset's step schedule,
    on-device random crop and flip where the preset asks for them, seed 1."""
    return TrainConfig(epochs=preset.teacher_epochs, batch_size=preset.batch_size,
                       lr=preset.teacher_lr, weight_decay=preset.teacher_weight_decay,
                       lr_step=preset.teacher_lr_step, augment=preset.teacher_augment, seed=1,
                       precision=preset.precision, device=device, progress=False)


def train_teacher(preset: str | Preset, data: Dataset | None = None,
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
    preset = get_preset(preset)
    shared = preset.teacher_preset is not None
    preset = teacher_owner(preset)
    path = teacher_path(preset, root)
    if path.is_file() and not force:
        _check_teacher_file(path)
        return load_model(path, pick_device(device))
    data = load_data(preset) if shared or data is None else data
    run = run_config(preset, "teacher", seed=1, train=teacher_config(preset),
                     objective=None, model=preset.teacher_model)
    with run_lock(path.with_name("1.json")):
        work = _teacher_work(path.with_name("1.run"), {
            "config": run, "data": data.identity(), "code": code_fingerprint()})
        seed_everything(1)  # the initial weights depend on the seed only
        model = build_model(preset.teacher_model, data.num_classes, data.in_channels,
                            data.image_size)
        config = replace(teacher_config(preset, device), progress=progress,
                         checkpoint_dir=str(work / "checkpoints"), resume=True)
        start = time.perf_counter()
        history = fit(model, data, config)
        wall = time.perf_counter() - start
        if history.attrs.get("interrupted"):  # nothing half-done is written
            raise KeyboardInterrupt
        save_model(path, model, preset.teacher_model, data.num_classes, data.in_channels,
                   data.image_size, dataset=preset.dataset, preset=preset.name)
        origin = {**provenance(data, None, root), "model_sha256": file_sha256(path)}
        record = make_record(run, history, pick_device(device), wall, origin)
        save_record(path.with_name("1.json"), record)  # last: the teacher is done
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
    (:func:`tkd.results.record_fault`) and its place (:func:`place_fault`);
    :class:`tkd.results.RecordError` naming the file, the fault and the fix otherwise."""
    record = check_record(load_record(path), path)
    fault = place_fault(path, record)
    if fault is not None:
        raise RecordError(f"{path} is refused: {fault}")
    return record


def teacher_logits(teacher: torch.nn.Module, data: Dataset,
                   device: str | None = None) -> tuple[torch.Tensor, ...]:
    """The teacher's logits on (train, test[, validation]): (N, classes) float32, on the CPU."""
    dev = pick_device(device)
    teacher = teacher.to(dev).eval()
    splits = [data.train, data.test] + ([data.validation] if data.validation else [])
    return tuple(predict(teacher, split.images.to(dev)).cpu() for split in splits)


def student_path(preset: str | Preset, experiment: str, seed: int,
                 root: str | Path | None = None) -> Path:
    """Where a trained student is saved: ``<root>/<preset>/<experiment>/<seed>.pt``."""
    return result_path(preset, experiment, seed, root).with_suffix(".pt")


def student_config(preset: Preset, experiment: str | Experiment, seed: int,
                   device: str | None = None, epochs: int | None = None) -> TrainConfig:
    """The TrainConfig of one student run with the preset's recipe."""
    experiment = get_experiment(experiment)
    weight_decay = experiment.weight_decay if experiment.weight_decay is not None else (
        preset.ce_weight_decay if experiment.method == "ce" else preset.weight_decay)
    return TrainConfig(epochs=epochs or preset.epochs, batch_size=preset.batch_size,
                       lr=experiment.lr or preset.lr, weight_decay=weight_decay,
                       lr_step=preset.lr_step,
                       seed=seed, precision=preset.precision, device=device, progress=False)


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


def train_student(preset: str | Preset, experiment: str | Experiment, seed: int, data: Dataset,
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
    preset, experiment = get_preset(preset), get_experiment(experiment)
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


def expected_run(preset: Preset, experiment: str, seed: int,
                 epochs: int | None = None) -> dict:
    """The ``config`` a current record of this run must hold."""
    spec = get_experiment(experiment)
    return run_config(preset, spec.name, seed, student_config(preset, spec, seed, None, epochs),
                      spec.objective().to_dict(), preset.student_model, spec.label)


def teacher_owner(preset: Preset) -> Preset:
    """The preset whose teacher ``preset`` uses: the one named by ``teacher_preset``, else
    ``preset`` itself (its recipe and data split decide whether the shared teacher is current)."""
    return get_preset(preset.teacher_preset) if preset.teacher_preset else preset


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


def _changed_settings(config: dict, want: dict) -> list[str]:
    kinds = {"train": TrainConfig, "objective": ObjectiveConfig}
    return [k for k in want if (_fields_differ(config.get(k), want[k], kinds[k]) if k in kinds
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
    (unchanged, or vouched for by ``<results>/code-equivalence.json``)."""
    recorded = origin.get("code")
    if not recorded:
        return "it was recorded before code fingerprints"
    today = code_fingerprint()
    changed = code_changes(recorded, today)
    if not changed or equivalent_code(recorded, today, _equivalences(root)):
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
    start = time.perf_counter()
    try:
        model, history, config = train_student(preset, experiment, seed, data, teacher, logits,
                                               device, epochs, progress, work / "checkpoints",
                                               log)
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
    wall = time.perf_counter() - start
    run = expected_run(preset, experiment.name, seed, epochs)
    tpath = teacher_path(preset, root)
    run["teacher"] = _relative(tpath, root) if experiment.objective().needs_teacher else None
    weights = save_model(student_path(preset, experiment.name, seed, root), model,
                         preset.student_model, data.num_classes, data.in_channels,
                         data.image_size, preset=preset.name, experiment=experiment.name,
                         seed=seed)
    origin = {**provenance(data, tpath if run["teacher"] else None, root),
              "model_sha256": file_sha256(weights)}  # the record vouches for these weights
    record = make_record(run, history, pick_device(device), wall, origin)
    save_record(path, record)  # last: the run is done
    shutil.rmtree(work, ignore_errors=True)
    return record


def failed_path(path: Path) -> Path:
    """``<seed>.failed.json`` beside a run's record: the error of a run that diverged."""
    return path.with_name(path.stem + ".failed.json")


def plan(preset: str | Preset, experiments: list[str] | None = None,
         seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """The (experiment, seed) runs of a reproduction: the main comparison (headline
    experiments with ``preset.headline_seeds``, the others with ``preset.seeds``), then the
    learning-rate grid, the relation-based methods, the margin and temperature sweeps and
    today's logit KD (:data:`MODERN`: each method's setting chosen on validation,
    :data:`MODERN_HEADS`, with ``preset.headline_seeds``, its other candidates with
    ``preset.sweep_seeds``; duplicates
    dropped). Runs are
    ordered seed by seed, so that a grid stopped early holds whole seeds of every method."""
    preset = get_preset(preset)

    def seeds_of(name: str) -> tuple[int, ...]:
        if seeds:
            return tuple(seeds)
        if name in HEADLINE or name in RELATIONS or name in MODERN_HEADS:
            return preset.headline_seeds
        return preset.seeds if name in MAIN or name in LR_SWEEP else preset.sweep_seeds

    if experiments is not None:
        unknown = [e for e in experiments if e not in EXPERIMENTS]
        if unknown:
            raise ValueError(f"unknown experiments {unknown}; choose from {', '.join(EXPERIMENTS)}")
        names = list(experiments)
    else:
        names = [*MAIN, *LR_SWEEP, *RELATIONS, *SWEEPS, *MODERN, *AUTHOR_SETTINGS]
    main = [n for n in names if n in MAIN]
    groups = [main, [n for n in names if n not in MAIN]]
    runs = [(e, s) for group in groups
            for s in sorted({s for e in group for s in seeds_of(e)})
            for e in group if s in seeds_of(e)]
    return list(dict.fromkeys(runs))


def teacher_accuracy(preset: str | Preset, root: str | Path | None = None) -> float | None:
    """The final test accuracy of the preset's saved teacher, or None if not trained yet."""
    path = teacher_path(preset, root).with_name("1.json")
    return read_record(path)["final"]["test_acc"] if path.is_file() else None


def saved_student_reason(preset: str | Preset, experiment: str, seed: int = 1,
                         root: str | Path | None = None,
                         data_identity: dict | None = None) -> str | None:
    """Why the saved student ``<seed>.pt`` cannot be used, None when its record ``<seed>.json``
    is current (:func:`stale_reason`: settings, the saved teacher's sha256, data, code)."""
    spec = get_preset(preset)
    record_path = result_path(spec, experiment, seed, root)
    if not student_path(spec, experiment, seed, root).is_file():
        return "it was never saved"
    if not record_path.is_file():
        return f"it has no record {record_path.name} to check it against"
    uses_teacher = get_experiment(experiment).objective().needs_teacher
    saved_teacher = teacher_path(spec, root)
    sha = file_sha256(saved_teacher) if uses_teacher and saved_teacher.is_file() else None
    if uses_teacher and sha is None:
        return "its teacher is not saved"
    record = read_record(record_path)
    weights = (record.get("provenance") or {}).get("model_sha256")
    if weights is None:
        return (f"its record {record_path.name} names no sha256 of its weights (made before "
                "weights were recorded): run `python -m tkd backfill-weights` where the .pt is "
                "known to be the record's")
    if file_sha256(student_path(spec, experiment, seed, root)) != weights:
        return (f"its weights {record_path.stem}.pt are not the ones its record "
                f"{record_path.name} names (sha256 differs): the file was replaced or damaged")
    return stale_reason(record, spec, experiment, seed, sha, data_identity=data_identity,
                        root=root)


def reproduce_hint(spec: Preset, experiment: str, seed: int) -> str:
    """The sentence that tells a user how to (re)make ``experiment`` x ``seed`` of ``spec``."""
    return (f"run `python -m tkd reproduce --preset {spec.name} --experiments {experiment} "
            f"--seeds {seed}`")


def load_student(preset: str | Preset, experiment: str, seed: int = 1,
                 root: str | Path | None = None, device: str | None = None,
                 data_identity: dict | None = None) -> torch.nn.Module:
    """The saved student of ``experiment`` x ``seed`` in eval mode, only if its record is
    current (:func:`saved_student_reason`; ``data_identity`` defaults to the preset's data
    loaded now); ``ValueError`` saying why and how to fix it otherwise."""
    spec = get_preset(preset)
    identity = data_identity if data_identity is not None else load_data(spec).identity()
    reason = saved_student_reason(spec, experiment, seed, root, identity)
    if reason is not None:
        raise ValueError(f"the saved {spec.name}/{experiment} seed {seed} cannot be used: "
                         f"{reason}; {reproduce_hint(spec, experiment, seed)}")
    return load_model(student_path(spec, experiment, seed, root), device or "cpu")


def load_or_train_student(preset: str, experiment: str, data: Dataset, teacher: torch.nn.Module,
                          seed: int = 1, epochs: int | None = None,
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
    spec = get_preset(preset)
    epochs = min(epochs or spec.epochs, spec.epochs)
    path = student_path(spec, experiment, seed, root)
    reason = saved_student_reason(spec, experiment, seed, root, data.identity())
    if reason is None:
        log(f"{experiment}: loaded {path.name}")
        return load_model(path, device or "cpu")
    too_large = max_train is not None and len(data.train) > max_train
    stale = path.is_file()
    if too_large or (stale and not (epochs == spec.epochs if retrain is None else retrain)):
        raise ValueError(f"the saved {spec.name}/{experiment} seed {seed} cannot be used: "
                         f"{reason}; {reproduce_hint(spec, experiment, seed)}"
                         + ("" if too_large else ", or pass retrain=True"))
    log(f"{experiment}: no usable saved student ({reason}); training it here")
    uses_teacher = get_experiment(experiment).objective().needs_teacher
    if save and epochs == spec.epochs and (not uses_teacher or teacher_path(spec, root).is_file()):
        record = run_experiment(spec, experiment, seed, data, teacher, root=root, device=device)
        log(f"{experiment}: trained {epochs} epochs, test accuracy "
            f"{record['final']['test_acc']:.3f}")
        return load_model(path, device or "cpu")
    model, history, _ = train_student(spec, experiment, seed, data, teacher, device=device,
                                      epochs=epochs)
    log(f"{experiment}: trained {epochs} epochs, test accuracy "
        f"{history['test_acc'].iloc[-1]:.3f}")
    return model.eval()


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
