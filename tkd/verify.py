"""Do fresh runs reproduce the committed records? (``python -m tkd verify``, ``make reproduce``)

Three levels, each answered on its own:

1. **identical** (:func:`compare_runs`): every fresh run's per-epoch history equals its
   committed twin's bit for bit (timing aside). Expected on the machine that trained the
   records, and on any CPU model in the portable CPU mode (:mod:`tkd.portable`).
2. **within noise** (:func:`noise_frame`): every fresh run's final test accuracy lies within
   its experiment's bound of the committed one, the bound being the committed seeds' spread
   (max - min) or :data:`IMAGE_FLOOR` test images, whichever is larger; and each experiment's
   fresh mean lies inside the committed mean's 95 % t-interval widened by the same floor. A
   run that ended at chance on one side and not on the other is a categorical mismatch.
3. **same conclusions** (:func:`conclusion_frame`): every step of the preset's verdict (the
   paper's ordering and the README's paired comparisons) reads the same (holds / refuted /
   not shown) on the fresh runs as on the committed ones, with the same choices on
   validation.

The results came out again when levels 2 and 3 hold; level 1 says whether they came out to
the bit.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from tkd.experiments import Preset
from tkd.records import load_records
from tkd.tables import runs_frame
from tkd.verdict import NOT_SHOWN, final_test_accuracy, headline_pairs, ladder, paired

TIMING_COLUMNS = ("epoch_seconds", "images_per_second")
CROSS_DEVICE_TOLERANCE = 0.5  # points of test accuracy, fresh and committed on other devices
COLUMNS = ["experiment", "seed", "committed_acc", "fresh_acc", "delta", "history_match",
           "tolerance", "match", "committed_device", "fresh_device"]


def device_type(record: dict) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"`` from a record's ``environment.device`` (``cuda:0``)."""
    return str(record.get("environment", {}).get("device", "unknown")).split(":")[0]


def history_matches(fresh: dict, committed: dict) -> bool:
    """Whether two records' per-epoch histories are equal, timing columns ignored (NaN equals
    NaN). A column only the fresh run logs (a reading added since, such as the fidelity to
    the teacher) reports, it does not train: it is not compared; a committed column the fresh
    run lacks is a difference."""
    a = {k: v for k, v in fresh.get("history", {}).items() if k not in TIMING_COLUMNS}
    b = {k: v for k, v in committed.get("history", {}).items() if k not in TIMING_COLUMNS}
    if not b.keys() <= a.keys():
        return False
    return all(np.array_equal(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float),
                              equal_nan=True) for k in b)


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


def compare_runs(fresh_root: str | Path, committed_root: str | Path | None, preset: Preset,
                 tolerance: float | None = 0.0) -> pd.DataFrame:
    """One row per committed run of an experiment present in ``fresh_root`` (the teacher
    included): experiment, seed, committed_acc and fresh_acc (test accuracy, %), delta
    (``|Δ|`` in points), history_match, tolerance, match, and both device types.

    ``tolerance`` in points; ``None`` picks it per run: 0 on the same device type (and then the
    history must match too), :data:`CROSS_DEVICE_TOLERANCE` across device types.
    """
    return compare_records(load_records(preset, fresh_root),
                           load_records(preset, committed_root), tolerance)


def compare_records(fresh_records: list[dict], committed_records: list[dict],
                    tolerance: float | None = 0.0) -> pd.DataFrame:
    """:func:`compare_runs` on records already loaded (same columns, same rules)."""
    fresh, committed = _by_run(fresh_records), _by_run(committed_records)
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


IMAGE_FLOOR = 3
"""Test images: the smallest accuracy difference the "within noise" level tolerates, so that
seeds that agree to the image (a zero spread) still allow a rounding-sized change."""


def _test_images(records: list[dict]) -> int:
    sizes = [r.get("provenance", {}).get("data", {}).get("sizes", {}).get("test")
             for r in records]
    sizes = [s for s in sizes if s]
    if not sizes:
        raise ValueError("the records do not state their test-set size (provenance.data.sizes)")
    return int(sizes[0])


