"""Do fresh runs reproduce the committed records? (``python -m tkd verify``, ``make reproduce``)

:func:`compare_runs` puts each committed run of the experiments the fresh folder holds beside
its fresh twin: final test accuracy of both, ``|Δ|`` in points, and whether the per-epoch
history is the same (timing columns ignored). On the same device type a run must reproduce
exactly (tolerance 0: same accuracy, same history); across device types (e.g. CUDA against the
committed CPU records) floating-point sums differ, so the final test accuracy may differ by
:data:`CROSS_DEVICE_TOLERANCE` points and the history is reported but not required to match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tkd.figures import load_records

TIMING_COLUMNS = ("epoch_seconds", "images_per_second")
CROSS_DEVICE_TOLERANCE = 0.5  # points of test accuracy, fresh and committed on other devices
COLUMNS = ["experiment", "seed", "committed_acc", "fresh_acc", "delta", "history_match",
           "tolerance", "match", "committed_device", "fresh_device"]


def device_type(record: dict) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"`` from a record's ``environment.device`` (``cuda:0``)."""
    return str(record.get("environment", {}).get("device", "unknown")).split(":")[0]


def history_matches(fresh: dict, committed: dict) -> bool:
    """Whether two records' per-epoch histories are equal, timing columns ignored (NaN equals
    NaN)."""
    a = {k: v for k, v in fresh.get("history", {}).items() if k not in TIMING_COLUMNS}
    b = {k: v for k, v in committed.get("history", {}).items() if k not in TIMING_COLUMNS}
    if a.keys() != b.keys():
        return False
    return all(np.array_equal(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float),
                              equal_nan=True) for k in a)


def _by_run(records: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["config"]["experiment"], r["config"]["seed"]): r for r in records}


def _row(key: tuple[str, int], committed: dict, fresh: dict | None,
         tolerance: float | None) -> dict:
    """One line of :func:`compare_runs`; a missing fresh run never matches."""
    old = 100 * committed["final"].get("test_acc", np.nan)
    if fresh is None:
        return {"experiment": key[0], "seed": key[1], "committed_acc": old, "fresh_acc": np.nan,
                "delta": np.nan, "history_match": False, "tolerance": tolerance,
                "match": False, "committed_device": device_type(committed), "fresh_device": None}
    same_device = device_type(fresh) == device_type(committed)
    if tolerance is None:
        tolerance = 0.0 if same_device else CROSS_DEVICE_TOLERANCE
    new = 100 * fresh["final"].get("test_acc", np.nan)
    delta = abs(new - old)
    history = history_matches(fresh, committed)
    match = bool(delta <= tolerance + 1e-9 and (history or tolerance > 0))
    return {"experiment": key[0], "seed": key[1], "committed_acc": old, "fresh_acc": new,
            "delta": delta, "history_match": history, "tolerance": tolerance, "match": match,
            "committed_device": device_type(committed), "fresh_device": device_type(fresh)}


def compare_runs(fresh_root: str | Path, committed_root: str | Path | None, preset: str,
                 tolerance: float | None = 0.0) -> pd.DataFrame:
    """One row per committed run of an experiment present in ``fresh_root`` (the teacher
    included): experiment, seed, committed_acc and fresh_acc (test accuracy, %), delta
    (``|Δ|`` in points), history_match, tolerance, match, and both device types.

    ``tolerance`` in points; ``None`` picks it per run: 0 on the same device type (and then the
    history must match too), :data:`CROSS_DEVICE_TOLERANCE` across device types.
    """
    fresh = _by_run(load_records(preset, fresh_root))
    committed = _by_run(load_records(preset, committed_root))
    experiments = {name for name, _ in fresh}
    rows = [_row(key, record, fresh.get(key), tolerance)
            for key, record in committed.items() if key[0] in experiments]
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_line(frame: pd.DataFrame) -> str:
    """``45/45 runs match the committed results (max |Δacc| = 0.00 points)``, followed by the
    runs that differ, if any, and why."""
    if not len(frame):
        return "0 runs compared: no fresh run of a committed experiment was found"
    worst = frame["delta"].max()
    line = (f"{int(frame['match'].sum())}/{len(frame)} runs match the committed results "
            f"(max |Δacc| = {0.0 if np.isnan(worst) else worst:.2f} points)")
    differ = [_why(row) for row in frame[~frame["match"]].itertuples()]
    return line + ("; differ: " + ", ".join(differ) if differ else "")


def machine(record: dict) -> str:
    """Where a record was trained, e.g. ``cpu Intel(R) Xeon(R) Processor (AVX512)``: device
    type, model name and, on the CPU, the vector instruction set ("set not recorded" in records
    older than that field)."""
    env = record.get("environment", {})
    text = f"{device_type(record)} {env.get('device_name', 'model not recorded')}"
    if device_type(record) == "cpu":
        text += f" ({env.get('cpu_capability', 'instruction set not recorded')})"
    return text


def machine_note(fresh: list[dict], committed: list[dict]) -> str | None:
    """A sentence naming the machines when the fresh runs come from another one than the
    committed records (then runs may differ in the last bits, so exact matches are not
    expected); ``None`` when they name the same machine."""
    old = sorted({machine(r) for r in committed})
    new = sorted({machine(r) for r in fresh})
    if old == new:
        return None
    return (f"the committed runs were trained on {', '.join(old)}; these on {', '.join(new)}. "
            "Kernels chosen by CPU model or device round differently, so exact matches are "
            "expected only on the same machine")


def _why(row) -> str:
    if np.isnan(row.fresh_acc):
        return f"{row.experiment} seed {row.seed} (no fresh run)"
    history = "" if row.history_match else ", history differs"
    return f"{row.experiment} seed {row.seed} (|Δacc| {row.delta:.2f}{history})"
