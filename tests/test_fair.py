"""The fair comparison's rule: choices at seed 1 on validation, setting before rate, the
margin sweep extended while its largest margin is best, Holm over the primary claims."""

import math

import pandas as pd
import pytest

from tkd import fair, fair_tables
from tkd.experiments import MARGINS, get_preset, margin_experiment, rate_experiment
from tkd.stats import benjamini_hochberg, holm


def frame(rows):
    """A runs table from (experiment, seed, val_acc, test_acc) rows."""
    return pd.DataFrame(rows, columns=["experiment", "seed", "val_acc", "test_acc"])


def test_choice_uses_seed_1_validation_only_and_waits_for_every_candidate():
    runs = frame([("a", 1, 0.90, 0.1), ("b", 1, 0.91, 0.1), ("a", 2, 0.99, 0.99),
                  ("b", 2, 0.80, 0.99)])
    assert fair.choose(runs, ["a", "b"]) == "b"  # seed 2 and test accuracy play no part
    assert fair.choose(runs, ["a", "b", "c"]) is None
    tie = frame([("a", 1, 0.9, 0), ("b", 1, 0.9, 0)])
    assert fair.choose(tie, ["b", "a"]) == "b"


def test_every_choice_is_made_at_seed_1_or_at_a_presets_first_seed_without_it():
    runs = frame([("a", 1, 0.91, 0.9), ("a", 2, 0.99, 0.99), ("b", 1, 0.92, 0.1),
                  ("b", 2, 0.80, 0.1), ("c", 3, 1.00, 1.0)])
    assert fair.best_on_validation(runs, ["a", "b", "c"]) == "b"  # c has no seed-1 run yet
    assert fair.choose(runs, ["a", "b", "c"]) is None  # ...so the choice is not made
    tie = frame([("x", 1, 0.9, 0), ("y", 1, 0.9, 0), ("z", 1, 0.8, 0)])
    assert fair.validation_ties(tie, ["y", "x", "z"]) == ["y", "x"]
    assert fair.best_on_validation(tie, ["x", "y"]) == "x"  # the tie goes to the first named
    assert fair.validation_ties(tie, ["missing"]) == [] and fair.best_on_validation(tie, []) is None
    moved = frame([("p", 2, 0.7, 0), ("q", 2, 0.8, 0), ("p", 3, 0.9, 0)])  # no seed 1 at all
    assert fair.choice_seed(moved, ["p", "q"]) == 2
    assert fair.best_on_validation(moved, ["p", "q"]) == "q"
    diverged = frame([("a", 1, math.nan, math.nan), ("b", 1, 0.5, 0)])
    assert fair.best_on_validation(diverged, ["a", "b"]) == "b"


def test_the_margin_sweep_grows_while_its_largest_margin_is_best():
    names = [margin_experiment(m).name for m in MARGINS]
    rising = frame([(n, 1, 0.80 + 0.01 * i, 0) for i, n in enumerate(names[:6])])
    assert fair.setting_candidates(rising, "triplet") == names[:7]
    assert fair.chosen_setting(rising, "triplet") is None  # margin 80 not run yet
    assert ("triplet-m80", (1,)) in fair.pending(rising, 2)
    turned = pd.concat([rising, frame([(names[6], 1, 0.5, 0)])])
    assert fair.chosen_setting(turned, "triplet") == names[5]
    assert fair.setting_candidates(turned, "triplet") == names[:7]


def test_the_rate_is_chosen_after_the_setting_and_the_control_follows_the_mined_rate():
    rows = [(n, 1, 0.9, 0) for n in ("triplet-batch-random", "triplet-batch-hard")]
    rows += [("triplet-batch-semihard", 1, 0.95, 0)]
    runs = frame(rows)
    assert fair.chosen_setting(runs, "mined") == "triplet-batch-semihard"
    assert fair.tuned(runs, "mined") is None
    assert ("triplet-batch-semihard-lr0.03", (1,)) in fair.pending(runs, 2)
    runs = pd.concat([runs, frame([("triplet-batch-semihard-lr0.003", 1, 0.94, 0),
                                   ("triplet-batch-semihard-lr0.03", 1, 0.96, 0)])])
    assert fair.tuned(runs, "mined") == "triplet-batch-semihard-lr0.03"
    assert fair.control(runs) == rate_experiment("triplet-self", 0.03).name
    assert ("triplet-self-lr0.03", (1,)) in fair.pending(runs, 2)
    stage3 = dict(fair.pending(runs, 3))
    assert stage3["triplet-batch-semihard-lr0.03"] == (2, 3, 4, 5, 6)  # seed 6: TUNED_SEEDS
    assert stage3["triplet-batch-semihard"] == (2, 3, 4, 5)
    assert stage3["triplet-self-lr0.03"] == (1, 2, 3, 4, 5, 6)
    untuned = pd.concat([runs, frame([("pkt", 1, 0.91, 0), ("pkt-w100", 1, 0.92, 0),
                                      ("pkt", 2, 0.1, 0)])])
    stage3 = dict(fair.pending(untuned, 3))  # an untuned method at its seed-1 choice
    assert stage3["pkt-w100"] == (2, 3, 4, 5) and "pkt" not in stage3