def noise_frame(fresh: list[dict], committed: list[dict],
                seeds: list[int] | None = None) -> pd.DataFrame:
    """Level 2, one row per experiment the fresh records hold (the teacher aside): ``seeds``,
    ``bound`` (points: the committed seeds' spread, at least :data:`IMAGE_FLOOR` test images),
    ``worst`` (largest per-run ``|fresh - committed|``), ``committed_mean`` and its widened
    interval ``low``/``high``, ``fresh_mean``, ``categorical`` (seeds that ended at chance on
    one side only), ``missing`` (committed seeds without a fresh run) and ``ok``.

    ``seeds``: check only these seeds (a part, as after a one-seed rerun): the bound and the
    interval's half-width still come from every committed seed, the committed mean from the
    part's seeds alone, and only the part's seeds can be missing."""
    new, old = runs_frame(fresh, check=False), runs_frame(committed, check=False)
    if seeds is not None:
        new = new[new.seed.isin(seeds)]
    floor = 100 * IMAGE_FLOOR / _test_images(committed or fresh)
    rows = []
    for name in dict.fromkeys(new.experiment):
        if name == "teacher" or name not in set(old.experiment):
            continue
        a, b = final_test_accuracy(new, name), final_test_accuracy(old, name)
        common = b.index.intersection(a.index)
        spread = float(b.max() - b.min()) if len(b) > 1 else 0.0
        bound = max(spread, floor)
        half = (float(stats.t.ppf(0.975, len(b) - 1) * b.std(ddof=1) / math.sqrt(len(b)))
                if len(b) > 1 else 0.0)
        part = b if seeds is None else b[b.index.isin(seeds)]
        low, high = part.mean() - half - floor, part.mean() + half + floor
        chance_new = new[new.experiment == name].set_index("seed").at_chance
        chance_old = old[old.experiment == name].set_index("seed").at_chance
        categorical = [int(s) for s in common if chance_new[s] != chance_old[s]]
        worst = float((a[common] - b[common]).abs().max()) if len(common) else math.nan
        missing = [int(s) for s in part.index.difference(a.index)]
        ok = (not categorical and not missing and worst <= bound + 1e-9
              and low - 1e-9 <= a.mean() <= high + 1e-9)
        rows.append({"experiment": name, "seeds": len(common), "bound": bound, "worst": worst,
                     "committed_mean": float(part.mean()), "low": low, "high": high,
                     "fresh_mean": float(a.mean()), "categorical": categorical,
                     "missing": missing, "ok": bool(ok)})
    return pd.DataFrame(rows, columns=["experiment", "seeds", "bound", "worst",
                                       "committed_mean", "low", "high", "fresh_mean",
                                       "categorical", "missing", "ok"])


