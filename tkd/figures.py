"""Tables and figures built from results files alone (``results/<preset>/<experiment>/*.json``).

:func:`build_figures` writes into ``figures/<preset>/``:

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
from functools import lru_cache
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
    GENERALITY,
    LR_SWEEP,
    MAIN,
    MINED,
    MODERN,
    PRESETS,
    RELATIONS,
    SWEEP_NAMES,
    get_preset,
    load_data,
    project_root,
    read_record,
    results_root,
    stale_reason,
    teacher_path,
)
from tkd.fair import FAIR_PRESETS, with_failures  # noqa: E402
from tkd.files import atomic_write_csv, atomic_write_text  # noqa: E402
from tkd.plots import colour_of, save_figure  # noqa: E402
from tkd.results import file_sha256, history_frame, load_record  # noqa: E402
from tkd.stats import (  # noqa: E402
    bh_readings,
    convergence_gap,
    exploratory_note,
    has_converged,
    paired_difference,
    phase_gaps,
    phases_converged,
    reading,
)
from tkd.verdict import (  # noqa: E402
    MSE_FAMILIES,
    STUDENT_ALONE,
    best_on_validation,
    chosen_rates,
    modern_frame,
    modern_summary,
    relations_frame,
    relations_markdown,
    schedule_frame,
    schedule_markdown,
    verdict_text,
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


def load_records(preset: str, root: str | Path | None = None) -> list[dict]:
    """Every finished run record of a preset (the teacher's included), sorted by experiment
    and seed; diverged runs (``*.failed.json``) are read by :func:`load_failures`."""
    folder = results_root(root) / get_preset(preset).name
    paths = sorted(p for p in folder.glob("*/*.json") if not p.name.endswith(".failed.json")) \
        if folder.is_dir() else []
    records = [read_record(p) for p in paths]  # RecordError: refused, never counted
    return sorted(records, key=lambda r: (r["config"]["experiment"], r["config"]["seed"]))


def load_failures(preset: str, root: str | Path | None = None) -> pd.DataFrame:
    """Runs that stopped on a NaN/inf loss: experiment, seed, error."""
    folder = results_root(root) / get_preset(preset).name
    rows = [{"experiment": r["config"]["experiment"], "seed": r["config"]["seed"],
             "error": r["error"]}
            for r in map(load_record, sorted(folder.glob("*/*.failed.json")))]
    return pd.DataFrame(rows, columns=["experiment", "seed", "error"])


@lru_cache(maxsize=8)
def _data_identity(preset: str) -> dict | None:
    """Today's identity of a preset's data; None when the data cannot be loaded here."""
    try:
        return load_data(preset).identity()
    except Exception:  # noqa: BLE001 - no data here: the data comparison is skipped
        return None


@lru_cache(maxsize=8)
def _sha256(path: Path, mtime_ns: int) -> str:
    return file_sha256(path)


def record_stale_reason(record: dict, root: str | Path | None = None) -> str | None:
    """Why a record is stale (:func:`tkd.experiments.stale_reason` against its preset, the
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
                        data_identity=_data_identity(preset.name), root=root)


def runs_frame(records: list[dict], root: str | Path | None = None,
               check: bool = True) -> pd.DataFrame:
    """One row per run: experiment, method, seed, margin, temperature, negatives, epochs,
    final train/validation/test accuracy, test accuracy at the epoch of best validation
    accuracy, the convergence gap at the end (points), ``phase_gaps`` (the gap before every
    decay and at the end, :func:`tkd.stats.phase_gaps`), ``converged`` (the per-phase rule,
    every phase plateaued) beside ``converged_at_end`` (the end-only rule), ``at_chance``
    (:func:`at_chance`), device, wall seconds, and ``stale``:
    why the record no longer answers today's code and settings (:func:`record_stale_reason`
    with the results root ``root``), empty when current or when ``check`` is False."""
    rows = []
    for r in records:
        config, objective = r["config"], r["config"].get("objective") or {}
        history = r["history"]
        val = history.get("val_acc", [])
        best = int(np.argmax(val)) if len(val) else None
        lr_step = (config.get("train") or {}).get("lr_step")
        rows.append({
            "experiment": config["experiment"], "method": _method(config),
            "seed": config["seed"], "margin": objective.get("margin"),
            "temperature": objective.get("temperature"),
            "negatives": objective.get("negatives"), "epochs": len(history.get("epoch", [])),
            "train_acc": r["final"].get("train_acc", np.nan),
            "val_acc": r["final"].get("val_acc", np.nan),
            "test_acc": r["final"].get("test_acc", np.nan),
            "test_at_best_val": history["test_acc"][best] if best is not None else np.nan,
            "best_test_acc": max(history.get("test_acc", [np.nan])),
            "convergence_gap": convergence_gap(val) if len(val) else np.nan,
            "lr_step": lr_step,
            "phase_gaps": phase_gaps(val, lr_step) if lr_step and len(val) else [],
            "converged_at_end": has_converged(val) if len(val) else False,
            "converged": (phases_converged(val, lr_step) if lr_step else has_converged(val))
            if len(val) else False,
            "at_chance": at_chance(r["final"].get("val_acc", np.nan), config.get("dataset")),
            "device": r.get("environment", {}).get("device_name", ""),
            "device_kind": str(r.get("environment", {}).get("device", "cpu")).split(":")[0],
            **_fidelity(r),
            "wall_seconds": r["wall_seconds"],
            "stale": (record_stale_reason(r, root) or "") if check else "",
        })
    return pd.DataFrame(rows)


def _fidelity(record: dict) -> dict:
    """The final test fidelity of a record (``test_teacher_agreement``, ``test_teacher_kl``)
    and where it comes from: ``"run"`` (scored at every evaluation), ``"saved weights"``
    (added afterwards from the saved student, ``record["fidelity"]``) or ``""`` (neither)."""
    final, later = record.get("final", {}), record.get("fidelity") or {}
    keys = ("test_teacher_agreement", "test_teacher_kl")
    if all(k in final for k in keys):
        return {**{k: final[k] for k in keys}, "fidelity_source": "run"}
    if all(k in later for k in keys):
        return {**{k: later[k] for k in keys}, "fidelity_source": "saved weights"}
    return {**{k: np.nan for k in keys}, "fidelity_source": ""}


CLASSES = {"cifar100": 100}
"""Classes per data set where not 10 (digits, MNIST, Fashion-MNIST and CIFAR-10 have 10)."""


def at_chance(val_acc: float, dataset: str | None) -> bool:
    """Whether a final validation accuracy (fraction) is below 1.5 x chance (1 / classes): the
    run ended where a constant guess ends, e.g. a student whose ReLUs all died."""
    return bool(val_acc < 1.5 / CLASSES.get(dataset or "", 10))


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


def comparison_table(runs: pd.DataFrame, experiments: list[str] | None = None,
                     failures: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean ± std over seeds (in %), one row per experiment.

    Columns: experiment, method, seeds (finished runs), epochs, test_mean, test_std (last
    epoch), test_at_best_val_mean, val_mean, train_mean, train_std, best_test_mean, converged
    (finished runs meeting the rule and not at chance: a run flat at chance has plateaued
    but learnt nothing), devices, minutes (mean wall time per run),
    compute_minutes (all seeds), stale (runs whose record is stale), at_chance (finished runs
    that ended at chance, :func:`at_chance`) and diverged (runs of ``failures``,
    :func:`load_failures`, that stopped on a NaN/inf loss).
    """
    if experiments is not None:
        runs = runs[runs.experiment.isin(experiments)]
    diverged = failures.experiment.value_counts() if failures is not None and len(failures) \
        else pd.Series(dtype=int)
    rows = []
    for name, group in runs.groupby("experiment"):
        learnt = group.converged & ~group.at_chance if "at_chance" in group else group.converged
        rows.append({
            "experiment": name, "method": _label(name), "seeds": len(group),
            "epochs": int(group.epochs.max()),
            "test_mean": 100 * group.test_acc.mean(), "test_std": 100 * _std(group.test_acc),
            "test_at_best_val_mean": 100 * group.test_at_best_val.mean(),
            "val_mean": 100 * group.val_acc.mean(),
            "train_mean": 100 * group.train_acc.mean(), "train_std": 100 * _std(group.train_acc),
            "best_test_mean": 100 * group.best_test_acc.mean(),
            "converged": f"{int(learnt.sum())}/{len(group)}",
            "devices": ", ".join(sorted(set(group.device))),
            "minutes": group.wall_seconds.mean() / 60,
            "compute_minutes": group.wall_seconds.sum() / 60,
            "stale": int((group.stale != "").sum()) if "stale" in group else 0,
            "at_chance": int(group.at_chance.sum()) if "at_chance" in group else 0,
            "diverged": int(diverged.get(name, 0)),
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
    lines = ["| experiment | method | seeds | test acc. (%) | test acc. at best val. epoch (%) "
             "| val. acc. (%) | train acc. (%) | converged | compute (min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| `{row.experiment}` | {row.method} | {_seeds_cell(row)} | "
                     f"{_pm(row.test_mean, row.test_std)} | {row.test_at_best_val_mean:.2f} | "
                     f"{row.val_mean:.2f} | {_pm(row.train_mean, row.train_std)} | "
                     f"{row.converged} | {row.compute_minutes:.1f} |")
    return "\n".join(lines) + "\n"


def _seeds_cell(row) -> str:
    """Runs of an experiment: the finished ones plus the diverged, with notes, e.g.
    ``3 (2 diverged)``, ``5 (1 stale)`` or ``3 (1 at chance)``."""
    diverged, stale = getattr(row, "diverged", 0), getattr(row, "stale", 0)
    chance = getattr(row, "at_chance", 0)
    notes = [f"{n} {word}" for n, word in
             ((stale, "stale"), (diverged, "diverged"), (chance, "at chance")) if n]
    return f"{row.seeds + diverged}" + (f" ({', '.join(notes)})" if notes else "")


def stale_warning(runs: pd.DataFrame) -> str | None:
    """One line naming the stale runs of ``runs`` and how to rerun them; None if none."""
    stale = runs[runs.stale != ""] if "stale" in runs else runs.iloc[:0]
    if not len(stale):
        return None
    names = ", ".join(f"{r.experiment} seed {r.seed} ({r.stale})" for r in stale.itertuples())
    return (f"warning: {len(stale)} stale record(s), rerun them with `python -m tkd "
            f"reproduce`: {names}")


def headline_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The comparisons the README reports: triplet vs the loss-matched student alone
    (``ce-wd0.007``), the authors' baseline (``ce``) and kd-t4; triplet-kd vs kd-t1; the best
    mined triplet (on validation) vs kd-t4 and vs the paper's sampled negatives; semi-hard vs
    hard and random in-batch vs sampled negatives; the pair loss vs kd-t4; the two students
    alone; the paper's ordering kd-t4 > logit MSE > the student alone, with each Ba & Caruana
    family at its learning rate chosen on validation first, then at its other tuned rates; and
    the semi-hard triplet with Hinton KD against both parents. The other mined triplet (hard or
    semi-hard) follows the chosen one against kd-t4 and the paper's triplet."""
    mined = best_on_validation(runs, MINED)
    other_mined = [m for m in MINED[1:] if m != mined]  # hard or semi-hard
    rates = chosen_rates(runs)
    mse, ce_mse = rates.get("logit-mse"), rates.get("ce-mse")
    mse_rates, ce_mse_rates = MSE_FAMILIES["logit-mse"][1:], MSE_FAMILIES["ce-mse"][1:]
    both = "triplet-semihard-kd-t4"
    pairs = [("triplet", STUDENT_ALONE), ("triplet", "ce"), ("triplet", "kd-t4"),
             ("triplet-kd", "kd-t1"), (mined, "kd-t4"), (mined, "triplet")]
    pairs += [(m, b) for m in other_mined for b in ("kd-t4", "triplet")]
    pairs += [("triplet-batch-semihard", "triplet-batch-hard"),
              ("triplet-batch-random", "triplet"), ("pair", "kd-t4"), (STUDENT_ALONE, "ce"),
              ("kd-t4", mse), (mse, STUDENT_ALONE), (ce_mse, STUDENT_ALONE)]
    pairs += [p for name in mse_rates for p in (("kd-t4", name), (name, STUDENT_ALONE))]
    pairs += [(name, STUDENT_ALONE) for name in ce_mse_rates]
    pairs += [(both, "triplet-batch-semihard"), (both, "kd-t4")]
    present = set(runs.experiment)
    return [(a, b) for a, b in dict.fromkeys(pairs) if a in present and b in present]


def paired_table(preset: str, root: str | Path | None = None) -> pd.DataFrame:
    """The headline paired differences of final test accuracy (points) over common seeds:
    columns a, b, seeds, difference, std, ci_low, ci_high, p, reading, bh_reading. For a preset
    of the declared comparison the primary claims' pairs are left out (they are read with
    Holm's adjustment in ``claims.md``, never as exploratory)."""
    runs = runs_frame([r for r in load_records(preset, root)
                       if r["config"]["experiment"] != "teacher"], check=False)
    rows = []
    primary = set()
    if preset in FAIR_PRESETS and len(runs):  # the declared claims have their own table
        from tkd.fair import logit_regression, primary_pairs

        primary = {frozenset(p[1:]) for p in primary_pairs(runs, logit_regression(runs))}
    for a, b in headline_pairs(runs) if len(runs) else []:
        if frozenset((a, b)) in primary:
            continue
        acc = {name: 100 * runs[runs.experiment == name].set_index("seed").test_acc
               for name in (a, b)}
        d = paired_difference(acc[a], acc[b])
        rows.append({"a": a, "b": b, "seeds": d["n"], "difference": d["mean"], "std": d["std"],
                     "ci_low": d["low"], "ci_high": d["high"], "p": d["p"],
                     "reading": reading(d, a, b)})
    table = pd.DataFrame(rows, columns=["a", "b", "seeds", "difference", "std", "ci_low",
                                        "ci_high", "p", "reading"])
    table["bh_reading"] = bh_readings(table.difference.tolist(), table.p.tolist())
    return table


def paired_markdown(table: pd.DataFrame) -> str:
    """The paired table as markdown: difference [95 % CI] in points, and what it allows."""
    lines = ["| a | b | seeds | a − b (points) | 95 % CI | reading | after BH |",
             "|---|---|---:|---:|---|---|---|"]
    for row in table.itertuples():
        interval = ("– (one seed)" if np.isnan(row.ci_low)
                    else f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}]")
        lines.append(f"| `{row.a}` | `{row.b}` | {row.seeds} | {row.difference:+.2f} | "
                     f"{interval} | {row.reading} | {getattr(row, 'bh_reading', '–')} |")
    shown = int(table.ci_low.notna().sum())
    return exploratory_note(shown) + "\n".join(lines) + "\n"


def verdict(preset: str, root: str | Path | None = None) -> str:
    """A markdown paragraph: the paper's claimed ordering (triplet > Hinton KD > logit MSE >
    student alone) read step by step from the paired 95 % intervals as holds / refuted / not
    shown (:func:`tkd.verdict.verdict_text`), the best mined triplet, and any student that
    beats its teacher. Read from the records alone."""
    records = load_records(preset, root)
    runs = runs_frame([r for r in records if r["config"]["experiment"] != "teacher"],
                      check=False)
    if not len(runs):
        return (f"No records for preset {preset!r} yet: run "
                f"`python -m tkd reproduce --preset {preset}`.")
    teacher = [r for r in records if r["config"]["experiment"] == "teacher"]
    runs = with_failures(runs, load_failures(preset, root)) if preset in FAIR_PRESETS else runs
    return verdict_text(runs, preset, teacher[0]["final"]["test_acc"] if teacher else None)


def phase_table(runs: pd.DataFrame, experiments: list[str] | None = None) -> pd.DataFrame:
    """Per experiment, the slope of validation accuracy at each decay and at the end (points
    per epoch: :func:`tkd.stats.phase_gaps` / 3, mean over seeds) and how many runs meet the
    per-phase rule. Columns: experiment, seeds, slope_1 … slope_k, converged."""
    rows = []
    for name, group in runs.groupby("experiment"):
        if experiments is not None and name not in experiments:
            continue
        gaps = pd.DataFrame(list(group.phase_gaps))
        row = {"experiment": name, "seeds": len(group)}
        row.update({f"slope_{k + 1}": gaps[k].mean() / 3 for k in gaps.columns})
        row["converged"] = f"{int(group.converged.sum())}/{len(group)}"
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("experiment", key=lambda s: s.map(_order)).reset_index(drop=True)
    return table


def phase_markdown(table: pd.DataFrame) -> str:
    """:func:`phase_table` as markdown: the slope before each decay, then at the end."""
    slopes = [c for c in table.columns if c.startswith("slope_")]
    names = [f"before decay {k + 1}" for k in range(len(slopes) - 1)] + ["at the end"]
    lines = ["| experiment | seeds | " + " | ".join(f"slope {n} (points/epoch)" for n in names)
             + " | every phase plateaued |", "|---|---:|" + "---:|" * (len(slopes) + 1)]
    for row in table.itertuples():
        cells = " | ".join("–" if np.isnan(getattr(row, c)) else f"{getattr(row, c):+.2f}"
                           for c in slopes)
        lines.append(f"| `{row.experiment}` | {row.seeds} | {cells} | {row.converged} |")
    return "\n".join(lines) + "\n"


def schedule_runs(preset: str, root: str | Path | None = None) -> dict[int, pd.DataFrame]:
    """The runs of ``preset`` and of its longer-schedule presets (``<preset>-2x``,
    ``<preset>-4x``) that have records, keyed by the first phase's length in epochs."""
    found = {}
    for name in (preset, f"{preset}-2x", f"{preset}-4x"):
        if name not in PRESETS:
            continue
        records = [r for r in load_records(name, root) if r["config"]["experiment"] != "teacher"]
        if records:
            found[PRESETS[name].lr_step] = runs_frame(records, check=False)
    return found


def plot_schedule_gaps(frame: pd.DataFrame):
    """Each headline gap (points, paired 95 % interval as error bars) against the length of
    the schedule's first phase, each length labelled with its seeds. Returns the figure."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k, ((a, b), group) in enumerate(frame.groupby(["a", "b"], sort=False)):
        x = group.first_phase * (1 + 0.03 * (k - 1.5))  # side by side, readable bars
        low = (group["mean"] - group.low).fillna(0).clip(lower=0)
        high = (group.high - group["mean"]).fillna(0).clip(lower=0)
        ax.errorbar(x, group["mean"], yerr=[low, high], marker="o", capsize=3,
                    label=f"{a} − {b}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    lengths = sorted(frame.first_phase.unique())
    seeds = frame.groupby("first_phase").n.min()
    ax.set_xticks(lengths, [f"{n}\n{seeds[n]} seed" + ("s" if seeds[n] > 1 else "")
                             for n in lengths])
    ax.set_xlabel("epochs before the first decay (schedule length)")
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
    for name in experiments:
        part = curves[curves.experiment == name] if len(curves) else curves
        if not len(part) or "val_acc" not in part:
            continue
        mean = 100 * part.groupby("epoch").val_acc.mean()
        ax.plot(mean.index, mean.values, label=name, linewidth=1.2,
                color=colour_of(name), linestyle="--" if name.startswith("triplet") else "-")
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
    return pd.DataFrame(rows, columns=["value", "seeds", "test_mean", "test_std"]).astype(
        {"value": float, "seeds": int, "test_mean": float, "test_std": float})


def plot_sweep(runs: pd.DataFrame, kind: str, reference: pd.DataFrame | None = None):
    """Test accuracy vs. the swept value with error bars (std over seeds); ``reference``
    (a :func:`comparison_table`) adds a horizontal line for the student alone. Returns the
    figure."""
    frame = sweep_frame(runs, kind)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ax.errorbar(frame.value, frame.test_mean, yerr=frame.test_std.fillna(0), marker="o",
                capsize=4, label="triplet (CE + 2 triplet)" if kind == "margin" else "Hinton KD")
    if reference is not None and len(reference) and "ce" in set(reference.experiment):
        ce = reference[reference.experiment == "ce"].iloc[0]
        ax.axhline(ce.test_mean, color="grey", linestyle=":", label="student alone (CE)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(frame.value, [f"{v:g}" for v in frame.value])
    ax.set_xlabel("triplet margin" if kind == "margin" else "KD temperature T")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def build_figures(preset: str = "quick", root: str | Path | None = None,
                  out: str | Path | None = None, log=print) -> list[Path]:
    """Rebuild every table and figure of ``preset`` from its results files; returns the paths
    written under ``<out>/<preset>/``. Stale records are marked (``runs.csv``'s ``stale``
    column, the comparison's seeds cell) and named in a warning passed to ``log``. Raises
    ``FileNotFoundError`` if there are no results."""
    name = get_preset(preset).name
    records = load_records(name, root)
    if not records:
        raise FileNotFoundError(f"no results for preset {name!r} in {results_root(root) / name}"
                                f"; run `python -m tkd reproduce --preset {name}` first")
    folder = figures_root(out) / name
    folder.mkdir(parents=True, exist_ok=True)
    runs = runs_frame(records, root)
    warning = stale_warning(runs)
    if warning:
        log(warning)
    compared = ["teacher", *MAIN, *LR_SWEEP, *RELATIONS, *GENERALITY, *MODERN]
    table = comparison_table(runs, compared, load_failures(name, root))
    written = [folder / "comparison.csv", folder / "comparison.md"]
    atomic_write_csv(table, written[0], float_format="%.4f")
    atomic_write_text(written[1], table_markdown(table))
    atomic_write_csv(runs, folder / "runs.csv", float_format="%.6f")
    written.append(folder / "runs.csv")
    paired = paired_table(name, root)
    atomic_write_csv(paired, folder / "paired.csv", float_format="%.4f")
    atomic_write_text(folder / "paired.md", paired_markdown(paired))
    atomic_write_text(folder / "verdict.md", verdict(name, root))
    atomic_write_text(folder / "phases.md", phase_markdown(phase_table(runs, compared[1:])))
    written += [folder / "paired.csv", folder / "paired.md", folder / "verdict.md",
                folder / "phases.md"]
    for kind, frame in (("relations", relations_frame), ("modern", modern_frame)):
        rows = frame(runs[runs.experiment != "teacher"])
        if len(rows):  # the same table shape: one row per method, one column per reference
            atomic_write_text(folder / f"{kind}.md", relations_markdown(rows))
            written.append(folder / f"{kind}.md")
    summary = modern_summary(runs[runs.experiment != "teacher"])
    if summary:
        atomic_write_text(folder / "modern_summary.md", summary)
        written.append(folder / "modern_summary.md")
    written += _fair_outputs(name, runs[runs.experiment != "teacher"], folder,
                             load_failures(name, root))
    written += _schedule_outputs(name, root, folder)
    beside = beside_markdown(name, root)
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
    from tkd.fair import (
        claims_markdown,
        exploratory_frame,
        exploratory_markdown,
        tuned_markdown,
    )

    if preset not in FAIR_PRESETS:
        return []
    runs = with_failures(runs, failures)
    tables = {"claims.md": claims_markdown(runs), "fair.md": tuned_markdown(runs),
              "exploratory.md": exploratory_markdown(exploratory_frame(runs))}
    for file, text in tables.items():
        atomic_write_text(folder / file, text)
    return [folder / file for file in tables]


BESIDE_PAIRS = [("kd-t4", "triplet"), ("triplet-batch-semihard", "kd-t4"),
                ("triplet", STUDENT_ALONE), ("kd-t4", STUDENT_ALONE),
                ("triplet-batch-semihard", "triplet")]


def beside_markdown(preset: str, root: str | Path | None = None) -> str | None:
    """For a preset that shares another's teacher on less data (e.g. ``lesson``), its final
    test accuracy beside the teacher owner's, and the headline gaps of both with whether their
    directions agree. None for a preset that shares no teacher."""
    owner = get_preset(preset).teacher_preset
    if owner is None:
        return None
    runs = {name: runs_frame([r for r in load_records(name, root)
                              if r["config"]["experiment"] != "teacher"], check=False)
            for name in (preset, owner)}
    lines = [f"| experiment | `{preset}` test acc. (%) | `{owner}` test acc. (%) |",
             "|---|---:|---:|"]
    for name, group in runs[preset].groupby("experiment", sort=False):
        full = runs[owner][runs[owner].experiment == name]
        lines.append(f"| `{name}` | {100 * group.test_acc.mean():.2f} ({_seeds(len(group))}) | "
                     f"{100 * full.test_acc.mean():.2f} ({_seeds(len(full))}) |")
    lines += ["", f"| gap (points) | `{preset}` | `{owner}` | same direction |",
              "|---|---|---|---|"]
    for a, b in BESIDE_PAIRS:
        if not all({a, b} <= set(r.experiment) for r in runs.values()):
            continue
        small, full = (paired_difference(100 * r[r.experiment == a].set_index("seed").test_acc,
                                         100 * r[r.experiment == b].set_index("seed").test_acc)
                       for r in runs.values())
        lines.append(f"| `{a}` − `{b}` | {_gap_cell(small)} | {_gap_cell(full)} | "
                     f"{'yes' if np.sign(small['mean']) == np.sign(full['mean']) else 'no'} |")
    return "\n".join(lines) + "\n"


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _gap_cell(d: dict) -> str:
    if np.isnan(d["low"]):
        return f"{d['mean']:+.2f} ({_seeds(d['n'])})"
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] ({_seeds(d['n'])})"


def _schedule_outputs(name: str, root, folder: Path) -> list[Path]:
    """``schedule.md`` / ``.csv`` / ``.png`` when longer-schedule runs of ``name`` exist."""
    lengths = schedule_runs(name, root)
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
