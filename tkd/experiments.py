"""The paper's experiments and presets, as data.

A *preset* fixes the scale (dataset, models, epochs, seeds); an *experiment* is a named method
with its settings (e.g. ``kd-t4`` = Hinton KD at T = 4). Here also: a preset's data split
(:func:`load_data`), the recipes of its teacher and students (:func:`teacher_config`,
:func:`student_config`) and the runs of a reproduction (:func:`plan`). Training and loading
runs is :mod:`tkd.runs`; where records live and reading them, :mod:`tkd.records`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from tkd.data import Dataset, load_dataset
from tkd.objective import METHODS, method_config
from tkd.train import TrainConfig


@dataclass(frozen=True)
class Experiment:
    """One trained student: a method of :data:`tkd.objective.METHODS` with overrides."""

    name: str
    method: str
    label: str
    overrides: dict = field(default_factory=dict)
    weight_decay: float | None = None  # None: the preset's (0.01 for ce, 0.007 otherwise)
    lr: float | None = None  # None: the preset's

    def objective(self):
        """The :class:`tkd.objective.ObjectiveConfig` of this experiment."""
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
    Experiment("kd-t1", "kd", "Hinton KD (CE + KD, T=1)", {"temperature": 1.0}),
    Experiment("kd-t4", "kd", "Hinton KD (CE + KD, T=4)", {"temperature": 4.0}),
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
    t = _number(temperature)
    return Experiment(f"kd-t{t}", "kd", f"Hinton KD (CE + KD, T={t})", {"temperature": temperature})


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
"""Weight grids: each method's published weight (:data:`tkd.objective.METHODS`) first."""


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
RepDistiller's weights (see :data:`tkd.objective.METHODS`). Two published weights fail this plain
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
    ``margin``: ``<base>-ls`` at margin 1 (see ``triplet-ls`` in :data:`tkd.objective.METHODS`),
    else ``<base>-ls-m<margin>``."""
    name = f"{base}-ls" + ("" if margin == LS_MARGINS[0] else f"-m{_number(margin)}")
    negatives = MAIN[base].overrides.get("negatives", "sample")
    picked = "paper's sampled" if negatives == "sample" else negatives
    return Experiment(name, "triplet-ls", f"triplet on standardized logits, {picked} negatives "
                                          f"(CE + 2 triplet, m={_number(margin)})",
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
the one with the best validation accuracy at seed 1 (:func:`tkd.fair.best_on_validation`) is
the family's chosen rate."""

SWEEPS = _experiments(*(margin_experiment(m) for m in MARGINS),
                      *(temperature_experiment(t) for t in TEMPERATURES))

AUTHOR_SETTINGS = _experiments(
    Experiment("kd-t4-w0.9", "kd", "Hinton KD (0.1 CE + 0.9 KD, T=4; mdistiller, RepDistiller)",
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

    Called once where a preset's name comes in (a CLI command, a notebook's first cells, the
    grid's :func:`tkd.grid.reproduce`, :func:`tkd.figures.build_figures`); every function
    below them takes the :class:`Preset` itself."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[preset]


def main_experiments(preset: Preset) -> list[str]:
    """The main comparison of a preset, as ``--main-only`` (and ``make reproduce``) trains it:
    :data:`MAIN`, except that where the preset sets ``mse_lr`` (the rate of Ba & Caruana's
    logit regression chosen on validation from :data:`LR_GRID` among the rates below 0.01) that
    run takes the place of the one at 0.01, which stays in the learning-rate grid. On digits
    the rate 0.01 sits at the edge of divergence: a rounding difference decided whether a seed
    ends at chance on one CPU model and not on another, and validation does not separate it
    from 0.003 by more than one image per seed (``tests/test_experiments.py`` checks both on
    the records)."""
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


def teacher_owner(preset: Preset) -> Preset:
    """The preset whose teacher ``preset`` uses: the one named by ``teacher_preset``, else
    ``preset`` itself (its recipe and data split decide whether the shared teacher is current)."""
    return PRESETS[preset.teacher_preset] if preset.teacher_preset else preset


def load_data(preset: Preset, data_root: str | Path | None = None) -> Dataset:
    """The preset's dataset on the CPU: ``preset.validation`` training images held out as
    the validation split, the rest cut to ``preset.subset`` if set."""
    data = load_dataset(preset.dataset, data_root).with_validation(preset.validation, seed=0)
    if preset.subset:
        data.train = data.train.subset(preset.subset, seed=0)
    return data


def teacher_config(preset: Preset, device: str | None = None) -> TrainConfig:
    """The teacher's recipe: SGD (momentum 0.9, wd 5e-4) with the preset's step schedule,
    on-device random crop and flip where the preset asks for them, seed 1."""
    return TrainConfig(epochs=preset.teacher_epochs, batch_size=preset.batch_size,
                       lr=preset.teacher_lr, weight_decay=preset.teacher_weight_decay,
                       lr_step=preset.teacher_lr_step, augment=preset.teacher_augment, seed=1,
                       precision=preset.precision, device=device, progress=False)


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


def plan(preset: Preset, experiments: list[str] | None = None,
         seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """The (experiment, seed) runs of a reproduction: the main comparison (headline
    experiments with ``preset.headline_seeds``, the others with ``preset.seeds``), then the
    learning-rate grid, the relation-based methods, the margin and temperature sweeps and
    today's logit KD (:data:`MODERN`: each method's setting chosen on validation,
    :data:`MODERN_HEADS`, with ``preset.headline_seeds``, its other candidates with
    ``preset.sweep_seeds``; duplicates dropped). Runs are ordered seed by seed, so that a grid
    stopped early holds whole seeds of every method."""

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
