"""The paper's question answered from a runs table: its claimed ordering checked step by step
with paired 95 % intervals, and the same gaps compared across schedule lengths.

The paper claims triplet > Hinton KD > logit regression (Ba & Caruana) > the student alone.
Each step "a > b" is read from the paired interval of ``a - b`` (final test accuracy, points):

- **holds**: the interval excludes 0 on the claimed side;
- **refuted**: the interval excludes 0 on the other side (b beats a);
- **not shown**: the interval contains 0, or there are too few common seeds for one.

The student alone of the ladder is ``ce-wd0.007``, the control that differs from the distilled
students only in its loss; ``ce`` (the authors' weight decay 0.01) stays in the tables. Logit
regression enters at the learning rate chosen on validation from its grid, while every other
method uses the paper's rate; the text says so.
"""

from __future__ import annotations

import math

import pandas as pd

from tkd.experiments import MINED, MODERN_GRIDS, WEIGHT_GRIDS
from tkd.fair import (
    accuracy_by_seed,
    best_on_validation,
    chance_count,
    evidence_by_seed,
    seed_list,
    selection_seeds,
    validation_ties,
)
from tkd.stats import (
    AHEAD_OR_BEHIND,
    bh_readings,
    direction,
    exploratory_note,
    paired_difference,
)

HOLDS, REFUTED, NOT_SHOWN = "holds", "refuted", "not shown"
STUDENT_ALONE = "ce-wd0.007"
MSE_FAMILIES = {"logit-mse": ["logit-mse", "logit-mse-lr0.003", "logit-mse-lr0.001"],
                "ce-mse": ["ce-mse", "ce-mse-lr0.003", "ce-mse-lr0.001"]}
"""Ba & Caruana's rows: each family's learning-rate grid {0.01, 0.003, 0.001}."""
SCHEDULE_PAIRS = [("kd-t4", "triplet"), ("triplet-batch-semihard", "kd-t4"),
                  ("triplet", STUDENT_ALONE), ("kd-t4", STUDENT_ALONE)]
"""The headline gaps followed across schedule lengths."""
RELATION_REFERENCES = ["kd-t4", "triplet"]
"""What the relation- and feature-based methods are measured against (and the best mined
triplet on validation)."""


def step_reading(difference: dict) -> str:
    """What the paired interval of ``a - b`` says of the claim "a beats b": :data:`HOLDS`,
    :data:`REFUTED` or :data:`NOT_SHOWN` (:func:`tkd.stats.direction`)."""
    return {1: HOLDS, -1: REFUTED, 0: NOT_SHOWN}[direction(difference)]


def ordering_reading(readings: list[str]) -> str:
    """A chain of claims: refuted if any step is, holds if every step does, else not shown."""
    if not readings:
        return NOT_SHOWN
    if REFUTED in readings:
        return REFUTED
    return HOLDS if all(r == HOLDS for r in readings) else NOT_SHOWN


def final_test_accuracy(runs: pd.DataFrame, experiment: str) -> pd.Series:
    """Final test accuracy (points) of ``experiment``'s runs, indexed by seed
    (:func:`tkd.fair.accuracy_by_seed`)."""
    return accuracy_by_seed(runs, experiment)


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


def paired(runs: pd.DataFrame, a: str, b: str, selected: dict[str, int] | None = None) -> dict:
    """:func:`tkd.stats.paired_difference` of ``a - b`` over their common seeds, plus the
    names, :func:`step_reading` and ``missing`` (those of ``a``, ``b`` without any run). With
    ``selected`` (:func:`tkd.fair.selection_seeds`), an exploratory reading: the run a choice
    on validation selected either side by is left out (:func:`tkd.fair.evidence_by_seed`)."""
    d = paired_difference(evidence_by_seed(runs, a, selected or {}),
                          evidence_by_seed(runs, b, selected or {}))
    missing = [n for n in (a, b) if n not in set(runs.experiment)]
    return {"a": a, "b": b, **d, "reading": step_reading(d), "missing": missing}


