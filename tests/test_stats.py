"""Paired statistics over seeds, the convergence rule, and the paired table and verdict that
`tkd figures` reads from the records (hand-made records with known numbers)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tkd import records as rc
from tkd import tables as tb
from tkd import verdict as vd
from tkd.experiments import get_preset
from tkd.records import failed_path, result_path, save_record
from tkd.stats import convergence_gap, has_converged, paired_difference, reading

T_975_2 = 4.302652729911275  # t quantile, 2 degrees of freedom


def test_paired_difference_hand_computed_over_common_seeds():
    a = pd.Series([81.0, 82.0, 84.0, 99.0], index=[1, 2, 3, 4])
    b = pd.Series([80.0, 80.0, 81.0], index=[1, 2, 3])  # seed 4 has no partner
    d = paired_difference(a, b)  # differences 1, 2, 3
    half = T_975_2 * 1.0 / math.sqrt(3)
    assert d["n"] == 3 and d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0)
    assert (d["low"], d["high"]) == pytest.approx((2.0 - half, 2.0 + half))
    one = paired_difference(a.loc[[1]], b)
    assert one["n"] == 1 and one["mean"] == 1.0 and math.isnan(one["low"])
    none = paired_difference(a.loc[[4]], b)
    assert none["n"] == 0 and all(math.isnan(none[k]) for k in ("mean", "std", "low", "high"))


def test_reading_says_only_what_the_interval_allows():
    assert reading({"low": 0.5, "high": 2.0}, "a", "b") == "a beats b"
    assert reading({"low": -2.0, "high": -0.1}, "a", "b") == "b beats a"
    assert reading({"low": -0.5, "high": 2.0}, "a", "b") == "no difference shown"
    assert reading({"low": math.nan, "high": math.nan}, "a", "b") == "no difference shown"


def test_convergence_rule():
    assert convergence_gap([0.5] * 3 + [0.6] * 3) == pytest.approx(10.0)
    assert not has_converged([0.5] * 3 + [0.6] * 3)
    assert has_converged([0.3, 0.8, 0.901, 0.9, 0.9, 0.9, 0.901, 0.9])
    assert math.isnan(convergence_gap([0.9] * 5)) and not has_converged([0.9] * 5)


# ----------------------------------------------------------- from records on disk ----


def record(experiment: str, seed: int, test: float, val: list[float] | None = None) -> dict:
    val = val or [test - 0.1, test - 0.05, test]
    tests = [test - 0.1, test - 0.05, test]
    return {"config": {"preset": "quick", "experiment": experiment, "seed": seed,
                       "objective": {}, "train": {"epochs": 3}},
            "history": {"epoch": [1, 2, 3], "val_acc": val, "test_acc": tests,
                        "train_acc": [0.9] * 3},
            "final": {"epoch": 3, "test_acc": test, "val_acc": val[-1], "train_acc": 0.9},
            "environment": {"device": "cpu", "device_name": "cpu"}, "wall_seconds": 30.0,
            "provenance": {}, "interrupted": False}


@pytest.fixture
def root(tmp_path):
    """triplet > kd-t4 > logit-mse > ce-wd0.007 by 2-5 points on each of 3 seeds; a teacher at
    95 % that the triplet student (96 %) beats; one diverged run."""
    accuracy = {"ce-wd0.007": 0.80, "logit-mse": 0.83, "kd-t4": 0.88, "triplet": 0.96}
    for name, acc in accuracy.items():
        for seed, noise in zip((1, 2, 3), (0.0, 0.004, -0.003)):
            save_record(result_path(get_preset("quick"), name, seed, tmp_path),
                        record(name, seed, acc + noise * (name == "kd-t4")))
    save_record(result_path(get_preset("quick"), "teacher", 1, tmp_path),
                record("teacher", 1, 0.95))
    save_record(failed_path(result_path(get_preset("quick"), "logit-mse-lr0.001", 1, tmp_path)),
                {"config": {"experiment": "logit-mse-lr0.001", "seed": 1},
                 "error": "the mse loss became nan at epoch 2", "history": []})
    return tmp_path


def test_runs_frame_scores_test_accuracy_at_the_best_validation_epoch():
    runs = tb.runs_frame([record("ce", 1, 0.8, val=[0.5, 0.9, 0.7])])
    row = runs.iloc[0]
    assert row.test_at_best_val == pytest.approx(0.75)  # epoch 2: the best validation
    assert row.test_acc == pytest.approx(0.8) and row.val_acc == pytest.approx(0.7)
    assert row.method == "ce" and row.epochs == 3


def test_paired_table_and_verdict_from_the_records(root):
    assert set(rc.load_failures(get_preset("quick"), root).experiment) == {"logit-mse-lr0.001"}
    assert all(r["config"]["experiment"] != "logit-mse-lr0.001"
               for r in rc.load_records(get_preset("quick"), root))
    quick = get_preset("quick")
    runs = tb.runs_frame(rc.load_records(quick, root), check=False)
    table = tb.paired_table(runs, quick).set_index(["a", "b"])
    row = table.loc[("triplet", "kd-t4")]
    assert row.seeds == 3 and row.difference == pytest.approx(8.0 - 100 * 0.001 / 3, abs=1e-6)
    assert row.ci_low > 0 and row.reading == "triplet beats kd-t4"
    assert table.loc[("logit-mse", "ce-wd0.007")].reading == "logit-mse beats ce-wd0.007"
    text = vd.verdict_markdown(runs, "quick", rc.load_failures(quick, root))
    assert "on `quick`: holds.**" in text and "refuted" not in text
    assert "students above it: `triplet`" in text
    text = tb.paired_markdown(tb.paired_table(runs, quick))
    line = next(x for x in text.splitlines() if x.startswith("| `triplet` | `kd-t4` | 3 |"))
    assert line.endswith("| a > b | a > b |")  # a direction, unadjusted and after BH


def test_verdict_without_records_says_how_to_make_them(tmp_path):
    runs = tb.runs_frame(rc.load_records(get_preset("quick"), tmp_path))
    assert "python -m tkd reproduce --preset quick" in vd.verdict_markdown(runs, "quick")


def test_per_phase_rule_checks_the_plateau_before_every_decay():
    from tkd.stats import phase_ends, phase_gaps, phases_converged

    assert phase_ends(30, 10) == [10, 20, 30] and phase_ends(50, 20) == [20, 40, 50]
    still_rising = [0.5 + 0.01 * k for k in range(10)] + [0.7] * 10  # +1 point/epoch at 10
    gaps = phase_gaps(still_rising, lr_step=10)
    assert gaps[0] == pytest.approx(3.0) and gaps[1] == pytest.approx(0.0)
    assert has_converged(still_rising) and not phases_converged(still_rising, lr_step=10)
    flat = [0.5] * 4 + [0.6] * 6 + [0.7] * 10
    assert phases_converged(flat, lr_step=10)
    falling = [0.5] * 4 + [0.6] * 3 + [0.59] * 3 + [0.7] * 10  # -1 point before the decay
    assert phase_gaps(falling, lr_step=10)[0] == pytest.approx(-1.0)
    assert phases_converged(falling, lr_step=10)  # stopped rising: the rate had done its work
    assert not phases_converged(flat[:17] + [0.68] * 3, lr_step=10)  # but the end must be flat
    assert math.isnan(phase_gaps([0.5] * 24, lr_step=10)[-1])  # a last phase of 4 epochs


def test_bh_readings_follow_the_q_values_and_the_sign():
    from tkd.stats import bh_readings, exploratory_note

    readings = bh_readings([1.0, -1.0, 0.5, 2.0], [0.001, 0.002, 0.5, float("nan")])
    assert readings == ["holds", "refuted", "not shown", "not shown"]
    assert "3 unadjusted" in exploratory_note(3)


def test_paired_p_value_is_the_two_sided_t_test():
    from scipy import stats as scipy_stats

    a = pd.Series([1.0, 2.0, 3.5, 4.0], index=[1, 2, 3, 4])
    b = pd.Series([0.5, 2.5, 2.0, 3.0], index=[1, 2, 3, 4])
    assert paired_difference(a, b)["p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
