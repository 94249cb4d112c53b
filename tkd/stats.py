"""The statistics behind the comparison: paired differences over seeds with a t-interval,
and the convergence rule every run is checked against.

A seed fixes a student's initial weights and its data order for every method (a paired
design), so two methods are compared through their per-seed differences ``d_s = a_s - b_s``:
mean ``d̄``, sample std ``s_d``, and the 95 % interval ``d̄ ± t_{0.975, n-1} · s_d / √n``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

CONVERGENCE_WINDOW = 3
CONVERGENCE_TOLERANCE = 0.2  # points of validation accuracy


def paired_difference(a: pd.Series, b: pd.Series, confidence: float = 0.95) -> dict:
    """``a - b`` over the seeds both have (Series indexed by seed, values in points).

    Returns ``{"n", "mean", "std", "low", "high", "p"}``, ``p`` the two-sided p-value of the
    paired t-test of mean 0 (1 when every difference is 0); with one common seed the interval
    and ``p`` are undefined (NaN), with none every value is NaN.
    """
    common = a.index.intersection(b.index)
    d = (a.loc[common] - b.loc[common]).astype(float)
    n = len(d)
    nan = math.nan
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "low": nan, "high": nan, "p": nan}
    mean = float(d.mean())
    std = float(d.std(ddof=1)) if n > 1 else nan
    if n < 2:
        return {"n": n, "mean": mean, "std": std, "low": nan, "high": nan, "p": nan}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half,
            "p": paired_p_value(mean, std, n)}


def paired_p_value(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of the paired t-test: ``2 P(T_{n-1} > |mean| / (std / sqrt(n)))``."""
    if std == 0:
        return 1.0 if mean == 0 else 0.0
    return float(2 * stats.t.sf(abs(mean) / (std / math.sqrt(n)), n - 1))