def chosen_rates(runs: pd.DataFrame) -> dict[str, str]:
    """Per Ba & Caruana family (:data:`MSE_FAMILIES`) with runs, the experiment whose learning
    rate is best on validation."""
    chosen = {family: best_on_validation(runs, names) for family, names in MSE_FAMILIES.items()}
    return {family: name for family, name in chosen.items() if name}


def ladder(runs: pd.DataFrame) -> list[dict]:
    """The paper's ordering as paired steps: triplet > kd-t4 > logit MSE (rate chosen on
    validation) > the student alone (``ce-wd0.007``). A step without runs on both sides has
    ``n == 0`` and reads :data:`NOT_SHOWN`."""
    mse = chosen_rates(runs).get("logit-mse", "logit-mse")
    steps = [("triplet", "kd-t4"), ("kd-t4", mse), (mse, STUDENT_ALONE)]
    return [paired(runs, a, b) for a, b in steps]


def _step_text(step: dict) -> str:
    if step.get("missing"):
        absent = " and ".join(f"`{n}`" for n in step["missing"])
        return f"`{step['a']}` > `{step['b']}`: {NOT_SHOWN} ({absent} not run in this preset)"
    if step["n"] < 2:
        return (f"`{step['a']}` > `{step['b']}`: {NOT_SHOWN} ({step['n']} common "
                f"seed{'' if step['n'] == 1 else 's'})")
    return (f"`{step['a']}` > `{step['b']}`: **{step['reading']}**, {step['mean']:+.2f} points "
            f"[{step['low']:+.2f}, {step['high']:+.2f}], {step['n']} seeds")


def _direction_text(step: dict) -> str:
    """An exploratory paired difference ``a - b`` as a direction, not a verdict: *ahead*,
    *behind* or *not shown* (:data:`tkd.stats.AHEAD_OR_BEHIND`), its unadjusted interval."""
    if step.get("missing") or step["n"] < 2:
        return _step_text(step)
    return (f"`{step['a']}` − `{step['b']}`: {AHEAD_OR_BEHIND[step['reading']]}, "
            f"{step['mean']:+.2f} points [{step['low']:+.2f}, {step['high']:+.2f}] "
            f"(unadjusted), {step['n']} seeds")


def _claim_text(claim: dict) -> str:
    """One primary claim of :func:`tkd.fair.primary_claims` as text."""
    a, b = (f"`{n}`" if n else "(not chosen yet)" for n in (claim["a"], claim["b"]))
    head = f"{claim['claim']} {a} > {b}: "
    if claim["n"] < 2:
        return head + f"{claim['reading']} ({claim['n']} common seed" \
            f"{'' if claim['n'] == 1 else 's'})"
    reading = NOT_SHOWN if claim["reading"] == NOT_SHOWN else f"**{claim['reading']}**"
    return head + (f"{reading}, {claim['mean']:+.2f} points [{claim['low']:+.2f}, "
                   f"{claim['high']:+.2f}], {claim['n']} seeds")


def _steps_summary(claims: list[dict]) -> str:
    """Which steps of a chain of claims decide its reading, e.g. ": P1 reversed; P2, P3 not
    shown" (empty when every step reads the same)."""
    words = {HOLDS: "holds", REFUTED: "reversed"}
    groups: dict[str, list[str]] = {}
    for claim in claims:
        groups.setdefault(words.get(claim["reading"], claim["reading"]), []).append(claim["claim"])
    if len(groups) < 2:
        return ""
    return ": " + "; ".join(f"{', '.join(names)} {word}" for word, names in groups.items())