def verdict_steps(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The claims "a beats b" of a preset's verdict: the paper's ordering
    (:func:`tkd.verdict.ladder`) and the README's paired comparisons
    (:func:`tkd.verdict.headline_pairs`), choices on validation made on ``runs``."""
    steps = [(s["a"], s["b"]) for s in ladder(runs)] + headline_pairs(runs)
    return list(dict.fromkeys(steps))


def conclusion_frame(fresh: list[dict], committed: list[dict]) -> pd.DataFrame:
    """Level 3, one row per step of either side's :func:`verdict_steps` (the committed runs
    restricted to the fresh ones' experiments): ``a``, ``b``, ``committed`` and ``fresh``
    (holds / refuted / not shown, or "not a step" where validation chose another method) and
    ``ok`` (both read the same)."""
    new = runs_frame(fresh, check=False)
    old = runs_frame(committed, check=False)
    old = old[old.experiment.isin(set(new.experiment))]
    ours, theirs = verdict_steps(new), verdict_steps(old)
    rows = []
    for a, b in dict.fromkeys([*theirs, *ours]):
        was = paired(old, a, b)["reading"] if (a, b) in theirs else "not a step"
        now = paired(new, a, b)["reading"] if (a, b) in ours else "not a step"
        rows.append({"a": a, "b": b, "committed": was, "fresh": now, "ok": was == now})
    return pd.DataFrame(rows, columns=["a", "b", "committed", "fresh", "ok"])


def levels(fresh: list[dict], committed: list[dict], seeds: list[int] | None = None) -> dict:
    """All three levels for a preset's ``fresh`` records against its ``committed`` ones (each
    folder read once by the caller, :func:`tkd.records.load_records`): ``{"identical": frame,
    "noise": frame, "conclusions": frame, "part": ...}`` (see :func:`compare_records`,
    :func:`noise_frame`, :func:`conclusion_frame`).

    ``seeds``: check only the runs of these seeds (after rerunning some seeds only; ``None``:
    every committed seed). Then ``"part"`` is ``{"seeds": [...], "committed": [...]}``, the
    seeds checked and those the records hold, and level 3 compares the fresh runs with the
    committed ones of the same seeds, or is not checked (``"conclusions": None``) with fewer
    than 2 seeds, which give no paired interval."""
    names = {r["config"]["experiment"] for r in fresh}
    committed = [r for r in committed if r["config"]["experiment"] in names]
    if seeds is None:
        return {"identical": compare_records(fresh, committed),
                "noise": noise_frame(fresh, committed),
                "conclusions": conclusion_frame(fresh, committed), "part": None}
    seeds = sorted(set(seeds))
    held = sorted({r["config"]["seed"] for r in committed if r["config"]["experiment"]
                   != "teacher"})
    unknown = [s for s in seeds if s not in held]
    if unknown:
        raise ValueError(f"seeds {unknown} have no committed record of these experiments "
                         f"(the records hold seeds {held})")
    fresh = [r for r in fresh if r["config"]["seed"] in seeds]
    part = [r for r in committed if r["config"]["seed"] in seeds]
    return {"identical": compare_records(fresh, part),
            "noise": noise_frame(fresh, committed, seeds),
            "conclusions": conclusion_frame(fresh, part) if len(seeds) >= 2 else None,
            "part": {"seeds": seeds, "committed": held}}


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def level_lines(result: dict) -> list[str]:
    """One line per level saying whether it holds and, if not, what failed; then one last
    line: whether the results came out again (levels 2 and 3). A part (``result["part"]``)
    is named in a first line and in the last."""
    exact, noise, steps = result["identical"], result["noise"], result["conclusions"]
    part = result.get("part")
    one = bool(len(exact) and exact.match.all())
    two = bool(len(noise) and noise.ok.all())
    three = None if steps is None else bool(steps.ok.all())
    lines = []
    if part:
        lines.append(f"checked a part: seeds {_seed_list(part['seeds'])} of the committed "
                     f"seeds {_seed_list(part['committed'])}")
    lines.append(f"level 1, identical: {'yes' if one else 'no'}: " + summary_line(exact))
    bad = [_noise_why(r, part) for r in noise[~noise.ok].itertuples()]
    lines.append(f"level 2, within noise: {'yes' if two else 'NO'}: {int(noise.ok.sum())}/"
                 f"{len(noise)} experiments within their seed spread (at least "
                 f"{IMAGE_FLOOR} test images)" + (f"; outside: {'; '.join(bad)}" if bad else ""))
    if steps is None:
        lines.append(f"level 3, same conclusions: not checked: a paired interval needs at "
                     f"least 2 seeds, the part has {len(part['seeds'])}")
    else:
        flipped = [f"`{r.a}` > `{r.b}` {r.committed} -> {r.fresh}"
                   for r in steps[~steps.ok].itertuples()]
        shown = int((steps.committed != NOT_SHOWN).sum())
        lines.append(f"level 3, same conclusions: {'yes' if three else 'NO'}: "
                     f"{int(steps.ok.sum())}/{len(steps)} verdict steps read the same ({shown} "
                     f"of them hold or are refuted in the records)"
                     + (f"; changed: {'; '.join(flipped)}" if flipped else ""))
    scope = ""
    if part:
        scope = (f" (the part checked: seeds {_seed_list(part['seeds'])}"
                 + ("; level 3 not checked" if steps is None else "") + ")")
    if two and three is not False:
        every = ("every run within noise" + (" and every conclusion the same"
                                             if three else ""))
        lines.append(f"REPRODUCED{scope}: {every} ("
                     + ("identical to the bit" if one else "not identical to the bit") + ")")
    else:
        lines.append(f"NOT REPRODUCED{scope}: " + " and ".join(
            name for name, held in (("level 2 (within noise)", two),
                                    ("level 3 (same conclusions)", three is not False))
            if not held) + " failed; see the lines above")
    return lines


def reproduced(result: dict) -> bool:
    """Whether levels 2 and 3 hold (level 3 where it was checked): the results came out
    again, on the part checked."""
    steps = result["conclusions"]
    return bool(len(result["noise"]) and result["noise"].ok.all()
                and (steps is None or steps.ok.all()))


def _noise_why(row, part: dict | None = None) -> str:
    if row.categorical:
        return (f"{row.experiment} seeds {row.categorical} ended at chance on one side only "
                "(a categorical mismatch)")
    if row.missing:
        hint = "" if part else " (to check only the seeds rerun: --seeds)"
        return f"{row.experiment} seeds {row.missing} have no fresh run{hint}"
    return (f"{row.experiment} (worst |Δ| {row.worst:.2f} > {row.bound:.2f} points, or mean "
            f"{row.fresh_mean:.2f} outside [{row.low:.2f}, {row.high:.2f}])")
