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

    Returns ``{"n", "mean", "std", "low", "high"}``; with one common seed the interval is
    undefined (NaN), with none every value is NaN.
    """
    common = a.index.intersection(b.index)
    d = (a.loc[common] - b.loc[common]).astype(float)
    n = len(d)
    if n == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "low": math.nan, "high": math.nan}
    mean = float(d.mean())
    std = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "std": std, "low": math.nan, "high": math.nan}
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def reading(difference: dict, a: str, b: str) -> str:
    """What an interval allows one to say: "a beats b", "b beats a" or "no difference shown"
    (the interval contains 0, or there are too few seeds for one)."""
    low, high = difference["low"], difference["high"]
    if math.isnan(low) or low <= 0 <= high:
        return "no difference shown"
    return f"{a} beats {b}" if low > 0 else f"{b} beats {a}"


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
