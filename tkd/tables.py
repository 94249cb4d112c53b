"""The runs table and the tables read from it.

:func:`runs_frame` turns a preset's records (read once, :func:`tkd.records.load_records`) into
one row per run; every report is read from that table: the comparison (mean ± std over seeds),
the paired differences of the README's comparisons, the slopes per phase, the sweeps, and a
preset beside the one whose teacher it shares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tkd.experiments import EXPERIMENTS, MAIN, PRESETS, SWEEP_NAMES, Preset
from tkd.fair import FAIR_PRESETS, chance_count, evidence_by_seed, selection_seeds
from tkd.records import load_records
from tkd.staleness import record_stale_reason
from tkd.stats import (
    bh_readings,
    convergence_gap,
    exploratory_note,
    has_converged,
    paired_difference,
    phase_gaps,
    phases_converged,
    reading,
)
from tkd.verdict import STUDENT_ALONE, headline_pairs, step_reading


def runs_frame(records: list[dict], root: str | Path | None = None,
               check: bool = True) -> pd.DataFrame:
    """One row per run: experiment, method, seed, margin, temperature, negatives, epochs,
    final train/validation/test accuracy, test accuracy at the epoch of best validation
    accuracy, the convergence gap at the end (points), ``phase_gaps`` (the gap before every
    decay and at the end, :func:`tkd.stats.phase_gaps`), ``converged`` (the per-phase rule,
    every phase plateaued) beside ``converged_at_end`` (the end-only rule), ``at_chance``
    (:func:`at_chance`), device, wall seconds (:func:`wall_seconds`), and ``stale``:
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
            "wall_seconds": wall_seconds(r),
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


def wall_seconds(record: dict) -> float:
    """A run's wall time (s): the record's ``wall_seconds``, or the sum of its epochs' times
    where that is larger (a run resumed by code older than :class:`tkd.live.RunClock` recorded
    only its last session's time). A lower bound either way: evaluation between epochs and a
    cut epoch's lost work are not in the epochs' times."""
    epochs = sum(record.get("history", {}).get("epoch_seconds", []))
    return max(float(record["wall_seconds"]), float(epochs))


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


def _in_order(table: pd.DataFrame) -> pd.DataFrame:
    """A table's rows in the order of the experiments (the teacher, the main comparison, ...)."""
    if not len(table):
        return table
    return table.sort_values("experiment", key=lambda s: s.map(_order)).reset_index(drop=True)


def _label(name: str) -> str:
    if name == "teacher":
        return "teacher (paper-teacher)"
    return EXPERIMENTS[name].label if name in EXPERIMENTS else name


def comparison_table(runs: pd.DataFrame, experiments: list[str] | None = None,
                     failures: pd.DataFrame | None = None,
                     selected: dict[str, int] | None = None) -> pd.DataFrame:
    """Mean ± std over seeds (in %), one row per experiment.

    ``selected`` (experiment -> seed, :func:`tkd.fair.selection_seeds`): the run a choice on
    validation picked a row by is left out of its means, as from its intervals, where the row
    has other runs (``selection`` "left out"); a row with that run alone keeps it ("only").

    Columns: experiment, method, seeds (finished runs read), selection, epochs, test_mean,
    test_std (last epoch), test_at_best_val_mean, val_mean, train_mean, train_std,
    best_test_mean, converged (finished runs meeting the rule and not at chance: a run flat at
    chance has plateaued but learnt nothing), devices, minutes (mean wall time per run),
    compute_minutes (all seeds, the selection run's included), stale (runs whose record is
    stale), at_chance (finished runs that ended at chance, :func:`at_chance`) and diverged
    (runs of ``failures``, :func:`tkd.records.load_failures`, that stopped on a NaN/inf loss).
    """
    if experiments is not None:
        runs = runs[runs.experiment.isin(experiments)]
    diverged = failures.experiment.value_counts() if failures is not None and len(failures) \
        else pd.Series(dtype=int)
    rows = []
    for name, everything in runs.groupby("experiment"):
        group, selection = _without_selection_run(everything, (selected or {}).get(name))
        learnt = group.converged & ~group.at_chance if "at_chance" in group else group.converged
        rows.append({
            "experiment": name, "method": _label(name), "seeds": len(group),
            "selection": selection,
            "epochs": int(group.epochs.max()),
            "test_mean": 100 * group.test_acc.mean(), "test_std": 100 * _std(group.test_acc),
            "test_at_best_val_mean": 100 * group.test_at_best_val.mean(),
            "val_mean": 100 * group.val_acc.mean(),
            "train_mean": 100 * group.train_acc.mean(), "train_std": 100 * _std(group.train_acc),
            "best_test_mean": 100 * group.best_test_acc.mean(),
            "converged": f"{int(learnt.sum())}/{len(group)}",
            "devices": ", ".join(sorted(set(group.device))),
            "minutes": everything.wall_seconds.mean() / 60,
            "compute_minutes": everything.wall_seconds.sum() / 60,
            "stale": int((group.stale != "").sum()) if "stale" in group else 0,
            "at_chance": chance_count(group),
            "diverged": int(diverged.get(name, 0)),
        })
    return _in_order(pd.DataFrame(rows))