def holm(p_values: list[float], alpha: float = 0.05) -> list[dict]:
    """Holm's step-down procedure over ``p_values`` (NaN: a test without data, never decided).

    Ordered p(1) <= ... <= p(m), the hypothesis of rank r is rejected ("decided") when
    p(j) <= alpha / (m - j + 1) for every j <= r. Returns per input, in input order,
    ``{"rank", "level", "decided"}``: a decided hypothesis has the level of its step,
    ``alpha / (m - rank + 1)``; every other one the level of the step the procedure stopped
    at, ``alpha / (m - k)`` with k hypotheses decided, the level each of them was last tested
    at. The interval at confidence ``1 - level`` is then the one consistent with the
    decisions."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    out: list[dict] = [{} for _ in p_values]
    still = True
    for rank, i in enumerate(order, start=1):
        level = alpha / (m - rank + 1)
        still = still and not math.isnan(p_values[i]) and p_values[i] <= level
        out[i] = {"rank": rank, "level": level, "decided": still}
    decided = sum(o["decided"] for o in out)
    for o in out:
        if not o["decided"]:
            o["level"] = alpha / (m - decided)
    return out


def benjamini_hochberg(p_values: list[float]) -> list[float]:
    """Benjamini–Hochberg q-values (adjusted p-values) of ``p_values``; NaN stays NaN and does
    not count in the family. ``q(i) = min_{j >= i} p(j) m / j`` over the ordered p-values."""
    valid = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(valid)
    q = [math.nan] * len(p_values)
    running = 1.0
    for rank in range(m, 0, -1):
        p, i = valid[rank - 1]
        running = min(running, p * m / rank)
        q[i] = running
    return q


def direction(difference: dict) -> int:
    """The one reading rule of a paired interval of ``a - b``: +1 when it lies above 0 (a beats
    b), -1 when it lies below (b beats a), 0 when it contains 0 or there are too few seeds for
    one. :func:`reading` and :func:`tkd.verdict.step_reading` say it in words."""
    low, high = difference["low"], difference["high"]
    if math.isnan(low) or low <= 0 <= high:
        return 0
    return 1 if low > 0 else -1


def reading(difference: dict, a: str, b: str) -> str:
    """What an interval allows one to say (:func:`direction`): "a beats b", "b beats a" or
    "no difference shown"."""
    return {1: f"{a} beats {b}", -1: f"{b} beats {a}", 0: "no difference shown"}[
        direction(difference)]


def convergence_gap(val_acc: list[float] | np.ndarray,
                    window: int = CONVERGENCE_WINDOW) -> float:
    """Mean validation accuracy of the last ``window`` epochs minus that of the ``window``
    before, in points (accuracies given as fractions); NaN for runs shorter than 2·window."""
    values = 100 * np.asarray(val_acc, dtype=float)
    if len(values) < 2 * window:
        return math.nan
    return float(values[-window:].mean() - values[-2 * window:-window].mean())


def has_converged(val_acc, window: int = CONVERGENCE_WINDOW,
                  tolerance: float = CONVERGENCE_TOLERANCE) -> bool:
    """The rule: |last-``window`` mean − previous-``window`` mean| ≤ ``tolerance`` points."""
    gap = convergence_gap(val_acc, window)
    return not math.isnan(gap) and abs(gap) <= tolerance


def phase_ends(epochs: int, lr_step: int) -> list[int]:
    """The number of epochs finished at the end of each phase of a step schedule (×gamma every
    ``lr_step`` epochs): the decays that fall inside the run, then the run's end. E.g.
    ``phase_ends(30, 10) == [10, 20, 30]``."""
    return [*range(lr_step, epochs, lr_step), epochs]


def phase_gaps(val_acc: list[float] | np.ndarray, lr_step: int,
               window: int = CONVERGENCE_WINDOW) -> list[float]:
    """For each phase of the schedule, :func:`convergence_gap` of the validation accuracy up to
    the phase's last epoch (points): the mean of its last ``window`` epochs minus the mean of
    the ``window`` before. NaN for a phase shorter than 2·``window`` epochs. Divided by
    ``window`` it is the slope at the decay in points per epoch."""
    values = np.asarray(val_acc, dtype=float)
    starts = [0, *phase_ends(len(values), lr_step)[:-1]]
    return [convergence_gap(values[start:end], window) if end - start >= 2 * window else math.nan
            for start, end in zip(starts, phase_ends(len(values), lr_step))]


def phases_converged(val_acc, lr_step: int, window: int = CONVERGENCE_WINDOW,
                     tolerance: float = CONVERGENCE_TOLERANCE) -> bool:
    """The per-phase rule: before every decay the validation accuracy has stopped rising
    (:func:`phase_gaps` ≤ ``tolerance`` points; a fall is the noise of a high learning rate,
    not a reason to train longer at it), and at the end it is flat (|gap| ≤ ``tolerance``)."""
    gaps = phase_gaps(val_acc, lr_step, window)
    return (bool(gaps) and not any(math.isnan(g) for g in gaps)
            and all(g <= tolerance for g in gaps[:-1]) and abs(gaps[-1]) <= tolerance)


def bh_readings(means: list[float], p_values: list[float], rate: float = 0.05) -> list[str]:
    """What each of a family of exploratory intervals says after Benjamini–Hochberg at
    false-discovery rate ``rate``: "holds" / "refuted" where its q-value is at most ``rate``
    (by the sign of its mean difference), else "not shown"."""
    return ["not shown" if math.isnan(q) or q > rate else "holds" if m > 0 else "refuted"
            for m, q in zip(means, benjamini_hochberg(p_values))]


AHEAD_OR_BEHIND = {"holds": "ahead", "refuted": "behind", "not shown": "not shown"}
"""A reading (:func:`bh_readings`, or a paired difference's) in a cell of a row − column table
of exploratory intervals: a direction, not a verdict on a claim."""


def exploratory_note(count: int, grid: bool = False) -> str:
    """The line above a table of exploratory intervals; ``grid``: a table of row − column
    cells, whose readings are :data:`AHEAD_OR_BEHIND`."""
    words = (" In a cell, *ahead* or *behind* says that the interval of row − column lies above "
             "or below zero (the row's method ahead of or behind the column's), unadjusted, "
             "then after \"BH:\"." if grid else "")
    return (f"Exploratory: {count} unadjusted 95 % interval{'s' if count != 1 else ''}; the "
            "reading after Benjamini–Hochberg over this table's intervals (false-discovery "
            f"rate 5 %) is beside each.{words}\n\n")
