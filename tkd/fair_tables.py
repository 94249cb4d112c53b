"""The fair comparison's tables (``figures/<preset>/claims.md``, ``fair.md``, ``choices.md``,
``exploratory.md``) from a runs table: the primary claims, each method at its chosen setting
and rate with its fidelity to the teacher, every choice candidate by candidate, and the
exploratory intervals. The choices and statistics themselves are :mod:`tkd.fair`'s."""

from __future__ import annotations

import math

import pandas as pd

from tkd.experiments import EXPERIMENTS, LR_GRID, SETTING_GRIDS, TUNED_METHODS
from tkd.fair import (
    AUTHOR_RATE_CHECKS,
    CONTROL_RATE_CHECK,
    METHOD_NAMES,
    PAPER_ROWS,
    PENDING,
    SEEDS,
    TUNED_CLAIMS,
    TUNED_SEEDS,
    UNTUNED_GRIDS,
    at_control_rate,
    best_on_validation,
    chance_count,
    choose,
    chosen_setting,
    control,
    control_partner,
    evidence_by_seed,
    exploratory,
    logit_regression,
    primary_claims,
    primary_pairs,
    rate_candidates,
    seed_list,
    selection_seeds,
    setting_candidates,
    tuned,
    tuned_rows,
    untuned_rows,
    validation_at_choice_seed,
)
from tkd.stats import paired_difference


def _number(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:+.2f}"


def claims_markdown(runs: pd.DataFrame) -> str:
    """The primary claims as the README's table: each side's mean test accuracy over the seeds
    both have, their number, a − b with its Holm-adjusted interval, the two-sided paired
    p-value beside the level Holm tests it at, and the reading."""
    frame = primary_claims(runs, logit_regression(runs))
    lines = ["| | claim (a > b) | a | b | seeds | a − b (points) | Holm-adjusted interval "
             "| p (its Holm level) | reading |", "|---|---|---|---|---:|---:|---|---|---|"]
    for r in frame.to_dict("records"):
        sides = [("not chosen yet" if not name else f"`{name}` (no seed shared yet)"
                  if r["n"] == 0
                  else f"`{name}` {mean:.2f} %")
                 for name, mean in ((r["a"], r["a_mean"]), (r["b"], r["b_mean"]))]
        interval = (f"[{_signed(r['low'])}, {_signed(r['high'])}] "
                    f"({100 * (1 - r['level']):.2f} %)"
                    if r["n"] >= 2 else "–")
        reading = f"**{r['reading']}**" if r["reading"] == "refuted" else r["reading"]
        p = (("< 0.0001" if r["p"] < 1e-4 else f"{r['p']:.4f}") + f" ({r['level']:.4f})"
             if r["n"] >= 2 else "–")
        lines.append(f"| {r['claim']} | {r['statement']} | {sides[0]} | {sides[1]} | {r['n']} "
                     f"| {_signed(r['mean'])} | {interval} | {p} | {reading} |")
    decided, pending = int(frame.decided.sum()), int((frame.reading == PENDING).sum())
    short = [r["claim"] for r in frame.to_dict("records")
             if r["reading"] != PENDING and r["n"] < len(TUNED_SEEDS if r["claim"] in TUNED_CLAIMS
                                                         else SEEDS)]
    note = (f"\n{decided} of {len(frame)} claims decided. Each side's mean is over the seeds "
            "both sides share (the same method can read differently in two rows); a claim is "
            "*pending* while its two sides share fewer than two seeds or a side is not chosen "
            "yet, and *not shown* when its Holm test does not reject.")
    if short:
        note += (f" {', '.join(short)} {'rests' if len(short) == 1 else 'rest'} on fewer seeds "
                 "than declared so far: provisional.")
    if pending or short:
        note += (" The Holm levels above are provisional until every claim has its seeds: each "
                 "p-value moves the ranking.")
    note += "\n"
    return "\n".join(lines) + "\n" + note


