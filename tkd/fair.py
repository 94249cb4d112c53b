"""The fair comparison: one choice rule for every method, its tuned rows, the declared primary
claims with Holm's adjustment and the exploratory intervals with Benjamini–Hochberg's.

``docs/claims.md`` declares all of it before the runs. In short: every choice is made on
validation at seed 1 (:func:`choose`); each tuned method (:data:`tkd.experiments.TUNED_METHODS`)
chooses its setting at the rate 0.01 (:func:`chosen_setting`), then its rate from
:data:`tkd.experiments.TUNED_RATES` (:func:`tuned`); the five primary claims
(:data:`PRIMARY`) are read with Holm's step-down procedure (:func:`primary_claims`).
"""

from __future__ import annotations

import math

import pandas as pd

from tkd.experiments import (
    MARGINS,
    SETTING_GRIDS,
    TUNED_METHODS,
    TUNED_RATES,
    margin_experiment,
    rate_experiment,
)
from tkd.stats import benjamini_hochberg, holm, paired_difference

CHOICE_SEED = 1
SEEDS = (1, 2, 3, 4, 5)
ALPHA = 0.05
FIRST_MARGINS = 6
"""The paper's triplet starts with margins 1–40 (the first six of ``MARGINS``); a larger one is
added while the largest tried is the best on validation."""
PAPER_ROWS = ("ce-wd0.007", "kd-t4", "triplet")
"""The paper's settings at the paper's rate, run with every seed whatever is chosen."""


def validation_at_choice_seed(runs: pd.DataFrame, candidates: list[str]) -> pd.Series:
    """Final validation accuracy at :data:`CHOICE_SEED` of each candidate that has it, in the
    order of ``candidates``."""
    part = runs[(runs.seed == CHOICE_SEED) & runs.experiment.isin(candidates)]
    values = part.set_index("experiment").val_acc
    return values.reindex([c for c in candidates if c in values.index])


def choose(runs: pd.DataFrame, candidates: list[str]) -> str | None:
    """The candidate with the highest final validation accuracy at seed 1; a tie goes to the
    first listed. None while any candidate lacks its seed-1 run (the choice is not made yet)."""
    values = validation_at_choice_seed(runs, candidates)
    if len(values) < len(candidates):
        return None
    return next(c for c in candidates if math.isclose(values[c], values.max(), abs_tol=1e-12))


def setting_candidates(runs: pd.DataFrame, method: str) -> list[str]:
    """The settings ``method`` chooses from. For the paper's triplet, margins 1–40, then each
    larger margin of ``MARGINS`` while the largest so far is the best on validation."""
    if method == "student":
        return [TUNED_METHODS["student"]]
    if method != "triplet":
        return list(SETTING_GRIDS[method])
    margins = list(MARGINS[:FIRST_MARGINS])
    while len(margins) < len(MARGINS):
        names = [margin_experiment(m).name for m in margins]
        if choose(runs, names) != names[-1]:
            break
        margins.append(MARGINS[len(margins)])
    return [margin_experiment(m).name for m in margins]


def chosen_setting(runs: pd.DataFrame, method: str) -> str | None:
    """The setting ``method`` runs at (chosen at the rate 0.01), None while undecided."""
    return choose(runs, setting_candidates(runs, method))


def rate_candidates(setting: str) -> list[str]:
    """``setting`` at every rate of :data:`TUNED_RATES`."""
    return [rate_experiment(setting, lr).name for lr in TUNED_RATES]


def tuned(runs: pd.DataFrame, method: str) -> str | None:
    """The experiment of ``method`` at its chosen setting and chosen rate, None while
    undecided."""
    setting = chosen_setting(runs, method)
    return None if setting is None else choose(runs, rate_candidates(setting))


def control(runs: pd.DataFrame) -> str | None:
    """The teacher-free control at the mined triplet's chosen rate (None while undecided)."""
    setting, mined = chosen_setting(runs, "mined"), tuned(runs, "mined")
    if mined is None:
        return None
    rate = next(lr for lr in TUNED_RATES if rate_experiment(setting, lr).name == mined)
    return rate_experiment("triplet-self", rate).name


def tuned_rows(runs: pd.DataFrame) -> dict[str, str | None]:
    """Per tuned method (and ``"control"``), its experiment at the chosen setting and rate."""
    rows = {method: tuned(runs, method) for method in TUNED_METHODS}
    rows["control"] = control(runs)
    return rows


