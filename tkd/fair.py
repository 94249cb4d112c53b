"""The fair comparison: one choice rule for every method, its tuned rows, the declared primary
claims with Holm's adjustment and the exploratory intervals with Benjamini–Hochberg's.

``docs/claims.md`` declares all of it before the runs. In short: every choice of every method,
here and in :mod:`tkd.verdict`, is made on validation at seed 1 (:func:`best_on_validation`;
:func:`choose` once every candidate has run); each tuned method
(:data:`tkd.experiments.TUNED_METHODS`) chooses its setting at the rate 0.01
(:func:`chosen_setting`), then its rate from :data:`tkd.experiments.TUNED_RATES`
(:func:`tuned`); the five primary claims (:data:`PRIMARY`) are read with Holm's step-down
procedure (:func:`primary_claims`). The tables made of all this: :mod:`tkd.fair_tables`.
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
TUNED_SEEDS = (2, 3, 4, 5, 6)
"""The seeds the claims between tuned rows (P4, P5) are read over: seed 1 chose each side, so
its run was selected for its validation accuracy and is no evidence for the claim (amended in
``docs/claims.md`` before any of these runs)."""
TUNED_CLAIMS = ("P4", "P5")
PENDING = "pending"
"""The reading of a claim whose sides do not yet share two seeds (or one side is not chosen)."""
ALPHA = 0.05
FIRST_MARGINS = 6
"""The paper's triplet starts with margins 1–40 (the first six of ``MARGINS``); a larger one is
added while the largest tried is the best on validation."""
AUTHOR_RATE_CHECKS = ("dist-t4-w2-lr0.003", "dkd-lr0.003", "kd-t4-w0.9-lr0.03",
                      "kd-t4-w0.9-lr0.003")
"""The authors' settings that lost their setting choice at the rate 0.01, each run once more at
the rate its loss scale points to (DIST's weight 2 doubles its step and DKD's β 8 is the
largest of its grid: a smaller rate; 0.1 CE + 0.9 KD shrinks the step: a larger one, and,
since that one diverged, the smaller one too). Exploratory: they are shown beside the
choices and choose nothing."""
CONTROL_RATE_CHECK = "triplet-self-lr0.003"
"""The teacher-free control at a smaller rate than the mined triplet's, exploratory: at the
mined triplet's rate 0.01 its students collapse to one output for every image (the triplet term
stuck at its margin, the classifier at chance), so this asks whether the collapse is the rate's
doing. Shown as a row of the fair table; it replaces the control in no comparison."""
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


def at_control_rate(runs: pd.DataFrame, method: str = "mined") -> str | None:
    """``method``'s chosen setting at the rate of :data:`CONTROL_RATE_CHECK` (0.003): the
    control at that rate is paired with the mined triplet and the student alone at the same
    rate, one rate on both sides; None while the setting is undecided."""
    setting = chosen_setting(runs, method)
    return None if setting is None else rate_experiment(
        setting, EXPERIMENTS[CONTROL_RATE_CHECK].lr).name


def control_partner(runs: pd.DataFrame) -> str | None:
    """The mined triplet at the control's smaller rate (:func:`at_control_rate`)."""
    return at_control_rate(runs, "mined")


def control(runs: pd.DataFrame) -> str | None:
    """The teacher-free control at the mined triplet's chosen rate (None while undecided).
    ``ValueError`` when validation chose a miner other than the control's (``triplet-self``
    must then be defined with that miner before its runs)."""
    setting, mined = chosen_setting(runs, "mined"), tuned(runs, "mined")
    if mined is None:
        return None
    miner, own = EXPERIMENTS[setting].objective().negatives, \
        EXPERIMENTS["triplet-self"].objective().negatives
    if miner != own:
        raise ValueError(f"validation chose the miner {miner!r} ({setting}) but the teacher-free "
                         f"control triplet-self mines {own!r}: define it with {miner!r} in "
                         "tkd.objective.METHODS before running it")
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
    each chosen row (seeds 1–6, :data:`TUNED_SEEDS`), of the mined triplet at 0.01, of the
    paper's rows and of each untuned method at its choice (:func:`untuned_rows`). Ba & Caruana's
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
        rows = [chosen_setting(runs, "mined"), *PAPER_ROWS, *untuned_rows(runs)]
        tuned_seeds = tuple(dict.fromkeys((*SEEDS, *TUNED_SEEDS)))
        wanted = [(name, tuned_seeds) for name in tuned_rows(runs).values() if name]
        wanted += [(name, SEEDS) for name in dict.fromkeys(rows) if name is not None]
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
    "P2": "Hinton KD (paper's setting) beats logit regression (its rate chosen on validation)",
    "P3": "logit regression (its chosen rate) beats the student alone (weight decay 0.007)",
    "P4": "the mined triplet beats Hinton KD (both tuned)",
    "P5": "the mined triplet beats today's logit KD (both tuned)",
}
"""The declared primary claims (``docs/claims.md``)."""


def accuracy_by_seed(runs: pd.DataFrame, name: str | None) -> pd.Series:
    """Final test accuracy (points) of ``name``'s finished runs, by seed (diverged rows out)."""
    part = runs[runs.experiment == name]
    return 100 * part.set_index("seed").test_acc.dropna()


def chance_count(runs: pd.DataFrame) -> int:
    """How many of ``runs`` (rows of :func:`tkd.tables.runs_frame`) ended at chance
    (:func:`tkd.tables.at_chance`); 0 for a frame without that column."""
    return int(runs.at_chance.sum()) if "at_chance" in runs else 0