def test_holm_steps_down_and_stops_at_the_first_failure():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    out = holm(p)
    assert [o["rank"] for o in out] == [2, 4, 3, 1, 5]
    assert [o["decided"] for o in out] == [True, False, False, True, False]
    assert out[3]["level"] == pytest.approx(0.01) and out[0]["level"] == pytest.approx(0.0125)
    # 0.02 <= 0.05/2 would pass on its own, but the rank before it failed
    assert [o["decided"] for o in holm([0.04, 0.02, 0.3])] == [False, False, False]
    # the undecided keep the level the procedure stopped at: alpha / (m - decided) = 0.05 / 3
    assert [out[i]["level"] for i in (1, 2, 4)] == pytest.approx([0.05 / 3] * 3)


def test_benjamini_hochberg_matches_the_step_up_rule_written_out():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    q = benjamini_hochberg(p)
    assert q[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02]) and math.isnan(q[4])


def test_primary_claims_read_with_holm_intervals():
    seeds = range(1, 6)
    rows = [("triplet", s, 0, 0.90 + 0.001 * s) for s in seeds]
    rows += [("kd-t4", s, 0, 0.91 + 0.0011 * s) for s in seeds]
    rows += [("logit-mse", s, 0, 0.80 + (0.02 if s % 2 else -0.02)) for s in seeds]
    rows += [("ce-wd0.007", s, 0, 0.85 + 0.0005 * s) for s in seeds]
    claims = fair.primary_claims(frame(rows), "logit-mse").set_index("claim")
    assert claims.loc["P1", "reading"] == "refuted"
    assert claims.loc["P2", "reading"] == "holds"
    assert claims.loc["P4", "reading"] == fair.PENDING and claims.loc["P4", "n"] == 0
    assert claims.loc["P3", "reading"] == "refuted"  # 5 seeds, Holm decides it
    unadjusted = claims.loc["P1", "mean"]
    assert claims.loc["P1", "low"] < unadjusted < claims.loc["P1", "high"] < 0


def test_the_runs_moved_to_a_device_preset_are_rerun_on_the_cpu_once():
    cpu = frame([("kd-t4", 1, 0.9, 0.9), ("kd-t4", 2, 0.9, 0.9)])
    moved = frame([("kd-t4", 2, 0.9, 0.9), ("kd-t4", 3, 0.9, 0.9), ("ce", 4, 0.8, 0.8),
                   ("teacher", 1, 0.9, 0.9)])
    assert fair.pending_reruns(cpu, moved) == [("ce", (4,)), ("kd-t4", (3,))]


def test_a_diverged_candidate_is_tried_and_never_chosen():
    runs = frame([("a", 1, 0.90, 0.9), ("b", 1, 0.80, 0.8)])
    failures = pd.DataFrame({"experiment": ["c"], "seed": [1]})
    assert fair.choose(runs, ["a", "b", "c"]) is None  # c not tried yet
    tried = fair.with_failures(runs, failures)
    assert fair.choose(tried, ["c", "b", "a"]) == "a"
    assert fair.choose(fair.with_failures(frame([]), failures), ["c"]) is None
    lr = frame([("triplet-batch-semihard", 1, 0.9, 0.9), ("triplet-batch-hard", 1, 0.8, 0),
                ("triplet-batch-random", 1, 0.8, 0), ("triplet-batch-semihard-lr0.003", 1, .8, 0)])
    blocked = fair.with_failures(lr, pd.DataFrame({"experiment": ["triplet-batch-semihard-lr0.03"],
                                                   "seed": [1]}))
    assert fair.tuned(blocked, "mined") == "triplet-batch-semihard"
    assert ("triplet-batch-semihard-lr0.03", (1,)) not in fair.pending(blocked, 2)


def test_the_control_mines_with_the_miner_validation_chose_on_the_committed_records():
    """``triplet-self`` fixes its miner; it must be the one the mined triplet chose."""
    from tkd.experiments import EXPERIMENTS
    from tkd.records import load_records
    from tkd.tables import runs_frame

    runs = runs_frame(load_records(get_preset("fashion")), check=False)
    chosen = fair.chosen_setting(runs, "mined")
    assert chosen is not None
    assert (EXPERIMENTS["triplet-self"].objective().negatives
            == EXPERIMENTS[chosen].objective().negatives)