def _fair_text(runs: pd.DataFrame, preset: str) -> str:
    """The declared primary claims of a fair-comparison preset, Holm-adjusted, and the
    teacher-free control as an exploratory reading."""
    from tkd.fair import logit_regression, primary_claims

    claims = primary_claims(runs, logit_regression(runs)).to_dict("records")
    overall = ordering_reading([c["reading"] for c in claims[:3]])
    text = (f"**At the paper's settings on `{preset}` (this teacher and student), the paper's "
            f"ordering (triplet > Hinton KD > logit MSE > student alone) is {overall}"
            f"{_steps_summary(claims[:3])}.** "
            "Primary claims, Holm-adjusted over five (docs/claims.md): "
            + "; ".join(map(_claim_text, claims[:3])) + ". **The package's own claims, each "
            "method at the setting and learning rate chosen on validation at seed 1, read over "
            "seeds 2–6:** "
            + "; ".join(map(_claim_text, claims[3:])) + ". ")
    return text + _control_text(runs)


def _control_text(runs: pd.DataFrame) -> str:
    """The teacher-free control as an exploratory reading: the paired gap to the mined triplet
    when it trains, a plain statement when every run ended at chance, and the control at the
    smaller rate outside the rule (:data:`tkd.fair.CONTROL_RATE_CHECK`) when it has runs."""
    from tkd.fair import CONTROL_RATE_CHECK, at_control_rate, control, control_partner, tuned

    mined, free = tuned(runs, "mined"), control(runs)
    if not (mined and free and free in set(runs.experiment)):
        return ""
    text = ("Exploratory, the teacher-free control `" + free + "` (the mined triplet with no "
            "teacher: anchor the student's own logits, positive another image of the same "
            "class): ")
    own, selected = runs[runs.experiment == free], selection_seeds(runs)
    chance = chance_count(own)
    if chance == len(own):
        text += (f"all {chance} of its runs ended at chance, a control that does not train, so "
                 "it says nothing about the teacher's share. ")
    else:
        step = paired(runs, mined, free, selected)
        text += _direction_text(step) + (f" ({chance} of its {len(own)} runs ended at chance)"
                                    if chance else "") + ". "
    slower = accuracy_by_seed(runs, CONTROL_RATE_CHECK)
    if len(slower):
        text += f"At the rate 0.003, outside the rule (`{CONTROL_RATE_CHECK}`), it trains: "
        partner = paired(runs, control_partner(runs), CONTROL_RATE_CHECK, selected)
        if partner["n"] >= 2:  # the mined triplet at the same rate: a paired reading
            text += "against the mined triplet at that rate, " + _direction_text(partner)
            alone = paired(runs, CONTROL_RATE_CHECK, at_control_rate(runs, "student"), selected)
            text += ("; against the student alone at that rate, " + _direction_text(alone)
                     if alone["n"] >= 2 else "") + ". "
        else:
            evidence = evidence_by_seed(runs, mined, selected)
            text += (f"{slower.mean():.2f} % test over seeds {seed_list(slower.index)}, against "
                     f"{evidence.mean():.2f} % for the mined triplet at its rate 0.01 over seeds "
                     f"{seed_list(evidence.index)}: two rates, so a direction, not a paired "
                     "reading. ")
    return text


def verdict_markdown(runs: pd.DataFrame, preset: str,
                     failures: pd.DataFrame | None = None) -> str:
    """``verdict.md`` of a preset from its runs table (the teacher's row included): the
    paper's claimed ordering read step by step (:func:`verdict_text`), with the teacher's
    accuracy; for a preset of the declared comparison the diverged runs (``failures``,
    :func:`tkd.records.load_failures`) count as lost. A line saying how to make the records
    when there are no students yet."""
    from tkd.fair import FAIR_PRESETS, with_failures

    students = runs[runs.experiment != "teacher"] if len(runs) else runs
    if not len(students):
        return (f"No records for preset {preset!r} yet: run "
                f"`python -m tkd reproduce --preset {preset}`.")
    teacher = runs[runs.experiment == "teacher"]
    if preset in FAIR_PRESETS and failures is not None:
        students = with_failures(students, failures)
    return verdict_text(students, preset, float(teacher.test_acc.iloc[0]) if len(teacher)
                        else None)


