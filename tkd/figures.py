"""Tables and figures built from results files alone (``results/<preset>/<experiment>/*.json``).

:func:`build_figures` writes into ``figures/<preset>/``:

- ``comparison.md`` / ``comparison.csv``: final test (and train) accuracy, mean ± std over seeds;
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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tkd.experiments import (  # noqa: E402
    EXPERIMENTS,
    MAIN,
    SWEEP_NAMES,
    get_preset,
    project_root,
    results_root,
)
from tkd.files import atomic_write_csv, atomic_write_text  # noqa: E402
from tkd.plots import save_figure  # noqa: E402
from tkd.results import history_frame, load_record  # noqa: E402

CURVE_EXPERIMENTS = ["ce", "kd-t4", "triplet", "triplet-kd"]
PANELS = [("total", "total loss"), ("ce", "classification loss (CE)"),
          ("triplet", "triplet loss"), ("acc", "accuracy")]


def figures_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$TKD_FIGURES``, else ``<project>/figures``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get("TKD_FIGURES") or project_root() / "figures")


def load_records(preset: str, root: str | Path | None = None) -> list[dict]:
    """Every run record of a preset (the teacher's included), sorted by experiment and seed."""
    folder = results_root(root) / get_preset(preset).name
    paths = sorted(folder.glob("*/*.json")) if folder.is_dir() else []
    records = [load_record(p) for p in paths]
    return sorted(records, key=lambda r: (r["config"]["experiment"], r["config"]["seed"]))


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: experiment, method, seed, margin, temperature, negatives, epochs,
    final train/test accuracy, best test accuracy, wall seconds."""
    rows = []
    for r in records:
        config, objective = r["config"], r["config"].get("objective") or {}
        history = r["history"]
        rows.append({
            "experiment": config["experiment"], "method": _method(config),
            "seed": config["seed"], "margin": objective.get("margin"),
            "temperature": objective.get("temperature"),
            "negatives": objective.get("negatives"), "epochs": len(history.get("epoch", [])),
            "train_acc": r["final"].get("train_acc", np.nan),
            "test_acc": r["final"].get("test_acc", np.nan),
            "best_test_acc": max(history.get("test_acc", [np.nan])),
            "wall_seconds": r["wall_seconds"],
        })
    return pd.DataFrame(rows)


def _method(config: dict) -> str | None:
    """A record's method: stored by older records, else the experiment's (the teacher: ce)."""
    if "method" in config:
        return config["method"]
    name = config["experiment"]
    return EXPERIMENTS[name].method if name in EXPERIMENTS else (
        "ce" if name == "teacher" else None)


def _order(name: str) -> tuple[int, str]:
    names = ["teacher", *MAIN, *EXPERIMENTS]
    return (names.index(name) if name in names else len(names), name)


def _label(name: str) -> str:
    if name == "teacher":
        return "teacher (paper-teacher)"
    return EXPERIMENTS[name].label if name in EXPERIMENTS else name


def comparison_table(runs: pd.DataFrame, experiments: list[str] | None = None) -> pd.DataFrame:
    """Mean ± std over seeds of final test/train accuracy (in %), one row per experiment.

    Columns: experiment, method, seeds, epochs, test_mean, test_std, train_mean, train_std,
    best_test_mean, minutes (mean wall time per run).
    """
    if experiments is not None:
        runs = runs[runs.experiment.isin(experiments)]
    rows = []
    for name, group in runs.groupby("experiment"):
        rows.append({
            "experiment": name, "method": _label(name), "seeds": len(group),
            "epochs": int(group.epochs.max()),
            "test_mean": 100 * group.test_acc.mean(), "test_std": 100 * _std(group.test_acc),
            "train_mean": 100 * group.train_acc.mean(), "train_std": 100 * _std(group.train_acc),
            "best_test_mean": 100 * group.best_test_acc.mean(),
            "minutes": group.wall_seconds.mean() / 60,
        })
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("experiment", key=lambda s: s.map(_order)).reset_index(drop=True)
    return table


def _std(values: pd.Series) -> float:
    """Sample std over seeds; NaN for a single run."""
    return float(values.std(ddof=1)) if len(values) > 1 else np.nan


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The comparison table as a GitHub markdown table (accuracy in %, mean ± std)."""
    lines = ["| experiment | method | seeds | epochs | test acc. (%) | train acc. (%) |",
             "|---|---|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| `{row.experiment}` | {row.method} | {row.seeds} | {row.epochs} | "
                     f"{_pm(row.test_mean, row.test_std)} | {_pm(row.train_mean, row.train_std)} |")
    return "\n".join(lines) + "\n"


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
    colors = dict(zip(experiments, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    for ax, (term, title_text) in zip(axes, chosen):
        for name in experiments:
            part = curves[curves.experiment == name] if len(curves) else curves
            for split, style in (("train", "-"), ("test", "--")):
                column = f"{split}_{term}"
                if not len(part) or column not in part or part[column].isna().all():
                    continue
                stats = part.groupby("epoch")[column].agg(["mean", "std"]).fillna(0.0)
                scale = 100 if term == "acc" else 1
                ax.plot(stats.index, scale * stats["mean"], style, color=colors[name],
                        label=f"{name} ({split})")
                ax.fill_between(stats.index, scale * (stats["mean"] - stats["std"]),
                                scale * (stats["mean"] + stats["std"]), color=colors[name],
                                alpha=0.15, linewidth=0)
        ax.set_title(title_text)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel("accuracy (%)" if term == "acc" else "loss")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, ncol=2, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def difference(table: pd.DataFrame, a: str, b: str) -> dict:
    """Test accuracy of experiment ``a`` minus ``b`` in points, beside their seed spread:
    ``{"a", "b", "diff", "std_a", "std_b", "spread"}`` with spread = the larger std."""
    rows = table.set_index("experiment")
    diff = rows.test_mean[a] - rows.test_mean[b]
    spread = float(np.nanmax([rows.test_std[a], rows.test_std[b]]))
    return {"a": a, "b": b, "diff": float(diff), "std_a": float(rows.test_std[a]),
            "std_b": float(rows.test_std[b]), "spread": spread}


def describe_difference(table: pd.DataFrame, a: str, b: str) -> str:
    """One sentence: does ``a`` beat ``b``, by how many points, against the seed spread."""
    d = difference(table, a, b)
    ratio = abs(d["diff"]) / d["spread"] if d["spread"] > 0 else float("inf")
    verdict = "is ahead of" if d["diff"] > 0 else "is behind"
    within = "within" if ratio < 1 else "beyond"
    return (f"{a} {verdict} {b} by {d['diff']:+.2f} points of test accuracy, "
            f"{ratio:.1f}x the larger seed std ({d['spread']:.2f}): {within} the seed spread.")


def sweep_frame(runs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Accuracy vs. margin (``kind="margin"``) or KD temperature (``"temperature"``):
    columns value, seeds, test_mean, test_std (in %)."""
    if kind not in SWEEP_NAMES:
        raise ValueError(f"kind must be one of {', '.join(SWEEP_NAMES)}, got {kind!r}")
    part = runs[runs.experiment.isin(SWEEP_NAMES[kind])]
    rows = []
    for value, group in part.groupby(kind):
        rows.append({"value": value, "seeds": len(group), "test_mean": 100 * group.test_acc.mean(),
                     "test_std": 100 * _std(group.test_acc)})
    return pd.DataFrame(rows, columns=["value", "seeds", "test_mean", "test_std"])


def plot_sweep(runs: pd.DataFrame, kind: str, reference: pd.DataFrame | None = None):
    """Test accuracy vs. the swept value with error bars (std over seeds); ``reference``
    (a :func:`comparison_table`) adds a horizontal line for the student alone. Returns the
    figure."""
    frame = sweep_frame(runs, kind)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.errorbar(frame.value, frame.test_mean, yerr=frame.test_std.fillna(0), marker="o",
                capsize=4, label="triplet (CE + 2 triplet)" if kind == "margin" else "Hinton KD")
    if reference is not None and "ce" in set(reference.experiment):
        ce = reference[reference.experiment == "ce"].iloc[0]
        ax.axhline(ce.test_mean, color="grey", linestyle=":", label="student alone (CE)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(frame.value, [f"{v:g}" for v in frame.value])
    ax.set_xlabel("triplet margin" if kind == "margin" else "KD temperature T")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def build_figures(preset: str = "quick", root: str | Path | None = None,
                  out: str | Path | None = None) -> list[Path]:
    """Rebuild every table and figure of ``preset`` from its results files; returns the paths
    written under ``<out>/<preset>/``. Raises ``FileNotFoundError`` if there are no results."""
    name = get_preset(preset).name
    records = load_records(name, root)
    if not records:
        raise FileNotFoundError(f"no results for preset {name!r} in {results_root(root) / name}"
                                f"; run `python -m tkd reproduce --preset {name}` first")
    folder = figures_root(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    runs = runs_frame(records)
    table = comparison_table(runs, ["teacher", *MAIN])
    written = [folder / "comparison.csv", folder / "comparison.md"]
    atomic_write_csv(table, written[0], float_format="%.4f")
    atomic_write_text(written[1], table_markdown(table))
    atomic_write_csv(runs, folder / "runs.csv", float_format="%.6f")
    written.append(folder / "runs.csv")
    student = [r for r in records if r["config"]["experiment"] != "teacher"]
    fig = plot_learning_curves(student, title=f"preset {name}: mean over seeds, band ± std")
    written.append(_save(fig, folder / "learning_curves.png"))
    for kind in SWEEP_NAMES:
        frame = sweep_frame(runs, kind)
        if len(frame):
            atomic_write_csv(frame, folder / f"{kind}_sweep.csv", float_format="%.4f")
            written += [folder / f"{kind}_sweep.csv",
                        _save(plot_sweep(runs, kind, table), folder / f"{kind}_sweep.png")]
    return written


def _save(fig, path: Path) -> Path:
    save_figure(fig, path)
    plt.close(fig)
    return path