def test_the_choices_table_shows_every_candidate_at_seed_1_and_what_is_missing():
    rows = [("triplet-batch-random", 1, 0.90, 0), ("triplet-batch-hard", 1, 0.93, 0),
            ("triplet-batch-semihard", 1, 0.92, 0), ("triplet-batch-hard", 2, 0.99, 0),
            ("dist", 1, math.nan, math.nan), ("pkt", 1, 0.91, 0), ("pkt-w100", 1, 0.90, 0),
            ("kd-t4-w0.9-lr0.03", 1, 0.915, 0)]  # an authors' setting at another rate
    text = fair_tables.choices_markdown(frame(rows))
    assert text.rstrip().endswith("Validation accuracy at seed 1: `kd-t4-w0.9-lr0.03` 91.50, "
                                  "`dist-t4-w2-lr0.003` not run yet, `dkd-lr0.003` not run yet, "
                                  "`kd-t4-w0.9-lr0.003` not run yet.")
    assert "kd-t4-w0.9-lr0.03" not in text.split("Outside the rule")[0]  # it chooses nothing
    mined = [line for line in text.splitlines() if line.startswith("| the mined triplet |")]
    assert mined[0] == ("| the mined triplet | setting, at the rate 0.01 | "
                        "`triplet-batch-random` 90.00, **`triplet-batch-hard` 93.00**, "
                        "`triplet-batch-semihard` 92.00 | 1.00 |")  # its lead over semi-hard
    assert "learning rate (not chosen yet)" in mined[1] and "lr0.03` not run yet" in mined[1]
    assert "`dist` diverged, `dist-t4` not run yet" in text
    assert "| `pkt` (untuned) | setting, at the rate 0.01 | **`pkt` 91.00**" in text
    assert fair.untuned_rows(frame(rows)) == ["pkt"]


def test_the_claims_between_tuned_rows_leave_out_the_seed_that_chose_them():
    """P4 compares two sides chosen at seed 1: it reads seeds 2-6, never seed 1."""
    mined = ["triplet-batch-random", "triplet-batch-hard", "triplet-batch-semihard"]
    rows = [(n, 1, 0.90, 0.90) for n in mined[:2]] + [(mined[2], 1, 0.95, 0.99)]
    rows += [(f"{mined[2]}-lr{lr}", 1, 0.90, 0.9) for lr in ("0.003", "0.03")]
    kd = ["kd-t1", "kd-t2", "kd-t8", "kd-t4-w0.9", "kd-t4-lr0.003", "kd-t4-lr0.03"]
    rows += [(n, 1, 0.80, 0.8) for n in kd] + [("kd-t4", 1, 0.85, 0.80)]
    rows += [(n, s, 0.9, 0.90 + 0.001 * s) for n in (mined[2], "kd-t4") for s in range(2, 7)]
    claims = fair.primary_claims(frame(rows), "logit-mse").set_index("claim")
    assert (claims.at["P4", "a"], claims.at["P4", "b"]) == (mined[2], "kd-t4")
    assert claims.at["P4", "n"] == 5 and claims.at["P4", "mean"] == pytest.approx(0)
    assert claims.at["P1", "n"] == 0  # no triplet runs here


def test_the_control_refuses_a_miner_other_than_the_chosen_one():
    rows = [("triplet-batch-random", 1, 0.9, 0), ("triplet-batch-hard", 1, 0.95, 0),
            ("triplet-batch-semihard", 1, 0.9, 0), ("triplet-batch-hard-lr0.003", 1, 0.8, 0),
            ("triplet-batch-hard-lr0.03", 1, 0.8, 0)]
    with pytest.raises(ValueError, match="miner 'batch-hard'.*triplet-self mines"):
        fair.control(frame(rows))


def test_exploratory_readings_leave_out_the_run_that_selected_a_row():
    """A row chosen on validation at seed 1 is read over its other seeds in the fair table and
    the exploratory intervals; a lone run, or a row no choice picked, keeps every seed."""
    mined = ["triplet-batch-random", "triplet-batch-hard", "triplet-batch-semihard"]
    rows = [(n, 1, 0.90, 0.90) for n in mined[:2]] + [(mined[2], 1, 0.95, 0.99)]
    rows += [(n, s, 0.9, 0.90 + 0.01 * s) for n in (mined[2], "kd-t4") for s in (2, 3)]
    rows += [("kd-t4", 1, 0.9, 0.50)]
    runs = frame(rows)
    selected = fair.selection_seeds(runs)
    assert selected == {mined[2]: 1}  # kd-t4 is the only temperature run: nothing chose it
    assert list(fair.evidence_by_seed(runs, mined[2], selected).index) == [2, 3]
    assert sorted(fair.evidence_by_seed(runs, "kd-t4", selected).index) == [1, 2, 3]
    table = fair_tables.tuned_markdown(runs)
    line = next(x for x in table.splitlines() if f"`{mined[2]}`" in x)
    assert "| 2, 3 | 92.50 ± 0.71 | 99.00 (seed 1) |" in line  # 92 and 93; 99 is seed 1's
    assert "| tuned: DIST | not chosen yet | | none | no runs yet |" in table
    assert "| teacher-free control | not chosen yet |" in table  # the mined rate is undecided