def verdict_text(runs: pd.DataFrame, preset: str, teacher_acc: float | None = None) -> str:
    """A markdown paragraph. For a preset of the declared comparison (``docs/claims.md``): the
    primary claims with Holm's adjustment and the teacher-free control. For the others: the
    paper's ordering step by step (unadjusted 95 % intervals), the learning rates that were
    tuned, the best mined triplet against Hinton KD. Then whether any student reaches the
    teacher."""
    from tkd.fair import FAIR_PRESETS

    if preset in FAIR_PRESETS:
        text = _fair_text(runs, preset)
    else:
        text = _ladder_text(runs, preset)
    if teacher_acc is not None:
        means = 100 * runs.groupby("experiment").test_acc.mean()
        above = sorted(means[means > 100 * teacher_acc].index)
        text += (f"The teacher reaches {100 * teacher_acc:.2f} %; "
                 + (f"students above it: {', '.join(f'`{n}`' for n in above)}." if above
                    else "no student reaches it."))
    return text + "\n"


def _ladder_text(runs: pd.DataFrame, preset: str) -> str:
    """The paper's ordering with unadjusted intervals, the tuned rates, the best mined triplet
    against Hinton KD, and the relation- and today's logit-KD sentences."""
    steps = ladder(runs)
    overall = ordering_reading([s["reading"] for s in steps])
    text = (f"**Paper's ordering (triplet > Hinton KD > logit MSE > student alone) on "
            f"`{preset}`: {overall}.** At the paper's settings, unadjusted 95 % intervals: "
            + "; ".join(map(_step_text, steps)) + ". ")
    rates = chosen_rates(runs)
    if rates:
        tried = {f: sum(n in set(runs.experiment) for n in MSE_FAMILIES[f]) for f in rates}
        text += ("Ba & Caruana's learning rate was chosen on validation ("
                 + ", ".join(f"`{name}` of {tried[f]} rate{'s' if tried[f] > 1 else ''} run"
                             for f, name in rates.items())
                 + "); every other method uses the paper's 0.01. ")
    mined = best_on_validation(runs, MINED)
    if mined and "kd-t4" in set(runs.experiment):
        others = [f"`{n}`" for n in validation_ties(runs, MINED) if n != mined]
        tie = f" (tied on validation with {', '.join(others)})" if others else ""
        text += (f"The best mined triplet on validation{tie}: "
                 + _step_text(paired(runs, mined, "kd-t4", selection_seeds(runs))) + ". ")
    return text + relations_sentence(runs) + modern_sentence(runs)


def schedule_frame(runs_by_length: dict[int, pd.DataFrame],
                   pairs: list[tuple[str, str]] | None = None,
                   min_seeds: int = 3) -> pd.DataFrame:
    """The gaps of :data:`SCHEDULE_PAIRS` (or ``pairs``) at each schedule length: one row per
    (pair, length) with columns a, b, first_phase (epochs before the first decay), n, mean,
    low, high, reading. ``runs_by_length`` maps the first-phase length to a runs table. Each
    gap is paired over the seeds it has at every length that has ``min_seeds`` of them, so
    those lengths differ only in the schedule; a length still short of ``min_seeds`` (its
    runs under way) is shown over the seeds it has, and leaves the others as they are."""
    rows = []
    for a, b in pairs or SCHEDULE_PAIRS:
        seeds = {n: set(r.seed[r.experiment == a]) & set(r.seed[r.experiment == b])
                 for n, r in sorted(runs_by_length.items())}
        seeds = {n: s for n, s in seeds.items() if s}
        full = [s for s in seeds.values() if len(s) >= min_seeds]
        common = set.intersection(*full) if full else set()
        for length, have in seeds.items():
            runs = runs_by_length[length]
            step = paired(runs[runs.seed.isin(common if len(have) >= min_seeds else have)], a, b)
            rows.append({"a": a, "b": b, "first_phase": length, "n": step["n"],
                         "mean": step["mean"], "low": step["low"], "high": step["high"],
                         "p": step["p"], "reading": step["reading"]})
    return pd.DataFrame(rows, columns=["a", "b", "first_phase", "n", "mean", "low", "high",
                                       "p", "reading"])


