"""The fair comparison: one choice rule for every method, its tuned rows, the declared primary
claims with Holm's adjustment and the exploratory intervals with Benjamini–Hochberg's.

``docs/claims.md`` declares all of it before the runs. In short: every choice of every method,
here and in :mod:`tkd.verdict`, is made on validation at seed 1 (:func:`best_on_validation`;
:func:`choose` once every candidate has run); each tuned method
(:data:`tkd.experiments.TUNED_METHODS`) chooses its setting at the rate 0.01
(:func:`chosen_setting`), then its rate from :data:`tkd.experiments.TUNED_RATES`
(:func:`tuned`); the five primary claims (:data:`PRIMARY`) are read with Holm's step-down
procedure (:func:`primary_claims`).
"""

from __future__ import annotations

import math

import pandas as pd

from tkd.experiments import (
    EXPERIMENTS,
    LR_GRID,
    MARGINS,
    MODERN_GRIDS,
    SETTING_GRIDS,
    TUNED_METHODS,
    TUNED_RATES,
    WEIGHT_GRIDS,
    Preset,
    margin_experiment,
    rate_experiment,
)
from tkd.stats import benjamini_hochberg, holm, paired_difference

FAIR_PRESETS = ("fashion",)
"""The presets whose comparison ``docs/claims.md`` declares: their figures hold the fair
comparison's tables (``claims.md``, ``fair.md``, ``exploratory.md``) and their verdict reads
the primary claims."""
CHOICE_SEED = 1
SEEDS = (1, 2, 3, 4, 5)
ALPHA = 0.05
FIRST_MARGINS = 6
"""The paper's triplet starts with margins 1–40 (the first six of ``MARGINS``); a larger one is
added while the largest tried is the best on validation."""
PAPER_ROWS = ("ce-wd0.007", "kd-t4", "triplet")
"""The paper's settings at the paper's rate, run with every seed whatever is chosen."""


def choice_seed(runs: pd.DataFrame, candidates: list[str]) -> int | None:
    """The seed every choice among ``candidates`` is made at: :data:`CHOICE_SEED` when any
    candidate has a run there, else the smallest seed any of them has (a preset of moved runs,
    such as ``fashion-h200``, starts at seed 2); None when none has a run."""
    seeds = set(runs.seed[runs.experiment.isin(candidates)])
    if not seeds:
        return None
    return CHOICE_SEED if CHOICE_SEED in seeds else int(min(seeds))


def validation_at_choice_seed(runs: pd.DataFrame, candidates: list[str]) -> pd.Series:
    """Final validation accuracy at :func:`choice_seed` of each candidate that has a run there,
    in the order of ``candidates`` (NaN for a diverged run, :func:`with_failures`)."""
    seed = choice_seed(runs, candidates)
    part = runs[(runs.seed == seed) & runs.experiment.isin(candidates)]
    values = part.drop_duplicates("experiment").set_index("experiment").val_acc
    return values.reindex([c for c in candidates if c in values.index])


def validation_ties(runs: pd.DataFrame, candidates: list[str]) -> list[str]:
    """The candidates whose validation accuracy at the choice seed
    (:func:`validation_at_choice_seed`) equals the best one's, in the order of ``candidates``;
    more than one name means validation cannot choose between them."""
    values = validation_at_choice_seed(runs, candidates).dropna()
    if not len(values):
        return []
    return [n for n, v in values.items() if math.isclose(v, values.max(), abs_tol=1e-12)]


def best_on_validation(runs: pd.DataFrame, candidates: list[str]) -> str | None:
    """The one rule every choice of this package follows: the candidate with the highest final
    validation accuracy at the choice seed (:func:`choice_seed`, seed 1), among those that
    have run there; a tie goes to the first listed (:func:`validation_ties` names the others);
    a diverged run is never chosen. Test accuracy never enters. None when none has run."""
    tied = validation_ties(runs, candidates)
    return tied[0] if tied else None


def choose(runs: pd.DataFrame, candidates: list[str]) -> str | None:
    """:func:`best_on_validation`, once the choice is made: None while any candidate lacks its
    seed-1 run (the grid still has to run it), or when every one diverged."""
    done = runs[(runs.seed == CHOICE_SEED) & runs.experiment.isin(candidates)]
    if len(set(done.experiment)) < len(set(candidates)):
        return None
    return best_on_validation(runs, candidates)