def test_the_control_at_a_smaller_rate_is_an_exploratory_row_once_it_has_runs():
    without = fair_tables.table_rows(frame([("kd-t4", 1, 0.9, 0.9)]))
    assert all(name != fair.CONTROL_RATE_CHECK for _, name in without)
    rows = fair_tables.table_rows(frame([(fair.CONTROL_RATE_CHECK, 1, 0.9, 0.9)]))
    assert ("teacher-free control at 0.003, exploratory", fair.CONTROL_RATE_CHECK) in rows


def test_a_claim_short_of_its_seeds_is_flagged_provisional():
    rows = [(name, s, 0, 0.9 + 0.01 * (name == "kd-t4") + 0.001 * s)
            for name in ("triplet", "kd-t4") for s in (1, 2, 3)]
    text = fair_tables.claims_markdown(frame(rows))
    assert "P1 rests on fewer seeds than declared so far: provisional." in text
    assert "Holm levels above are provisional" in text


def test_a_pair_with_a_side_at_chance_on_every_seed_is_shown_but_read_as_nothing():
    """On the committed records the teacher-free control at the mined rate ended at chance on
    every seed: its pairs stay in the exploratory table, out of the BH family."""
    from tkd.records import load_records
    from tkd.tables import runs_frame

    runs = runs_frame(load_records(get_preset("fashion")), check=False)
    dead = fair_tables._all_at_chance(runs)
    frame_ = fair_tables.exploratory_frame(runs)
    control = fair.tuned_rows(runs)["control"]
    if control not in dead:
        pytest.skip("the control trains on these records")
    rows = frame_[(frame_.a == control) | (frame_.b == control)]
    assert len(rows) and rows.p.isna().all()
    assert (rows.bh_reading == "none: a side ended at chance").all()
    assert (frame_.family == frame_.p.notna().sum()).all()
    assert f"Exploratory: {frame_.p.notna().sum()} of these {len(frame_)} pairs have an " \
        "interval" in fair_tables.exploratory_markdown(frame_)


def test_the_control_at_0003_is_paired_with_the_mined_triplet_at_0003_and_the_student():
    from tkd.records import load_records
    from tkd.tables import runs_frame

    runs = runs_frame(load_records(get_preset("fashion")), check=False)
    pairs = fair_tables.exploratory_pairs(runs)
    rows = fair.tuned_rows(runs)
    partner = fair.control_partner(runs)
    assert partner == "triplet-batch-semihard-lr0.003"  # the chosen miner, at the same rate
    assert (partner, fair.CONTROL_RATE_CHECK) in pairs
    assert (rows["mined"], fair.CONTROL_RATE_CHECK) not in pairs  # two rates: never paired
    assert (fair.CONTROL_RATE_CHECK, rows["student"]) in pairs
    assert (fair.CONTROL_RATE_CHECK, "ce-wd0.007-lr0.003") in pairs  # the student, same rate
    assert fair.at_control_rate(runs, "student") == "ce-wd0.007-lr0.003"
    assert (rows["triplet"], rows["kd"]) in pairs  # P1 with both sides tuned
    without = runs[runs.experiment != fair.CONTROL_RATE_CHECK]
    assert all(fair.CONTROL_RATE_CHECK not in pair
               for pair in fair_tables.exploratory_pairs(without))


def test_chance_count_counts_runs_at_chance_and_is_zero_without_the_column():
    runs = pd.DataFrame({"experiment": ["a", "a", "b"], "at_chance": [True, False, True]})
    assert fair.chance_count(runs) == 2
    assert fair.chance_count(runs[runs.experiment == "a"]) == 1
    assert fair.chance_count(runs.drop(columns="at_chance")) == 0


def test_the_miners_validation_did_not_choose_meet_the_rivals_of_p4_and_p5():
    from tkd.records import load_records
    from tkd.tables import runs_frame

    runs = runs_frame(load_records(get_preset("fashion")), check=False)
    pairs, rows = fair_tables.exploratory_pairs(runs), fair.tuned_rows(runs)
    chosen = fair.chosen_setting(runs, "mined")
    others = [m for m in ("triplet-batch-random", "triplet-batch-hard", "triplet-batch-semihard")
              if m != chosen]
    assert len(others) == 2
    for miner in others:
        assert (miner, rows["kd"]) in pairs and (miner, rows["dkd"]) in pairs
    assert (chosen, rows["kd"]) not in pairs  # P4 itself is read with Holm, not here