def schedule_markdown(frame: pd.DataFrame) -> str:
    """:func:`schedule_frame` as a markdown table: one row per gap, one column per length
    (each gap over the same seeds at every length)."""
    lengths = sorted(frame.first_phase.unique())
    p = frame.p if "p" in frame else pd.Series(math.nan, index=frame.index)
    frame = frame.assign(bh=bh_readings(frame["mean"].tolist(), p.tolist()))
    lines = ["| gap (points) | " + " | ".join(f"first phase {n} epochs" for n in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    for (a, b), group in frame.groupby(["a", "b"], sort=False):
        cells = []
        for n in lengths:
            row = group[group.first_phase == n]
            if not len(row):
                cells.append("–")
                continue
            r = row.iloc[0]
            cells.append(f"{r['mean']:+.2f} [{r.low:+.2f}, {r.high:+.2f}] ({r.n} seeds, "
                         f"{AHEAD_OR_BEHIND[r.reading]}; BH: {AHEAD_OR_BEHIND[r.bh]})"
                         if r.n > 1 else f"{r['mean']:+.2f} (1 seed)")
        lines.append(f"| `{a}` − `{b}` | " + " | ".join(cells) + " |")
    return exploratory_note(int((frame.n > 1).sum()), grid=True) + "\n".join(lines) + "\n"


def relation_methods(runs: pd.DataFrame) -> list[str]:
    """The relation- and feature-based experiments with runs: RKD on embeddings and on logits,
    PKT and the FitNets hint, each at its weight chosen on validation from its grid in
    :data:`~tkd.experiments.WEIGHT_GRIDS`."""
    chosen = [best_on_validation(runs, grid) for grid in WEIGHT_GRIDS.values()]
    present = set(runs.experiment)
    return [n for n in ("rkd", "rkd-logits", *chosen) if n and n in present]


def relations_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Each of :func:`relation_methods` against Hinton KD, the paper's triplet and the best
    mined triplet on validation: one row per pair with columns a, b, n, mean, low, high
    (paired difference of final test accuracy, points, over the seeds both share less any run
    a choice selected either side by: :func:`tkd.fair.evidence_by_seed`) and reading."""
    mined = best_on_validation(runs, MINED)
    references = [r for r in [*RELATION_REFERENCES, mined] if r in set(runs.experiment)]
    selected = selection_seeds(runs)
    rows = [paired(runs, a, b, selected) for a in relation_methods(runs) for b in references]
    columns = ["a", "b", "n", "mean", "low", "high", "p", "reading"]
    return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)


def relations_markdown(frame: pd.DataFrame) -> str:
    """:func:`relations_frame` as a markdown table, one row per method, one column per
    reference: ``mean [low, high] (n seeds, reading)``."""
    references = list(dict.fromkeys(frame.b))
    p = frame.p if "p" in frame else pd.Series(math.nan, index=frame.index)
    frame = frame.assign(bh=bh_readings(frame["mean"].tolist(), p.tolist()))
    lines = ["| method | " + " | ".join(f"− `{r}` (points)" for r in references) + " |",
             "|---|" + "---|" * len(references)]
    for a, group in frame.groupby("a", sort=False):
        cells = []
        for r in references:
            row = group[group.b == r]
            step = row.iloc[0] if len(row) else None
            cells.append("–" if step is None else
                         "no common seed yet" if step.n == 0 else
                         f"{step['mean']:+.2f} (1 seed)" if step.n < 2 else
                         f"{step['mean']:+.2f} [{step.low:+.2f}, {step.high:+.2f}] "
                         f"({step.n} seeds, {AHEAD_OR_BEHIND[step.reading]}; "
                         f"BH: {AHEAD_OR_BEHIND[step.bh]})")
        lines.append(f"| `{a}` | " + " | ".join(cells) + " |")
    shown = int((frame.n >= 2).sum())
    return exploratory_note(shown, grid=True) + "\n".join(lines) + "\n"


def relations_sentence(runs: pd.DataFrame) -> str:
    """One sentence per reference: each relation- or feature-based method against Hinton KD
    and the best mined triplet (empty when none has runs)."""
    frame = relations_frame(runs)
    mined = best_on_validation(runs, MINED)
    parts = [_step_text(r) for r in frame.to_dict("records") if r["b"] in ("kd-t4", mined)]
    if not parts:
        return ""
    return "Relation- and feature-based KD (RKD at RepDistiller's weights; PKT's and the " \
           "hint's weights chosen on validation): " + "; ".join(parts) + ". "


def modern_methods(runs: pd.DataFrame) -> list[str]:
    """Today's logit distillation with runs (DKD, DIST, KD on standardized logits, the paper's
    and the semi-hard triplet on standardized logits), each at its setting chosen on validation
    from its grid in :data:`~tkd.experiments.MODERN_GRIDS` by :func:`tkd.fair.best_on_validation`
    (seed 1), the fair comparison's rule: for DKD and DIST, whose grids are their fair setting
    grids, the same choice as :func:`tkd.fair.chosen_setting` once every candidate has run."""
    chosen = [best_on_validation(runs, grid) for grid in MODERN_GRIDS.values()]
    return [n for n in chosen if n]


def modern_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Each of :func:`modern_methods` against Hinton KD, the paper's triplet and the best mined
    triplet on validation, and each standardized triplet against the same triplet on raw
    logits: one row per pair, columns a, b, n, mean, low, high (points, over the seeds both
    share less any run a choice selected either side by) and reading."""
    mined = best_on_validation(runs, MINED)
    present = set(runs.experiment)
    references = [r for r in ["kd-t4", "triplet", mined] if r in present]
    raw = {"triplet-ls": "triplet", "triplet-batch-semihard-ls": "triplet-batch-semihard"}
    pairs = [(a, b) for a in modern_methods(runs) for b in references]
    for family, base in raw.items():
        chosen = best_on_validation(runs, MODERN_GRIDS[family])
        if chosen and base in present:
            pairs.append((chosen, base))
    selected = selection_seeds(runs)
    rows = [paired(runs, a, b, selected) for a, b in dict.fromkeys(pairs)]
    columns = ["a", "b", "n", "mean", "low", "high", "p", "reading"]
    return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)


