"""Figures built from results files alone (``results/<preset>/<experiment>/*.json``), and
:func:`build_figures`, which reads a preset's records once into one runs table
(:mod:`tkd.tables`) and writes every table and figure of it into ``figures/<preset>/``:

- ``comparison.md`` / ``comparison.csv``: final test accuracy (mean ± std over seeds), test
  accuracy at the best-validation epoch, final validation and train accuracy, how many runs
  meet the convergence rule, the device and the compute spent per experiment;
- ``paired.md`` / ``paired.csv``: the headline paired differences with 95 % t-intervals, and
  ``verdict.md``: the paper's claimed ordering read from those intervals;
- ``validation_curves.png``: validation accuracy per epoch of the main comparison;
- ``learning_curves.png``: total, classification and triplet loss, train and test accuracy per
  epoch (mean over seeds, band = ± std), the quantities the authors' code logs;
- ``margin_sweep.png`` / ``temperature_sweep.png`` (+ ``.csv``): accuracy vs. value, error bars
  = std over seeds.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.ticker

if "MPLBACKEND" not in os.environ and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tkd.experiments import (  # noqa: E402
    GENERALITY,
    LR_SWEEP,
    MAIN,
    MODERN,
    RELATIONS,
    SWEEP_NAMES,
    Preset,
    get_preset,
)
from tkd.fair import FAIR_PRESETS, selection_seeds, with_failures  # noqa: E402
from tkd.files import atomic_write_csv, atomic_write_text  # noqa: E402
from tkd.plots import colour_of, save_figure  # noqa: E402
from tkd.records import (  # noqa: E402
    history_frame,
    load_failures,
    load_records,
    project_root,
    results_root,
)
from tkd.tables import (  # noqa: E402
    beside_markdown,
    comparison_table,
    paired_markdown,
    paired_table,
    phase_markdown,
    phase_table,
    runs_frame,
    schedule_runs,
    stale_warning,
    sweep_frame,
    table_markdown,
)
from tkd.verdict import (  # noqa: E402
    STUDENT_ALONE,
    modern_frame,
    modern_summary,
    relations_frame,
    relations_markdown,
    schedule_frame,
    schedule_markdown,
    verdict_markdown,
)

CURVE_EXPERIMENTS = ["ce", "kd-t4", "triplet", "triplet-kd"]
PANELS = [("total", "total loss"), ("ce", "classification loss (CE)"),
          ("triplet", "triplet loss"), ("acc", "accuracy")]
PANEL_UNITS = {"total": "loss per image (weighted sum)", "ce": "cross-entropy (nats per image)",
               "triplet": "triplet hinge (logit units)", "acc": "accuracy (%)"}


def figures_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$TKD_FIGURES``, else ``<project>/figures``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("TKD_FIGURES") or project_root() / "figures")


def plot_schedule_gaps(frame: pd.DataFrame, totals: dict[int, int] | None = None):
    """Each headline gap (points, paired 95 % interval as error bars) against the length of
    the schedule's first phase, each length labelled with the seeds of its gaps (and, with
    ``totals`` {first phase: epochs in all}, its schedule: "10 of 30"). The gaps are drawn in
    dark colours of no method, with one marker each: they are differences, not methods.
    Returns the figure."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = [("#393b79", "o"), ("#843c39", "s"), ("#637939", "^"), ("#8c6d31", "D")]
    for k, ((a, b), group) in enumerate(frame.groupby(["a", "b"], sort=False)):
        x = group.first_phase * (1 + 0.03 * (k - 1.5))  # side by side, readable bars
        low = (group["mean"] - group.low).fillna(0).clip(lower=0)
        high = (group.high - group["mean"]).fillna(0).clip(lower=0)
        colour, marker = styles[k % len(styles)]
        ax.errorbar(x, group["mean"], yerr=[low, high], marker=marker, color=colour,
                    capsize=3, label=f"{a} − {b}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    lengths = sorted(frame.first_phase.unique())
    labels = []
    for n in lengths:
        low, high = frame[frame.first_phase == n].n.agg(["min", "max"])
        seeds = f"{low} seed" + ("s" if high > 1 else "") if low == high else f"{low}–{high} seeds"
        name = f"{n} of {totals[n]}" if totals and n in totals else f"{n}"
        labels.append(f"{name}\n{seeds}")
    ax.set_xticks(lengths, labels)
    ax.set_xlabel("epochs before the first decay" + (", of the schedule's epochs in all"
                                                     if totals else " (schedule length)"))
    ax.set_ylabel("test accuracy gap (points)")
    ax.set_title("Headline gaps vs schedule length (95 % paired intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def curves_frame(records: list[dict], experiments: list[str]) -> pd.DataFrame:
    """Long-format per-epoch history of the chosen experiments (all seeds): columns experiment,
    seed, epoch and the logged ``train_*`` / ``test_*`` columns."""
    frames = []
    for r in records:
        if r["config"]["experiment"] in experiments:
            frame = history_frame(r)
            frame["experiment"], frame["seed"] = r["config"]["experiment"], r["config"]["seed"]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot_learning_curves(records: list[dict], experiments: list[str] | None = None,
                         title: str = "", panels: list[str] | None = None):
    """Panels — total, CE and triplet loss, accuracy (``panels`` picks some of
    ``total, ce, triplet, acc``) — train (solid) and test (dashed), mean over seeds with a
    ± std band. Returns the matplotlib figure."""
    experiments = experiments or CURVE_EXPERIMENTS
    chosen = [p for p in PANELS if panels is None or p[0] in panels]
    curves = curves_frame(records, experiments)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 3.6), squeeze=False)
    axes = axes[0]
    colors = {name: colour_of(name) for name in experiments}  # one colour per method
    drawn = set()  # the splits some panel draws: the legend names only those
    for ax, (term, title_text) in zip(axes, chosen):
        for name in experiments:
            part = curves[curves.experiment == name] if len(curves) else curves
            for split, style in (("train", "-"), ("test", "--")):
                column = f"{split}_{term}"
                if not len(part) or column not in part or part[column].isna().all():
                    continue
                drawn.add(split)
                stats = part.groupby("epoch")[column].agg(["mean", "std"]).fillna(0.0)
                scale = 100 if term == "acc" else 1
                low, high = (scale * (stats["mean"] + k * stats["std"]) for k in (-1, 1))
                # the band is ± std over seeds, cut to what the quantity can take
                low, high = (low.clip(0, 100), high.clip(0, 100)) if term == "acc" else (
                    low.clip(lower=0), high)
                ax.plot(stats.index, scale * stats["mean"], style, color=colors[name],
                        label=f"{name} ({split})")
                ax.fill_between(stats.index, low, high, color=colors[name], alpha=0.15,
                                linewidth=0)
        ax.set_title(title_text)
        ax.set_xlabel("epoch (passes over the training split)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(PANEL_UNITS[term])
        if term == "acc":
            ax.set_ylim(top=min(100, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
    handles, labels = axes[-1].get_legend_handles_labels()
    for ax in axes[:-1]:  # a panel may hold curves the last one lacks (e.g. a teacher's CE)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    ncol = 1 if len(labels) <= 12 else 2
    fig.legend(handles, labels, fontsize=9, ncol=ncol, loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False,
               title=", ".join(f"{style}: {split}" for split, style in
                               (("train", "solid"), ("test", "dashed")) if split in drawn)
               + "\nband: ± std over seeds", title_fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_validation_curves(records: list[dict], experiments: list[str], title: str = ""):
    """Validation accuracy per epoch (mean over seeds) of each experiment, the curves the
    convergence rule is read from. Returns the figure."""
    curves = curves_frame(records, experiments)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles, shared = ["-", "--", ":", "-."], {}  # a variant sharing its method's colour: a dash
    for name in experiments:
        part = curves[curves.experiment == name] if len(curves) else curves
        if not len(part) or "val_acc" not in part:
            continue
        mean = 100 * part.groupby("epoch").val_acc.mean()
        colour = colour_of(name)
        shared[colour] = shared.get(colour, -1) + 1
        style = styles[(shared[colour] + name.startswith("triplet")) % len(styles)]
        ax.plot(mean.index, mean.values, label=name, linewidth=1.2, color=colour, linestyle=style)
    ax.set_xlabel("epoch (passes over the training split)")
    ax.set_ylabel("validation accuracy (%)")
    low = 100 * curves.val_acc.quantile(0.25) if len(curves) and "val_acc" in curves else 0
    ax.set_ylim(max(0, low - 5), min(100, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="mean over seeds", title_fontsize=9)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_sweep(runs: pd.DataFrame, kind: str, reference: pd.DataFrame | None = None):
    """Test accuracy vs. the swept value with error bars (std over seeds); ``reference``
    (a :func:`tkd.tables.comparison_table`) adds a horizontal line for the student alone of
    the verdict (:data:`tkd.verdict.STUDENT_ALONE`, at the distilled students' weight decay).
    Returns the figure."""
    frame = sweep_frame(runs, kind)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.errorbar(frame.value, frame.test_mean, yerr=frame.test_std.fillna(0), marker="o",
                capsize=4, label="triplet (CE + 2 triplet)" if kind == "margin" else "Hinton KD")
    if reference is not None and len(reference) and STUDENT_ALONE in set(reference.experiment):
        alone = reference[reference.experiment == STUDENT_ALONE].iloc[0]
        ax.axhline(alone.test_mean, color="grey", linestyle=":",
                   label=f"student alone ({STUDENT_ALONE})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(frame.value, [f"{v:g}" for v in frame.value])
    ax.set_xlabel("triplet margin" if kind == "margin" else "KD temperature T")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def _reference_outputs(students: pd.DataFrame, folder: Path) -> list[Path]:
    """``relations.md`` and ``modern.md`` (each method beside its published reference) and
    ``modern_summary.md``, those the runs have rows for; the paths written."""
    written = []
    for kind, frame in (("relations", relations_frame), ("modern", modern_frame)):
        rows = frame(students)
        if len(rows):  # the same table shape: one row per method, one column per reference
            atomic_write_text(folder / f"{kind}.md", relations_markdown(rows))
            written.append(folder / f"{kind}.md")
    summary = modern_summary(students)
    if summary:
        atomic_write_text(folder / "modern_summary.md", summary)
        written.append(folder / "modern_summary.md")
    return written


def build_figures(preset: str | Preset = "quick", root: str | Path | None = None,
                  out: str | Path | None = None, log=print) -> list[Path]:
    """Rebuild every table and figure of ``preset`` from its results files, read once into one
    runs table that every report is read from; returns the paths written under
    ``<out>/<preset>/``. Stale records are marked (``runs.csv``'s ``stale`` column, the
    comparison's seeds cell) and named in a warning passed to ``log``. Raises
    ``FileNotFoundError`` if there are no results."""
    preset = get_preset(preset)
    name = preset.name
    records = load_records(preset, root)
    if not records:
        raise FileNotFoundError(f"no results for preset {name!r} in {results_root(root) / name}"
                                f"; run `python -m tkd reproduce --preset {name}` first")
    failures = load_failures(preset, root)
    folder = figures_root(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    runs = runs_frame(records, root)
    students = runs[runs.experiment != "teacher"]
    warning = stale_warning(runs)
    if warning:
        log(warning)
    compared = ["teacher", *MAIN, *LR_SWEEP, *RELATIONS, *GENERALITY, *MODERN]
    selected = selection_seeds(students) if name in FAIR_PRESETS else None
    table = comparison_table(runs, compared, failures, selected)
    written = [folder / "comparison.csv", folder / "comparison.md"]
    atomic_write_csv(table, written[0], float_format="%.4f")
    atomic_write_text(written[1], table_markdown(table))
    atomic_write_csv(runs, folder / "runs.csv", float_format="%.6f")
    written.append(folder / "runs.csv")
    paired = paired_table(students, preset)
    atomic_write_csv(paired, folder / "paired.csv", float_format="%.4f")
    atomic_write_text(folder / "paired.md", paired_markdown(paired))
    atomic_write_text(folder / "verdict.md", verdict_markdown(runs, name, failures))
    atomic_write_text(folder / "phases.md", phase_markdown(phase_table(runs, compared[1:])))
    written += [folder / "paired.csv", folder / "paired.md", folder / "verdict.md",
                folder / "phases.md"]
    written += _reference_outputs(students, folder)
    written += _fair_outputs(name, students, folder, failures)
    written += _schedule_outputs(preset, students, root, folder)
    beside = beside_markdown(preset, students, root)
    if beside:
        atomic_write_text(folder / "beside.md", beside)
        written.append(folder / "beside.md")
    student = [r for r in records if r["config"]["experiment"] != "teacher"]
    fig = plot_learning_curves(student, title=f"preset {name}: mean over seeds, band ± std")
    written.append(_save(fig, folder / "learning_curves.png"))
    fig = plot_validation_curves(student, list(MAIN), title=f"preset {name}: validation accuracy")
    written.append(_save(fig, folder / "validation_curves.png"))
    for kind in SWEEP_NAMES:
        frame = sweep_frame(runs, kind)
        if len(frame) > 1:  # a sweep needs two values at least
            atomic_write_csv(frame, folder / f"{kind}_sweep.csv", float_format="%.6f")
            written += [folder / f"{kind}_sweep.csv",
                        _save(plot_sweep(runs, kind, table), folder / f"{kind}_sweep.png")]
    return written


def _fair_outputs(preset: str, runs: pd.DataFrame, folder: Path,
                  failures: pd.DataFrame) -> list[Path]:
    """The fair comparison's tables of a :data:`tkd.fair.FAIR_PRESETS` preset
    (:mod:`tkd.fair`); a diverged candidate (``failures``) counts in the choices as lost."""
    from tkd.fair_tables import (
        choices_markdown,
        claims_markdown,
        exploratory_frame,
        exploratory_markdown,
        tuned_markdown,
    )

    if preset not in FAIR_PRESETS:
        return []
    runs = with_failures(runs, failures)
    tables = {"claims.md": claims_markdown(runs), "fair.md": tuned_markdown(runs),
              "choices.md": choices_markdown(runs),
              "exploratory.md": exploratory_markdown(exploratory_frame(runs))}
    for file, text in tables.items():
        atomic_write_text(folder / file, text)
    return [folder / file for file in tables]


def _schedule_outputs(preset: Preset, runs: pd.DataFrame, root, folder: Path) -> list[Path]:
    """``schedule.md`` / ``.csv`` / ``.png`` when longer-schedule runs of ``preset`` exist."""
    lengths = schedule_runs(preset, runs, root)
    if len(lengths) < 2:
        return []
    frame = schedule_frame(lengths)
    atomic_write_csv(frame, folder / "schedule.csv", float_format="%.4f")
    atomic_write_text(folder / "schedule.md", schedule_markdown(frame))
    return [folder / "schedule.csv", folder / "schedule.md",
            _save(plot_schedule_gaps(frame), folder / "schedule.png")]


def _save(fig, path: Path) -> Path:
    save_figure(fig, path)
    plt.close(fig)
    return path