def with_failures(runs: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with a row (NaN accuracies) for each diverged run of ``failures`` (columns
    experiment, seed, e.g. :func:`tkd.records.load_failures`) that has no finished run: a
    candidate that diverged has been tried, and lost."""
    have = set(zip(runs.experiment, runs.seed))
    extra = [{"experiment": e, "seed": s, "val_acc": math.nan, "test_acc": math.nan}
             for e, s in zip(failures.experiment, failures.seed) if (e, s) not in have]
    return pd.concat([runs, pd.DataFrame(extra)], ignore_index=True) if extra else runs


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
    each chosen row, of the mined triplet at 0.01, of the paper's rows and of each untuned
    method at its choice (:func:`untuned_rows`). Ba & Caruana's
    rates join stage 2 at seed 1. A diverged run (a NaN row of :func:`with_failures`) is
    done: it is never pending again."""
    have = set(zip(runs.experiment, runs.seed))
    wanted: list[tuple[str, tuple[int, ...]]] = []
    for method in TUNED_METHODS:
        setting = chosen_setting(runs, method)
        names = (setting_candidates(runs, method) if setting is None
                 else rate_candidates(setting))
        wanted += [(name, (CHOICE_SEED,)) for name in names]
    if stage == 2:
        wanted += [(name, (CHOICE_SEED,)) for name in LR_GRID["logit-mse"]]
        if tuned(runs, "mined") is not None:
            wanted.append((control(runs), (CHOICE_SEED,)))
    else:
        rows = [*tuned_rows(runs).values(), chosen_setting(runs, "mined"), *PAPER_ROWS,
                *untuned_rows(runs)]
        wanted = [(name, SEEDS) for name in dict.fromkeys(rows) if name is not None]
    missing = [(name, tuple(s for s in seeds if (name, s) not in have))
               for name, seeds in wanted]
    return [(name, seeds) for name, seeds in missing if seeds]


def pending_reruns(runs: pd.DataFrame, moved: pd.DataFrame) -> list[tuple[str, tuple[int, ...]]]:
    """The runs of ``moved`` (the records that left the CPU set for a device preset of their
    own, e.g. ``fashion-h200``) that the CPU set ``runs`` still lacks: (experiment, seeds)."""
    have = set(zip(runs.experiment, runs.seed))
    missing: dict[str, list[int]] = {}
    for name, seed in sorted(zip(moved.experiment, moved.seed)):
        if name != "teacher" and (name, seed) not in have:
            missing.setdefault(name, []).append(int(seed))
    return [(name, tuple(seeds)) for name, seeds in missing.items()]


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
    """Final test accuracy (points) of ``name``'s finished runs, by seed (diverged rows out)."""
    part = runs[runs.experiment == name]
    return 100 * part.set_index("seed").test_acc.dropna()


def primary_claims(runs: pd.DataFrame, logit_regression: str) -> pd.DataFrame:
    """The primary claims with Holm's step-down adjustment over the five (``docs/claims.md``):
    per claim ``a``, ``b``, ``n`` seeds, ``mean`` a − b (points), the raw two-sided paired
    p-value ``p``, Holm's ``rank``, its interval ``low``/``high`` at confidence
    1 − α/(m − rank + 1), and ``reading`` (holds, refuted, not shown)."""
    rows = []
    for claim, a, b in primary_pairs(runs, logit_regression):
        acc_a, acc_b = _accuracy(runs, a), _accuracy(runs, b)
        common = acc_a.index.intersection(acc_b.index)
        rows.append({"claim": claim, "statement": PRIMARY[claim], "a": a or "", "b": b or "",
                     "a_mean": acc_a[common].mean(), "b_mean": acc_b[common].mean(),
                     **paired_difference(acc_a, acc_b)})
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


def logit_regression(runs: pd.DataFrame) -> str:
    """Ba & Caruana's learning rate, chosen on validation at seed 1 among the rates of its grid
    (:data:`tkd.experiments.LR_GRID`) that have a seed-1 run, a diverged one counting as lost
    (:func:`with_failures`); the rates not yet run at seed 1 are left out (stage 2 of the grid
    runs them); ``logit-mse`` when none has."""
    candidates = [n for n in LR_GRID["logit-mse"]
                  if len(runs[(runs.experiment == n) & (runs.seed == CHOICE_SEED)])]
    chosen = choose(runs, candidates) if candidates else None
    return chosen or "logit-mse"


def _number(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:+.2f}"


def claims_markdown(runs: pd.DataFrame) -> str:
    """The primary claims as the README's table: each side's mean test accuracy over the seeds
    both have, their number, a − b with its Holm-adjusted interval, and the reading."""
    frame = primary_claims(runs, logit_regression(runs))
    lines = ["| | claim (a > b) | a | b | seeds | a − b (points) | Holm-adjusted interval "
             "| reading |", "|---|---|---|---|---:|---:|---|---|"]
    for r in frame.to_dict("records"):
        sides = [("not chosen yet" if not name else f"`{name}` (no runs yet)" if r["n"] == 0
                  else f"`{name}` {mean:.2f} %")
                 for name, mean in ((r["a"], r["a_mean"]), (r["b"], r["b_mean"]))]
        interval = (f"[{_signed(r['low'])}, {_signed(r['high'])}] "
                    f"({100 * (1 - ALPHA / (len(frame) - r['rank'] + 1)):.1f} %)"
                    if r["n"] >= 2 else "–")
        reading = f"**{r['reading']}**" if r["reading"] == "refuted" else r["reading"]
        lines.append(f"| {r['claim']} | {r['statement']} | {sides[0]} | {sides[1]} | {r['n']} "
                     f"| {_signed(r['mean'])} | {interval} | {reading} |")
    decided = int(frame.decided.sum())
    note = (f"\n{decided} of {len(frame)} claims decided. Each side's mean is over the seeds "
            "both sides share (the same method can read differently in two rows); a claim is "
            "*not shown* when the two sides share fewer than two seeds, a side is not chosen "
            "yet, or its Holm test does not reject.\n")
    return "\n".join(lines) + "\n" + note


UNTUNED_GRIDS = {"kd-ls": MODERN_GRIDS["kd-ls"], "triplet-ls": MODERN_GRIDS["triplet-ls"],
                 "triplet-batch-semihard-ls": MODERN_GRIDS["triplet-batch-semihard-ls"],
                 "rkd": ["rkd"], "rkd-logits": ["rkd-logits"], **WEIGHT_GRIDS}
"""The methods run at the paper's rate with no learning-rate tuning, each with the settings it
chooses from on validation (logit standardization and the standardized triplets, RKD on the
embeddings and on the logits, PKT and the FitNets hint): labelled *untuned* wherever they
appear."""
METHOD_NAMES = {"student": "student alone", "kd": "Hinton KD", "triplet": "the paper's triplet",
                "mined": "the mined triplet", "dkd": "DKD", "dist": "DIST"}


def untuned_rows(runs: pd.DataFrame) -> list[str]:
    """Each method of :data:`UNTUNED_GRIDS` at the setting validation chose at seed 1."""
    chosen = (best_on_validation(runs, grid) for grid in UNTUNED_GRIDS.values())
    return [name for name in chosen if name]


def table_rows(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """(role, experiment) of every row of the fair table: the paper's settings, each tuned
    method at its chosen setting and rate, the mined triplet at the paper's rate, the
    teacher-free control and the untuned methods."""
    rows = [("paper's setting", name) for name in PAPER_ROWS]
    rows += [(f"tuned: {method}", name) for method, name in tuned_rows(runs).items()
             if name and method != "control"]
    mined = chosen_setting(runs, "mined")
    if mined:
        rows.append(("mined triplet at the paper's rate", mined))
    if control(runs):
        rows.append(("teacher-free control", control(runs)))
    rows += [("untuned", name) for name in untuned_rows(runs)]
    present = set(runs.experiment)
    return [(role, name) for role, name in dict.fromkeys(rows) if name in present]


def tuned_markdown(runs: pd.DataFrame) -> str:
    """The fair table: per row of :func:`table_rows` its learning rate, seeds, test accuracy
    (mean ± sd, %) and its fidelity to the teacher on the test split (top-1 agreement, %, and
    mean KL(teacher ‖ student), nats; exploratory; "–" for records that lack it)."""
    lines = ["| role | experiment | lr | seeds | test acc. (%) | agreement with teacher (%) "
             "| KL(teacher ‖ student) |", "|---|---|---:|---:|---|---:|---:|"]
    for role, name in table_rows(runs):
        part = runs[runs.experiment == name]
        lr = EXPERIMENTS[name].lr or 0.01 if name in EXPERIMENTS else 0.01
        acc = 100 * part.test_acc
        spread = f" ± {acc.std():.2f}" if len(acc) > 1 else ""
        agree, kl = part.test_teacher_agreement.dropna(), part.test_teacher_kl.dropna()
        fidelity = (f"{100 * agree.mean():.2f} ({len(agree)})" if len(agree) else "–",
                    f"{kl.mean():.3f} ({len(kl)})" if len(kl) else "–")
        lines.append(f"| {role} | `{name}` | {lr:g} | {len(part)} | {acc.mean():.2f}{spread} "
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
    (%), the chosen one in bold; "not run yet" or "diverged" where it has no number."""
    lines = ["| method | choice | candidates: validation accuracy at seed 1 (%) |",
             "|---|---|---|"]
    for method, step, names, chosen in choice_steps(runs):
        verdict = "" if chosen else " (not chosen yet)"
        lines.append(f"| {method} | {step}{verdict} | {_candidates_cell(runs, names, chosen)} |")
    return "\n".join(lines) + "\n"


def exploratory_pairs(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """Every exploratory comparison of the fair table (a, b): the teacher-free control against
    the mined triplet and the student alone, each tuned method against its paper's setting,
    the mined triplet against the other tuned methods, each untuned method against the tuned
    Hinton KD and mined triplet. Pairs with an undecided side are left out."""
    rows = tuned_rows(runs)
    mined, kd, student = rows["mined"], rows["kd"], rows["student"]
    pairs = [(mined, rows["control"]), (rows["control"], student), (mined, student)]
    pairs += [(rows[m], paper) for m, paper in (("student", "ce-wd0.007"), ("kd", "kd-t4"),
                                                ("triplet", "triplet"))]
    pairs += [(mined, rows[m]) for m in ("triplet", "dkd", "dist")]
    pairs += [(name, ref) for name in untuned_rows(runs) for ref in (kd, mined)]
    present = set(runs.experiment)
    return [(a, b) for a, b in dict.fromkeys(pairs)
            if a and b and a != b and a in present and b in present]


def exploratory_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`exploratory_pairs` with their unadjusted paired 95 % intervals and the
    Benjamini–Hochberg reading over all of them (:func:`exploratory`)."""
    differences = [{"a": a, "b": b, **paired_difference(_accuracy(runs, a), _accuracy(runs, b))}
                   for a, b in exploratory_pairs(runs)]
    columns = ["a", "b", "n", "mean", "low", "high", "p", "q", "bh_reading", "family"]
    return pd.DataFrame(exploratory(differences), columns=columns)


def exploratory_markdown(frame: pd.DataFrame) -> str:
    """:func:`exploratory_frame` as markdown, its family size stated."""
    count = int((frame.n >= 2).sum()) if len(frame) else 0
    lines = [f"Exploratory: {count} intervals (pairs with two common seeds or more), "
             "unadjusted 95 %; Benjamini–Hochberg over these intervals at a false-discovery "
             "rate of 5 %.", "",
             "| a | b | seeds | a − b (points) | 95 % interval | p | BH q | BH reading |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for r in frame.to_dict("records"):
        interval = f"[{_signed(r['low'])}, {_signed(r['high'])}]" if r["n"] >= 2 else "–"
        lines.append(f"| `{r['a']}` | `{r['b']}` | {r['n']} | {_signed(r['mean'])} | "
                     f"{interval} | {_number(r['p'])} | {_number(r['q'])} | {r['bh_reading']} |")
    return "\n".join(lines) + "\n"


def backfill_fidelity(preset: Preset, root=None, log=print) -> dict:
    """Add the final fidelity to the teacher (:func:`tkd.train.fidelity` on the validation and
    test splits) to every record of ``preset`` that was made before fidelity was scored and
    whose saved student ``<seed>.pt`` is current (:func:`tkd.runs.load_student`), as
    ``record["fidelity"]`` with the sha256 of the weights it was computed from. Records without
    saved weights are left as they are (their tables show "–"). Idempotent. Returns counts:
    ``{"added", "present", "no weights"}``."""
    from tkd.experiments import load_data
    from tkd.files import atomic_write_json
    from tkd.records import file_sha256, load_record, result_path, student_path
    from tkd.runs import load_student, teacher_logits, train_teacher
    from tkd.train import fidelity, predict

    data = load_data(preset)
    reference = teacher_logits(train_teacher(preset, data, root), data)
    splits = {"test": (data.test, reference[1]), "val": (data.validation, reference[2])}
    counts = {"added": 0, "present": 0, "no weights": 0}
    for path in sorted(result_path(preset, "x", 1, root).parent.parent.glob("*/[0-9]*.json")):
        record = load_record(path)
        experiment, seed = record["config"]["experiment"], record["config"]["seed"]
        if experiment == "teacher" or path.name.endswith(".failed.json"):
            continue
        if "test_teacher_kl" in record.get("final", {}) or record.get("fidelity"):
            counts["present"] += 1
            continue
        weights = student_path(preset, experiment, seed, root)
        if not weights.is_file():
            counts["no weights"] += 1
            continue
        model = load_student(preset, experiment, seed, root, data_identity=data.identity())
        scores = {"weights_sha256": file_sha256(weights)}
        for name, (split, teacher) in splits.items():
            scores.update({f"{name}_{k}": v for k, v in
                           fidelity(predict(model, split.images), teacher).items()})
        atomic_write_json(path, {**record, "fidelity": scores})
        counts["added"] += 1
    log(f"fidelity from saved weights: {counts['added']} added, {counts['present']} present, "
        f"{counts['no weights']} records without saved weights")
    return counts