def modern_sentence(runs: pd.DataFrame) -> str:
    """One sentence: each of today's logit-KD methods against Hinton KD and the best mined
    triplet (empty when none has runs)."""
    mined = best_on_validation(runs, MINED)
    frame = modern_frame(runs)
    parts = [_step_text(r) for r in frame.to_dict("records") if r["b"] in ("kd-t4", mined)]
    if not parts:
        return ""
    return "Today's logit KD (DKD, DIST, logit standardization; settings chosen on " \
           "validation): " + "; ".join(parts) + ". "


def modern_summary(runs: pd.DataFrame) -> str:
    """One sentence for the README: each of today's logit-KD methods (at its setting chosen on
    validation) against Hinton KD and the best mined triplet, with its interval once it has
    two seeds or more (empty when none has runs)."""
    mined = best_on_validation(runs, MINED)
    frame = modern_frame(runs)
    cells = []
    for a, group in frame.groupby("a", sort=False):
        parts = []
        for row in group[group.b.isin(["kd-t4", mined])].to_dict("records"):
            gap = (f"{row['mean']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}] ({row['n']} "
                   f"seeds, {AHEAD_OR_BEHIND[row['reading']]})" if row["n"] > 1 else
                   f"{row['mean']:+.2f} (1 seed)" if row["n"] else "no common seed yet")
            parts.append(f"{gap} against `{row['b']}`")
        if parts:
            cells.append(f"`{a}` " + " and ".join(parts))
    if not cells:
        return ""
    return ("Today's logit distillation under the same protocol, each at its setting chosen on "
            "validation (points of test accuracy): " + "; ".join(cells) + ".\n")