def table_rows(runs: pd.DataFrame) -> list[tuple[str, str | None]]:
    """(role, experiment) of every row of the fair table: the paper's rows, each tuned method
    at its chosen setting and rate (None while undecided), Ba & Caruana at its chosen rate, the
    mined triplet at the paper's rate, the teacher-free control (and, exploratory, the control at
    the rate 0.003 when it has runs, with the mined triplet at that rate,
    :func:`tkd.fair.control_partner`) and the untuned methods. Rows
    without runs yet are kept: the table says so."""
    roles = {"ce-wd0.007": "paper's rate; the distilled students' weight decay",
             "kd-t4": "paper's setting", "triplet": "paper's setting"}
    rows: list[tuple[str, str | None]] = [(roles[name], name) for name in PAPER_ROWS]
    rows += [(f"tuned: {METHOD_NAMES[method]}", name)
             for method, name in tuned_rows(runs).items() if method != "control"]
    rows.append(("tuned: Ba & Caruana (its own rate grid)", choose(runs, LR_GRID["logit-mse"])))
    mined = chosen_setting(runs, "mined")
    if mined and mined != tuned(runs, "mined"):  # its own row when its rate is not 0.01
        rows.append(("mined triplet at the paper's rate", mined))
    rows.append(("teacher-free control", control(runs)))
    if CONTROL_RATE_CHECK in set(runs.experiment) and CONTROL_RATE_CHECK != control(runs):
        rows.append(("teacher-free control at 0.003, exploratory", CONTROL_RATE_CHECK))
        for method in ("mined", "student"):
            twin = at_control_rate(runs, method)
            if twin in set(runs.experiment) and twin != tuned(runs, method):
                rows.append((f"{METHOD_NAMES[method]} at the control's rate 0.003, "
                             "exploratory", twin))
    rows += [("untuned", name) for name in untuned_rows(runs)]
    return list(dict.fromkeys(rows))


def tuned_markdown(runs: pd.DataFrame) -> str:
    """The fair table: per row of :func:`table_rows` its learning rate, the seeds it is read
    over and its test accuracy there (mean ± sd, %, with how many runs ended at chance): every
    seed but the one a choice selected it by (:func:`tkd.fair.evidence_by_seed`), whose test
    accuracy has a column of its own;
    then its fidelity to the teacher on the test split over the same seeds (top-1 agreement,
    %, and mean KL(teacher ‖ student), nats; exploratory; "–" for records that lack it)."""
    selected = selection_seeds(runs)
    lines = ["| role | experiment | lr | seeds read | test acc. (%, mean ± sd) | selection run: "
             "test acc. (%) | agreement with teacher (%; its seeds) "
             "| KL(teacher ‖ student) (its seeds) |",
             "|---|---|---:|---|---|---:|---:|---:|"]
    for role, name in table_rows(runs):
        if name is None or name not in set(runs.experiment):
            what = "not chosen yet" if name is None else f"`{name}`"
            lines.append(f"| {role} | {what} | | none | no runs yet | | | |")
            continue
        part = runs[runs.experiment == name].set_index("seed")
        read = evidence_by_seed(runs, name, selected).index
        acc = 100 * part.test_acc[read]
        spread = f" ± {acc.std():.2f}" if len(acc) > 1 else ""
        chance = chance_count(part.loc[read])
        mean = (f"{acc.mean():.2f}{spread}" if len(acc) else "no seed yet") + (
            f" ({chance} at chance)" if chance else "")
        seed = selected.get(name)
        picked = (f"{100 * part.test_acc[seed]:.2f} (seed {seed})"
                  if seed in part.index else "– (not chosen)")
        agree, kl = (part.loc[read, key].dropna() if key in part else pd.Series(dtype=float)
                     for key in ("test_teacher_agreement", "test_teacher_kl"))
        fidelity = (f"{100 * agree.mean():.2f} ({len(agree)})" if len(agree) else "–",
                    f"{kl.mean():.3f} ({len(kl)})" if len(kl) else "–")
        lr = EXPERIMENTS[name].lr or 0.01 if name in EXPERIMENTS else 0.01
        lines.append(f"| {role} | `{name}` | {lr:g} | {seed_list(read)} | {mean} | {picked} "
                     f"| {fidelity[0]} | {fidelity[1]} |")
    return "\n".join(lines) + "\n"