def pending(runs: pd.DataFrame, stage: int) -> list[tuple[str, tuple[int, ...]]]:
    """The (experiment, seeds) still missing for a grid stage: stage 2, the seed-1 runs that
    the choices need next (settings, then rates, then the control); stage 3, every seed of
    each chosen row, of the mined triplet at 0.01 and of the paper's rows."""
    have = set(zip(runs.experiment, runs.seed))
    wanted: list[tuple[str, tuple[int, ...]]] = []
    for method in TUNED_METHODS:
        setting = chosen_setting(runs, method)
        names = (setting_candidates(runs, method) if setting is None
                 else rate_candidates(setting))
        wanted += [(name, (CHOICE_SEED,)) for name in names]
    if stage == 2:
        if tuned(runs, "mined") is not None:
            wanted.append((control(runs), (CHOICE_SEED,)))
    else:
        rows = [*tuned_rows(runs).values(), chosen_setting(runs, "mined"), *PAPER_ROWS]
        wanted = [(name, SEEDS) for name in dict.fromkeys(rows) if name is not None]
    missing = [(name, tuple(s for s in seeds if (name, s) not in have))
               for name, seeds in wanted]
    return [(name, seeds) for name, seeds in missing if seeds]


def rival(runs: pd.DataFrame) -> str | None:
    """Today's logit KD at its strongest: the tuned DKD or the tuned DIST, whichever is better
    on validation at seed 1 (None while either is undecided)."""
    rows = [tuned(runs, "dkd"), tuned(runs, "dist")]
    return None if None in rows else choose(runs, rows)


def primary_pairs(runs: pd.DataFrame, logit_regression: str) -> list[tuple[str, str, str]]:
    """The five declared claims as (claim, a, b); a side still undecided is ``None``."""
    return [
        ("P1", "triplet", "kd-t4"),
        ("P2", "kd-t4", logit_regression),
        ("P3", logit_regression, "ce-wd0.007"),
        ("P4", tuned(runs, "mined"), tuned(runs, "kd")),
        ("P5", tuned(runs, "mined"), rival(runs)),
    ]


PRIMARY = {
    "P1": "the paper's triplet beats Hinton KD (paper's settings)",
    "P2": "Hinton KD beats logit regression (paper's settings)",
    "P3": "logit regression beats the student alone (paper's settings)",
    "P4": "the mined triplet beats Hinton KD (both tuned)",
    "P5": "the mined triplet beats today's logit KD (both tuned)",
}
"""The declared primary claims (``docs/claims.md``)."""


def _accuracy(runs: pd.DataFrame, name: str | None) -> pd.Series:
    part = runs[runs.experiment == name]
    return 100 * part.set_index("seed").test_acc


def primary_claims(runs: pd.DataFrame, logit_regression: str) -> pd.DataFrame:
    """The primary claims with Holm's step-down adjustment over the five (``docs/claims.md``):
    per claim ``a``, ``b``, ``n`` seeds, ``mean`` a − b (points), the raw two-sided paired
    p-value ``p``, Holm's ``rank``, its interval ``low``/``high`` at confidence
    1 − α/(m − rank + 1), and ``reading`` (holds, refuted, not shown)."""
    rows = []
    for claim, a, b in primary_pairs(runs, logit_regression):
        d = (paired_difference(_accuracy(runs, a), _accuracy(runs, b))
             if a and b else paired_difference(pd.Series(dtype=float), pd.Series(dtype=float)))
        rows.append({"claim": claim, "statement": PRIMARY[claim], "a": a, "b": b, **d})
    frame = pd.DataFrame(rows)
    adjusted = holm(frame.p.tolist(), ALPHA)
    frame["rank"] = [r["rank"] for r in adjusted]
    frame["decided"] = [r["decided"] for r in adjusted]
    for i, r in enumerate(adjusted):
        if frame.at[i, "n"] >= 2 and not math.isnan(frame.at[i, "p"]):
            confidence = 1 - r["level"]
            d = paired_difference(_accuracy(runs, frame.at[i, "a"]),
                                  _accuracy(runs, frame.at[i, "b"]), confidence)
            frame.loc[i, ["low", "high"]] = d["low"], d["high"]
    frame["reading"] = [("holds" if m > 0 else "refuted") if decided else "not shown"
                        for m, decided in zip(frame["mean"], frame.decided)]
    return frame


def exploratory(differences: list[dict]) -> list[dict]:
    """``differences`` (dicts with a ``p`` key, e.g. from :func:`tkd.stats.paired_difference`)
    with Benjamini–Hochberg's ``q`` and ``bh_reading`` ("holds at FDR 5 %" when ``q`` ≤ 0.05
    and the mean is positive, "refuted at FDR 5 %" when negative, else "not shown") and
    ``family`` (how many intervals the adjustment was over)."""
    qs = benjamini_hochberg([d["p"] for d in differences])
    out = []
    for d, q in zip(differences, qs):
        reading = ("not shown" if math.isnan(q) or q > ALPHA else
                   "holds at FDR 5 %" if d["mean"] > 0 else "refuted at FDR 5 %")
        out.append({**d, "q": q, "bh_reading": reading, "family": len(differences)})
    return out