def _without_selection_run(group: pd.DataFrame, seed: int | None) -> tuple[pd.DataFrame, str]:
    """An experiment's runs without the one a choice read (``seed``) when others remain."""
    if seed is None or not (group.seed == seed).any():
        return group, ""
    rest = group[group.seed != seed]
    return (rest, "left out") if len(rest) else (group, "only")


def _std(values: pd.Series) -> float:
    """Sample std over seeds; NaN for a single run."""
    return float(values.std(ddof=1)) if len(values) > 1 else np.nan


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if np.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def table_markdown(table: pd.DataFrame) -> str:
    """The comparison table as a GitHub markdown table (accuracy in %, mean ± std)."""
    lines = ["| experiment | method | seeds | test acc. (%, mean ± sd) | test acc. at best val. "
             "epoch (%) | val. acc. (%) | train acc. (%, mean ± sd) | converged | compute (min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table.itertuples():
        lines.append(f"| `{row.experiment}` | {row.method} | {_seeds_cell(row)} | "
                     f"{_pm(row.test_mean, row.test_std)} | {row.test_at_best_val_mean:.2f} | "
                     f"{row.val_mean:.2f} | {_pm(row.train_mean, row.train_std)} | "
                     f"{row.converged} | {row.compute_minutes:.1f} |")
    return "\n".join(lines) + "\n"


def _seeds_cell(row) -> str:
    """Runs of an experiment: the finished ones plus the diverged, with notes, e.g.
    ``3 (2 diverged)``, ``5 (1 stale)``, ``3 (1 at chance)`` or
    ``5 (its selection run left out)``."""
    diverged, stale = getattr(row, "diverged", 0), getattr(row, "stale", 0)
    chance, selection = getattr(row, "at_chance", 0), getattr(row, "selection", "")
    notes = [f"{n} {word}" for n, word in
             ((stale, "stale"), (diverged, "diverged"), (chance, "at chance")) if n]
    notes += {"left out": ["its selection run left out"],
              "only": ["its selection run only"]}.get(selection, [])
    return f"{row.seeds + diverged}" + (f" ({', '.join(notes)})" if notes else "")


def stale_warning(runs: pd.DataFrame) -> str | None:
    """One line naming the stale runs of ``runs`` and how to rerun them; None if none."""
    stale = runs[runs.stale != ""] if "stale" in runs else runs.iloc[:0]
    if not len(stale):
        return None
    names = ", ".join(f"{r.experiment} seed {r.seed} ({r.stale})" for r in stale.itertuples())
    return (f"warning: {len(stale)} stale record(s), rerun them with `python -m tkd "
            f"reproduce`: {names}")


def paired_table(runs: pd.DataFrame, preset: Preset) -> pd.DataFrame:
    """The headline paired differences (:func:`tkd.verdict.headline_pairs`) of final test
    accuracy (points) over common seeds, less any run a choice on validation selected either
    side by (:func:`tkd.fair.evidence_by_seed`), from a preset's runs table: columns a, b, seeds,
    difference, std, ci_low, ci_high, p, reading, bh_reading. For a preset of the declared
    comparison the primary claims' pairs are left out (they are read with Holm's adjustment in
    ``claims.md``, never as exploratory)."""
    runs = runs[runs.experiment != "teacher"] if len(runs) else runs
    rows = []
    primary = set()
    if preset.name in FAIR_PRESETS and len(runs):  # the declared claims have their own table
        from tkd.fair import logit_regression, primary_pairs

        primary = {frozenset(p[1:]) for p in primary_pairs(runs, logit_regression(runs))}
    selected = selection_seeds(runs) if len(runs) else {}
    for a, b in headline_pairs(runs) if len(runs) else []:
        if frozenset((a, b)) in primary:
            continue
        d = paired_difference(evidence_by_seed(runs, a, selected),
                              evidence_by_seed(runs, b, selected))
        rows.append({"a": a, "b": b, "seeds": d["n"], "difference": d["mean"], "std": d["std"],
                     "ci_low": d["low"], "ci_high": d["high"], "p": d["p"],
                     "reading": reading(d, a, b)})
    table = pd.DataFrame(rows, columns=["a", "b", "seeds", "difference", "std", "ci_low",
                                        "ci_high", "p", "reading"])
    table["bh_reading"] = bh_readings(table.difference.tolist(), table.p.tolist())
    return table


def paired_markdown(table: pd.DataFrame) -> str:
    """The paired table as markdown: difference [95 % CI] in points, and which way it points
    (``a > b``, ``a < b`` or not shown), unadjusted and after Benjamini–Hochberg: exploratory
    pairs are read as directions, not as claims that hold or are refuted."""
    lines = ["| a | b | seeds | a − b (points) | 95 % CI | unadjusted | after BH |",
             "|---|---|---:|---:|---|---|---|"]
    for row in table.itertuples():
        interval = ("– (no common seed)" if row.seeds == 0 else "– (one seed)"
                    if np.isnan(row.ci_low) else f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}]")
        difference = "–" if row.seeds == 0 else f"{row.difference:+.2f}"
        unadjusted = step_reading({"low": row.ci_low, "high": row.ci_high})
        lines.append(f"| `{row.a}` | `{row.b}` | {row.seeds} | {difference} | "
                     f"{interval} | {_DIRECTIONS[unadjusted]} | "
                     f"{_DIRECTIONS.get(getattr(row, 'bh_reading', ''), '–')} |")
    shown = int(table.ci_low.notna().sum())
    return exploratory_note(shown) + "\n".join(lines) + "\n"