def _candidates_cell(runs: pd.DataFrame, names: list[str], chosen: str | None) -> str:
    """``names`` with their validation accuracy at the choice seed (%), the chosen in bold."""
    values = validation_at_choice_seed(runs, names)
    cells = []
    for name in names:
        value = values.get(name)
        text = ("not run yet" if value is None else "diverged" if math.isnan(value)
                else f"{100 * value:.2f}")
        cells.append(f"**`{name}` {text}**" if name == chosen else f"`{name}` {text}")
    return ", ".join(cells)


def choice_steps(runs: pd.DataFrame) -> list[tuple[str, str, list[str], str | None]]:
    """Every choice made on validation, in order: (method, step, candidates, chosen or None)
    for each tuned method's setting at the rate 0.01 and then its rate, Ba & Caruana's rate
    and each untuned method's setting."""
    steps = []
    for method in TUNED_METHODS:
        setting = chosen_setting(runs, method)
        steps.append((METHOD_NAMES[method], "setting, at the rate 0.01",
                      setting_candidates(runs, method), setting))
        if setting:
            steps.append((METHOD_NAMES[method], "learning rate", rate_candidates(setting),
                          tuned(runs, method)))
    steps.append(("Ba & Caruana", "learning rate (its own grid)", LR_GRID["logit-mse"],
                  logit_regression(runs)))
    steps += [(f"`{family}` (untuned)", "setting, at the rate 0.01", grid,
               best_on_validation(runs, grid)) for family, grid in UNTUNED_GRIDS.items()]
    return [step for step in steps if len(step[2]) > 1]


def choices_markdown(runs: pd.DataFrame) -> str:
    """:func:`choice_steps` as a table: each candidate's final validation accuracy at seed 1
    (%), the chosen one in bold ("not run yet" or "diverged" where it has no number), and the
    chosen one's lead over the next best (points)."""
    lines = ["| method | choice | candidates: validation accuracy at seed 1 (%) "
             "| lead over the next (points) |", "|---|---|---|---:|"]
    budget: dict[str, set] = {}
    for method, step, names, chosen in choice_steps(runs):
        verdict = "" if chosen else " (not chosen yet)"
        values = sorted(validation_at_choice_seed(runs, names).dropna(), reverse=True)
        lead = f"{100 * (values[0] - values[1]):.2f}" if chosen and len(values) > 1 else "–"
        lines.append(f"| {method} | {step}{verdict} | {_candidates_cell(runs, names, chosen)} "
                     f"| {lead} |")
        budget.setdefault(method, set()).update(names)
    lines += ["", "Candidates per method, each one seed-1 run (its tuning budget): "
              + ", ".join(f"{method} {len(names)}" for method, names in budget.items()) + "."]
    checks = validation_at_choice_seed(runs, list(AUTHOR_RATE_CHECKS))
    if len(checks):
        lines += ["", "Outside the rule, exploratory: the authors' settings at the rate their "
                  "loss scale points to, which the grid (setting at 0.01, then rate) never "
                  "tries; they choose nothing. Validation accuracy at seed 1: "
                  + ", ".join([f"`{name}` " + ("diverged" if math.isnan(value)
                                               else f"{100 * value:.2f}")
                               for name, value in checks.items()]
                              + [f"`{name}` not run yet" for name in AUTHOR_RATE_CHECKS
                                 if name not in checks.index]) + "."]
    return "\n".join(lines) + "\n"


