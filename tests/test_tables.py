"""The runs table and the tables read from it (tkd.tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tkd import experiments as ex
from tkd import tables as tb


def test_comparison_table_statistics():
    runs = pd.DataFrame({
        "experiment": ["ce", "ce", "ce", "kd-t4"], "test_acc": [0.5, 0.6, 0.7, 0.9],
        "train_acc": [0.6, 0.7, 0.8, 1.0], "best_test_acc": [0.5, 0.6, 0.7, 0.9],
        "val_acc": [0.55, 0.65, 0.75, 0.85], "test_at_best_val": [0.4, 0.6, 0.8, 0.9],
        "converged": [True, True, False, True], "device": ["cpu", "cpu", "H200", "cpu"],
        "epochs": [3, 3, 3, 3], "wall_seconds": [60.0] * 4,
    })
    table = tb.comparison_table(runs).set_index("experiment")
    assert table.loc["ce", "test_mean"] == pytest.approx(60.0)
    assert table.loc["ce", "test_std"] == pytest.approx(10.0)
    assert table.loc["ce", "test_at_best_val_mean"] == pytest.approx(60.0)
    assert table.loc["ce", "val_mean"] == pytest.approx(65.0)
    assert table.loc["ce", "converged"] == "2/3" and table.loc["ce", "devices"] == "H200, cpu"
    assert table.loc["ce", "compute_minutes"] == pytest.approx(3.0)
    assert np.isnan(table.loc["kd-t4", "test_std"])
    sentence = tb.describe_difference(table.reset_index().fillna(0), "kd-t4", "ce")
    assert sentence.startswith("kd-t4 is ahead of ce by +30.00 points")
    assert sentence.endswith("3.0x the larger seed std (10.00): beyond the seed spread.")


def test_beside_puts_a_smaller_preset_next_to_its_teachers_owner(tmp_path):
    from tkd.records import result_path, save_record

    def record(preset, name, seed, acc):
        return {"config": {"preset": preset, "experiment": name, "seed": seed, "objective": {},
                           "train": {"epochs": 1}},
                "history": {"epoch": [1], "val_acc": [acc], "test_acc": [acc],
                            "train_acc": [acc]},
                "final": {"test_acc": acc, "val_acc": acc, "train_acc": acc, "epoch": 1.0},
                "environment": {"device": "cpu", "device_name": "cpu"}, "wall_seconds": 1.0,
                "interrupted": False, "provenance": {}}

    accuracy = {"lesson": {"kd-t4": 0.88, "triplet": 0.86}, "fashion": {"kd-t4": 0.90,
                                                                        "triplet": 0.91}}
    for preset, rows in accuracy.items():
        for name, acc in rows.items():
            for seed in (1, 2):
                save_record(result_path(ex.get_preset(preset), name, seed, tmp_path),
                            record(preset, name, seed, acc + 0.001 * seed))
    lesson = ex.get_preset("lesson")
    text = tb.beside_markdown(lesson, tb.student_runs(lesson, tmp_path), tmp_path)
    assert "| `kd-t4` | 88.15 (2 seeds) | 90.15 (2 seeds) |" in text
    assert "| `kd-t4` − `triplet` | +2.00 [+2.00, +2.00] (2 seeds) |" in text
    assert text.rstrip().endswith("| no |")  # +2 on the lesson, -1 on the full set
    fashion = ex.get_preset("fashion")
    assert tb.beside_markdown(fashion, tb.student_runs(fashion, tmp_path), tmp_path) is None


def test_a_run_that_ends_at_chance_is_counted_in_the_seeds_cell_and_not_as_converged():
    """A student that ended where a constant guess ends (val. acc. below 1.5 / classes) is
    marked, with chance taken from the data set's number of classes."""
    assert tb.at_chance(0.10, "fashion-mnist") and not tb.at_chance(0.151, "fashion-mnist")
    assert not tb.at_chance(0.10, "cifar100") and tb.at_chance(0.01, "cifar100")
    runs = pd.DataFrame([{"experiment": "pkt", "seed": s, "epochs": 3, "test_acc": acc,
                          "test_at_best_val": acc, "val_acc": acc, "train_acc": acc,
                          "best_test_acc": acc, "converged": True, "device": "cpu",
                          "wall_seconds": 60.0, "stale": "",
                          "at_chance": tb.at_chance(acc, "fashion-mnist")}
                         for s, acc in ((1, 0.91), (2, 0.10), (3, 0.90))])
    table = tb.comparison_table(runs)
    assert table.loc[0, "at_chance"] == 1
    assert "| 3 (1 at chance) |" in tb.table_markdown(table)
    assert table.loc[0, "converged"] == "2/3"  # flat at chance has plateaued, not converged


def test_fidelity_comes_from_the_run_or_from_the_saved_weights_or_is_missing():
    scored = {"final": {"test_teacher_agreement": 0.9, "test_teacher_kl": 0.1}}
    later = {"final": {}, "fidelity": {"test_teacher_agreement": 0.8, "test_teacher_kl": 0.2}}
    assert tb._fidelity(scored)["fidelity_source"] == "run"
    assert tb._fidelity(later) == {"test_teacher_agreement": 0.8, "test_teacher_kl": 0.2,
                                   "fidelity_source": "saved weights"}
    assert tb._fidelity({"final": {}})["fidelity_source"] == ""


def test_a_row_chosen_on_validation_leaves_its_selection_run_out_of_its_means():
    """Seed 1 picked `kd-t2` on validation: its means read seeds 2-3, as its intervals do;
    a row with its selection run alone keeps it, and says so."""
    runs = pd.DataFrame([{"experiment": name, "seed": s, "epochs": 3, "test_acc": acc,
                          "test_at_best_val": acc, "val_acc": acc, "train_acc": acc,
                          "best_test_acc": acc, "converged": True, "device": "cpu",
                          "wall_seconds": 60.0, "stale": "", "at_chance": False}
                         for name, s, acc in (("kd-t2", 1, 0.95), ("kd-t2", 2, 0.90),
                                              ("kd-t2", 3, 0.92), ("dkd-b4", 1, 0.93))])
    table = tb.comparison_table(runs, selected={"kd-t2": 1, "dkd-b4": 1})
    table = table.set_index("experiment")
    assert table.loc["kd-t2", "test_mean"] == pytest.approx(91.0)
    assert table.loc["kd-t2", "seeds"] == 2
    assert table.loc["kd-t2", "compute_minutes"] == pytest.approx(3.0)  # all compute spent
    assert table.loc["dkd-b4", "test_mean"] == pytest.approx(93.0)
    text = tb.table_markdown(table.reset_index())
    assert "| 2 (its selection run left out) |" in text
    assert "| 1 (its selection run only) |" in text
    assert tb.comparison_table(runs).set_index("experiment").loc["kd-t2", "seeds"] == 3


def test_wall_seconds_is_at_least_the_sum_of_the_epochs_times():
    from tkd.tables import wall_seconds

    resumed = {"wall_seconds": 30.0, "history": {"epoch_seconds": [12.0, 13.0, 14.0]}}
    whole = {"wall_seconds": 45.0, "history": {"epoch_seconds": [12.0, 13.0, 14.0]}}
    assert wall_seconds(resumed) == 39.0  # older code recorded only its last session
    assert wall_seconds(whole) == 45.0
    assert wall_seconds({"wall_seconds": 5.0}) == 5.0