_DIRECTIONS = {"holds": "a > b", "refuted": "a < b", "not shown": "not shown"}


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
    return _in_order(pd.DataFrame(rows))


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


def student_runs(preset: Preset, root: str | Path | None = None) -> pd.DataFrame:
    """The runs table of a preset's students, read from its records (no staleness check): for
    a report that sets another preset's runs beside the one it is about."""
    return runs_frame([r for r in load_records(preset, root)
                       if r["config"]["experiment"] != "teacher"], check=False)


def schedule_runs(preset: Preset, runs: pd.DataFrame,
                  root: str | Path | None = None) -> dict[int, pd.DataFrame]:
    """The students' runs of ``preset`` (its ``runs`` table) and of its longer-schedule presets
    (``<preset>-2x``, ``<preset>-4x``) that have records, keyed by the first phase's length in
    epochs."""
    runs = runs[runs.experiment != "teacher"] if len(runs) else runs
    found = {preset.lr_step: runs} if len(runs) else {}
    for name in (f"{preset.name}-2x", f"{preset.name}-4x"):
        longer = student_runs(PRESETS[name], root) if name in PRESETS else []
        if len(longer):
            found[PRESETS[name].lr_step] = longer
    return found


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


BESIDE_PAIRS = [("kd-t4", "triplet"), ("triplet-batch-semihard", "kd-t4"),
                ("triplet", STUDENT_ALONE), ("kd-t4", STUDENT_ALONE),
                ("triplet-batch-semihard", "triplet")]


def beside_markdown(preset: Preset, runs: pd.DataFrame,
                    root: str | Path | None = None) -> str | None:
    """For a preset that shares another's teacher on less data (e.g. ``lesson``), its final
    test accuracy (its ``runs`` table) beside the teacher owner's (read from ``root``), and
    the headline gaps of both with whether their directions agree. A preset of the declared
    comparison is read without the runs its choices selected a row by
    (:func:`tkd.fair.evidence_by_seed`), as everywhere else. None for a preset that shares no
    teacher."""
    owner = preset.teacher_preset
    if owner is None:
        return None
    runs = {preset.name: runs[runs.experiment != "teacher"],
            owner: student_runs(PRESETS[owner], root)}
    selected = {name: selection_seeds(r) if name in FAIR_PRESETS and len(r) else {}
                for name, r in runs.items()}
    accuracy = {name: {e: evidence_by_seed(r, e, selected[name]) for e in set(r.experiment)}
                for name, r in runs.items()}
    preset = preset.name
    lines = [f"| experiment | `{preset}` test acc. (%) | `{owner}` test acc. (%) |",
             "|---|---:|---:|"]
    for name in dict.fromkeys(runs[preset].experiment):
        small, full = accuracy[preset][name], accuracy[owner].get(name, pd.Series(dtype=float))
        lines.append(f"| `{name}` | {small.mean():.2f} ({_n_seeds(len(small))}) | "
                     f"{full.mean():.2f} ({_n_seeds(len(full))}) |")
    lines += ["", f"| gap (points) | `{preset}` | `{owner}` | same direction |",
              "|---|---|---|---|"]
    for a, b in BESIDE_PAIRS:
        if not all({a, b} <= set(r.experiment) for r in runs.values()):
            continue
        small, full = (paired_difference(acc[a], acc[b]) for acc in accuracy.values())
        lines.append(f"| `{a}` − `{b}` | {_gap_cell(small)} | {_gap_cell(full)} | "
                     f"{'yes' if np.sign(small['mean']) == np.sign(full['mean']) else 'no'} |")
    return "\n".join(lines) + "\n"


def _n_seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def _gap_cell(d: dict) -> str:
    if np.isnan(d["low"]):
        return f"{d['mean']:+.2f} ({_n_seeds(d['n'])})"
    return f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] ({_n_seeds(d['n'])})"