def exploratory_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """Every exploratory comparison of the fair table (a, b): the teacher-free control against
    the mined triplet and the student alone, the control at the rate 0.003 (outside the rule,
    once it has runs) against the mined triplet and the student alone at that same rate and the
    tuned student alone, Ba & Caruana at its chosen rate against the tuned student alone (P3
    with both sides tuned), the tuned paper's triplet against the tuned Hinton KD (P1 with both
    sides tuned), each tuned method against its paper's setting and against its own setting at
    the rate 0.01, the mined triplet against the other tuned methods and Ba & Caruana, each
    miner validation did not choose (at 0.01) against the tuned Hinton KD and DKD (P4 and P5
    with another miner), each untuned method against the tuned Hinton KD and mined triplet.
    Pairs with an undecided side, and the declared claims' pairs (read with Holm's adjustment,
    never as exploratory), are left out."""
    rows = tuned_rows(runs)
    mined, kd, student = rows["mined"], rows["kd"], rows["student"]
    pairs = [(mined, rows["control"]), (rows["control"], student), (mined, student),
             (control_partner(runs), CONTROL_RATE_CHECK), (CONTROL_RATE_CHECK, student),
             (CONTROL_RATE_CHECK, at_control_rate(runs, "student")),
             (choose(runs, LR_GRID["logit-mse"]), student),  # P3 with both sides tuned
             (rows["triplet"], kd)]  # P1 with both sides tuned
    pairs += [(rows[m], paper) for m, paper in (("student", "ce-wd0.007"), ("kd", "kd-t4"),
                                                ("triplet", "triplet"))]
    pairs += [(rows[m], chosen_setting(runs, m)) for m in TUNED_METHODS]  # rate vs 0.01
    pairs += [(mined, rows[m]) for m in ("triplet", "dkd", "dist")]
    pairs += [(mined, choose(runs, LR_GRID["logit-mse"]))]
    pairs += [(miner, rows[m]) for miner in SETTING_GRIDS["mined"]  # P4, P5 with another miner
              if miner != chosen_setting(runs, "mined") for m in ("kd", "dkd")]
    pairs += [(name, ref) for name in untuned_rows(runs) for ref in (kd, mined)]
    present = set(runs.experiment)
    primary = {frozenset(p[1:]) for p in primary_pairs(runs, logit_regression(runs))}
    return [(a, b) for a, b in dict.fromkeys(pairs) if a and b and a != b and a in present
            and b in present and frozenset((a, b)) not in primary]


def exploratory_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`exploratory_pairs` with their unadjusted paired 95 % intervals over the seeds
    both sides share, less any run a choice selected a side by (:func:`evidence_by_seed`),
    and the Benjamini–Hochberg reading over all of them (:func:`exploratory`). A pair with a
    side whose every run ended at chance is shown but read as nothing (``p`` NaN, out of the
    family): a student that learnt nothing says nothing about the other side."""
    selected = selection_seeds(runs)
    dead = _all_at_chance(runs)
    differences = []
    for a, b in exploratory_pairs(runs):
        d = paired_difference(evidence_by_seed(runs, a, selected),
                              evidence_by_seed(runs, b, selected))
        differences.append({"a": a, "b": b, **d, **({"p": math.nan} if {a, b} & dead else {})})
    frame = pd.DataFrame(exploratory(differences), columns=[
        "a", "b", "n", "mean", "low", "high", "p", "q", "bh_reading", "family"])
    at_chance = frame.a.isin(dead) | frame.b.isin(dead)
    frame.loc[at_chance, "bh_reading"] = "none: a side ended at chance"
    return frame


def _all_at_chance(runs: pd.DataFrame) -> set[str]:
    """The experiments whose every finished run ended at chance."""
    if "at_chance" not in runs or not len(runs):
        return set()
    every = runs.groupby("experiment").at_chance.all()
    return set(every[every].index)


def exploratory_markdown(frame: pd.DataFrame) -> str:
    """:func:`exploratory_frame` as markdown, its family size stated."""
    count = int(frame.p.notna().sum()) if len(frame) else 0
    lines = [f"Exploratory: {count} of these {len(frame)} pairs have an interval (two common "
             "seeds or more, and no side that ended at chance on every seed), unadjusted 95 %; "
             "Benjamini–Hochberg over those intervals at a false-discovery rate of 5 %.", "",
             "| a | b | seeds | a − b (points) | 95 % interval | p | BH q | BH reading |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for r in frame.to_dict("records"):
        interval = f"[{_signed(r['low'])}, {_signed(r['high'])}]" if r["n"] >= 2 else "–"
        lines.append(f"| `{r['a']}` | `{r['b']}` | {r['n']} | {_signed(r['mean'])} | "
                     f"{interval} | {_number(r['p'])} | {_number(r['q'])} | {r['bh_reading']} |")
    return "\n".join(lines) + "\n"