def selection_seeds(runs: pd.DataFrame) -> dict[str, int]:
    """Every experiment that a choice on validation picked among two finished runs or more, with
    the seed that choice read (:func:`choice_seed`): that run was selected for its validation
    accuracy, so it is no evidence for the experiment. The choices are each tuned method's
    setting and rate, Ba & Caruana's rates, and the settings of the untuned and today's
    logit-KD methods (:func:`best_on_validation`, made or provisional)."""
    settings = [chosen_setting(runs, method) for method in TUNED_METHODS]
    grids = [*(setting_candidates(runs, method) for method in TUNED_METHODS),
             *(rate_candidates(setting) for setting in settings if setting),
             *LR_GRID.values(), *UNTUNED_GRIDS.values(), *MODERN_GRIDS.values()]
    picks: dict[str, int] = {}
    for grid in grids:
        if len(validation_at_choice_seed(runs, grid).dropna()) > 1:  # a choice between runs
            picks[best_on_validation(runs, grid)] = choice_seed(runs, grid)
    return picks


def seed_list(seeds) -> str:
    """Seeds as a short list: "2–6", "1, 3", or "none"."""
    seeds = sorted(int(s) for s in seeds)
    if not seeds:
        return "none"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def evidence_by_seed(runs: pd.DataFrame, name: str | None,
                     selected: dict[str, int]) -> pd.Series:
    """:func:`accuracy_by_seed` without the run a choice selected ``name`` by (``selected``,
    :func:`selection_seeds`): the seeds an exploratory interval reads."""
    accuracy = accuracy_by_seed(runs, name)
    return accuracy.drop(selected[name], errors="ignore") if name in selected else accuracy


def _claim_accuracy(runs: pd.DataFrame, name: str | None, claim: str,
                    tuned_seeds: tuple[int, ...] = TUNED_SEEDS) -> pd.Series:
    """:func:`accuracy_by_seed` over the seeds ``claim`` is read over (``tuned_seeds`` for
    :data:`TUNED_CLAIMS`)."""
    accuracy = accuracy_by_seed(runs, name)
    return accuracy[accuracy.index.isin(tuned_seeds)] if claim in TUNED_CLAIMS else accuracy


def primary_claims(runs: pd.DataFrame, logit_regression: str,
                   tuned_seeds: tuple[int, ...] = TUNED_SEEDS) -> pd.DataFrame:
    """The primary claims with Holm's step-down adjustment over the five (``docs/claims.md``):
    per claim ``a``, ``b``, ``n`` seeds, ``mean`` a − b (points), the raw two-sided paired
    p-value ``p``, Holm's ``rank``, ``level`` and ``decided`` (:func:`tkd.stats.holm`), its
    interval ``low``/``high`` at confidence 1 − level, and ``reading`` (holds, refuted, not
    shown, or :data:`PENDING` while its sides share fewer than two seeds). P4 and P5 are read
    over ``tuned_seeds`` (as amended, :data:`TUNED_SEEDS`), the others over every seed."""
    rows = []
    for claim, a, b in primary_pairs(runs, logit_regression):
        acc_a, acc_b = (_claim_accuracy(runs, name, claim, tuned_seeds) for name in (a, b))
        common = acc_a.index.intersection(acc_b.index)
        rows.append({"claim": claim, "statement": PRIMARY[claim], "a": a or "", "b": b or "",
                     "a_mean": acc_a[common].mean(), "b_mean": acc_b[common].mean(),
                     **paired_difference(acc_a, acc_b)})
    frame = pd.DataFrame(rows)
    adjusted = holm(frame.p.tolist(), ALPHA)
    for key in ("rank", "level", "decided"):
        frame[key] = [r[key] for r in adjusted]
    for i, r in enumerate(adjusted):
        if frame.at[i, "n"] >= 2 and not math.isnan(frame.at[i, "p"]):
            claim, confidence = frame.at[i, "claim"], 1 - r["level"]
            d = paired_difference(*(_claim_accuracy(runs, frame.at[i, side], claim, tuned_seeds)
                                    for side in ("a", "b")), confidence)
            frame.loc[i, ["low", "high"]] = d["low"], d["high"]
    frame["reading"] = [PENDING if n < 2 else ("holds" if m > 0 else "refuted") if decided
                        else "not shown" for n, m, decided in
                        zip(frame.n, frame["mean"], frame.decided)]
    return frame


def exploratory(differences: list[dict]) -> list[dict]:
    """``differences`` (dicts with a ``p`` key, e.g. from :func:`tkd.stats.paired_difference`)
    with Benjamini–Hochberg's ``q`` and ``bh_reading`` ("a > b at FDR 5 %" when ``q`` ≤ 0.05
    and the mean is positive, "a < b at FDR 5 %" when negative, else "not shown": no claim was
    made about these pairs, so they are read as directions, not as holds or refuted) and
    ``family`` (how many intervals the adjustment was over: those with a p-value)."""
    qs = benjamini_hochberg([d["p"] for d in differences])
    family = sum(not math.isnan(d["p"]) for d in differences)
    out = []
    for d, q in zip(differences, qs):
        reading = ("not shown" if math.isnan(q) or q > ALPHA else
                   "a > b at FDR 5 %" if d["mean"] > 0 else "a < b at FDR 5 %")
        out.append({**d, "q": q, "bh_reading": reading, "family": family})
    return out


def logit_regression(runs: pd.DataFrame) -> str:
    """Ba & Caruana's learning rate, chosen by :func:`choose` among the rates of its own grid
    (:data:`tkd.experiments.LR_GRID`: 0.01, 0.003, 0.001) once each has its seed-1 run, a
    diverged one counting as lost (:func:`with_failures`); ``logit-mse`` while undecided."""
    return choose(runs, LR_GRID["logit-mse"]) or "logit-mse"


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
