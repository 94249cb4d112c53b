"""The paper's ordering read step by step from paired intervals (holds / refuted / not shown),
the learning rate of Ba & Caruana chosen on validation, and gaps across schedule lengths."""

from __future__ import annotations

import pandas as pd
import pytest

from tkd import verdict as vd

T_975_2 = 4.302652729911275


def runs(accuracy: dict[str, list[float]], val: dict[str, float] | None = None) -> pd.DataFrame:
    """A runs table: experiment -> final test accuracy (fraction) per seed 1, 2, 3, ..."""
    val = val or {}
    return pd.DataFrame([{"experiment": name, "seed": seed, "test_acc": acc,
                          "val_acc": val.get(name, acc)}
                         for name, accs in accuracy.items()
                         for seed, acc in enumerate(accs, start=1)])


def test_each_step_reads_holds_refuted_or_not_shown():
    table = runs({"a": [0.90, 0.91, 0.92], "b": [0.80, 0.80, 0.81], "c": [0.90, 0.92, 0.90]})
    assert vd.paired(table, "a", "b")["reading"] == vd.HOLDS
    assert vd.paired(table, "b", "a")["reading"] == vd.REFUTED
    assert vd.paired(table, "a", "c")["reading"] == vd.NOT_SHOWN  # differences -0, -1, +2
    one = runs({"a": [0.9], "b": [0.8]})
    assert vd.paired(one, "a", "b")["reading"] == vd.NOT_SHOWN  # no interval from one seed


def test_the_interval_is_the_paired_t_interval():
    table = runs({"a": [0.90, 0.92, 0.97], "b": [0.88, 0.88, 0.88]})
    step = vd.paired(table, "a", "b")
    d = pd.Series([2.0, 4.0, 9.0])
    half = T_975_2 * d.std(ddof=1) / 3 ** 0.5
    assert step["mean"] == pytest.approx(5.0)
    assert step["low"] == pytest.approx(5.0 - half) and step["high"] == pytest.approx(5.0 + half)


def test_the_ordering_is_refuted_by_one_reversed_step_and_not_shown_by_one_open_step():
    assert vd.ordering_reading([vd.HOLDS, vd.HOLDS]) == vd.HOLDS
    assert vd.ordering_reading([vd.HOLDS, vd.NOT_SHOWN]) == vd.NOT_SHOWN
    assert vd.ordering_reading([vd.NOT_SHOWN, vd.REFUTED]) == vd.REFUTED
    assert vd.ordering_reading([]) == vd.NOT_SHOWN


def test_ladder_uses_the_loss_matched_control_and_the_rate_chosen_on_validation():
    table = runs({"triplet": [0.95, 0.96, 0.95], "kd-t4": [0.90, 0.91, 0.90],
                  "logit-mse": [0.10, 0.10, 0.10], "logit-mse-lr0.001": [0.86, 0.87, 0.86],
                  "ce-wd0.007": [0.80, 0.81, 0.80], "ce": [0.88, 0.88, 0.88]},
                 val={"logit-mse": 0.1, "logit-mse-lr0.001": 0.87})
    steps = vd.ladder(table)
    assert [(s["a"], s["b"]) for s in steps] == [
        ("triplet", "kd-t4"), ("kd-t4", "logit-mse-lr0.001"), ("logit-mse-lr0.001", "ce-wd0.007")]
    assert all(s["reading"] == vd.HOLDS for s in steps)
    text = vd.verdict_text(table, "toy", teacher_acc=0.97)
    assert "on `toy`: holds.**" in text
    assert "chosen on validation (`logit-mse-lr0.001` of 2 rates run)" in text
    assert "no student reaches it" in text


@pytest.mark.parametrize("kd, expected", [([0.97, 0.98, 0.97], "refuted"),
                                          ([0.95, 0.96, 0.94], "not shown")])
def test_verdict_text_names_a_refuted_or_untested_claim(kd, expected):
    table = runs({"triplet": [0.95, 0.96, 0.95], "kd-t4": kd, "ce-wd0.007": [0.8, 0.8, 0.81],
                  "logit-mse": [0.85, 0.86, 0.85]})
    assert f"on `toy`: {expected}.**" in vd.verdict_text(table, "toy")


def test_a_step_without_runs_is_not_shown_and_says_which_method_was_not_run():
    table = runs({"triplet": [0.95, 0.96, 0.95], "kd-t4": [0.90, 0.91, 0.90]})
    steps = vd.ladder(table)
    assert steps[0]["reading"] == vd.HOLDS and steps[1]["n"] == 0
    assert vd.ordering_reading([s["reading"] for s in steps]) == vd.NOT_SHOWN
    text = vd.verdict_text(table, "toy")
    assert "`kd-t4` > `logit-mse`: not shown (`logit-mse` not run in this preset)" in text
    assert "(`logit-mse` and `ce-wd0.007` not run in this preset)" in text
    assert "common seeds" not in text


def test_schedule_frame_puts_each_gap_beside_each_length():
    short = runs({"kd-t4": [0.91, 0.91, 0.92, 0.92], "triplet": [0.90, 0.89, 0.90, 0.90]})
    long = runs({"kd-t4": [0.91, 0.91, 0.90], "triplet": [0.905, 0.91, 0.895]})
    longest = runs({"kd-t4": [0.92], "triplet": [0.915]})
    frame = vd.schedule_frame({10: short, 20: long, 40: longest}, [("kd-t4", "triplet")])
    # seed 4 has no 20-epoch runs, so the 10-epoch gap is taken over seeds 1-3 as well;
    # the 40-epoch length, one seed so far, is shown over that seed and shrinks no other
    assert list(frame.first_phase) == [10, 20, 40] and list(frame.n) == [3, 3, 1]
    assert frame["mean"].tolist() == pytest.approx([5 / 3, 1 / 3, 0.5])
    text = vd.schedule_markdown(frame)
    assert "first phase 10 epochs" in text and "first phase 40 epochs" in text
    assert "| `kd-t4` − `triplet` | +1.67 [" in text and "+0.33 [" in text
    assert "+0.50 (1 seed)" in text


def test_relation_methods_meet_kd_the_triplet_and_the_best_mined_triplet():
    table = runs({"kd-t4": [0.90, 0.91, 0.90], "triplet": [0.89, 0.90, 0.89],
                  "triplet-batch-hard": [0.92, 0.93, 0.92], "triplet-batch-semihard":
                  [0.93, 0.93, 0.93], "rkd": [0.91, 0.92, 0.91], "pkt": [0.92, 0.10, 0.92],
                  "pkt-w100": [0.90, 0.90, 0.90],
                  "hint": [0.10, 0.10, 0.10], "hint-w10": [0.88, 0.88, 0.89],
                  "hint-w1": [0.89, 0.89, 0.89]},
                 val={"triplet-batch-hard": 0.95, "hint-w10": 0.90, "hint-w1": 0.89})
    # hint-w10 wins on validation although hint-w1 is better on test; PKT's published weight
    # wins at seed 1 although its seed 2 collapsed: every choice sees seed 1 only
    assert vd.relation_methods(table) == ["rkd", "pkt", "hint-w10"]
    frame = vd.relations_frame(table)
    assert list(frame.b.unique()) == ["kd-t4", "triplet", "triplet-batch-hard"]
    rkd = frame[(frame.a == "rkd") & (frame.b == "kd-t4")].iloc[0]
    assert rkd["mean"] == pytest.approx(1.0) and rkd.reading == vd.HOLDS
    assert rkd.n == 3  # neither side was chosen on validation: every seed counts
    hard = frame[(frame.a == "rkd") & (frame.b == "triplet-batch-hard")].iloc[0]
    # seed 1 chose triplet-batch-hard among the miners: its run is left out of the interval
    assert hard.n == 2 and hard["mean"] == pytest.approx(-1.0) and hard.reading == vd.REFUTED
    hint = frame[(frame.a == "hint-w10") & (frame.b == "kd-t4")].iloc[0]
    assert hint.n == 2 and hint["mean"] == pytest.approx(-2.0)  # seeds 2, 3: -2, -2
    text = vd.relations_markdown(frame)
    assert "| `hint-w10` |" in text and "(2 seeds, behind; BH: behind)" in text
    assert "`rkd` > `kd-t4`: **holds**" in vd.relations_sentence(table)
    assert vd.relations_sentence(runs({"kd-t4": [0.9]})) == ""


def test_the_verdict_names_a_tie_between_mined_triplets():
    table = runs({"kd-t4": [0.90, 0.91, 0.90], "triplet-batch-hard": [0.92, 0.93, 0.92],
                  "triplet-batch-semihard": [0.92, 0.90, 0.93],  # tied at seed 1
                  "triplet-batch-random": [0.90, 0.90, 0.90]})
    text = vd.verdict_text(table, "toy")
    assert "(tied on validation with `triplet-batch-semihard`): `triplet-batch-hard` >" in text


def test_a_step_with_one_common_seed_is_not_shown_and_counts_it():
    one = runs({"triplet": [0.90], "kd-t4": [0.91], "logit-mse": [0.5, 0.6],
                "ce-wd0.007": [0.88]})
    assert "`triplet` > `kd-t4`: not shown (1 common seed)" in vd.verdict_text(one, "toy")


def test_todays_logit_kd_enters_at_its_setting_chosen_on_validation():
    table = runs({"kd-t4": [0.90, 0.91, 0.90, 0.91], "triplet": [0.89, 0.89, 0.90, 0.89],
                  "triplet-batch-semihard": [0.93, 0.935, 0.94, 0.94],
                  "triplet-batch-hard": [0.91, 0.92, 0.92, 0.92],
                  "dkd": [0.91, 0.92, 0.91, 0.92], "dkd-b2": [0.95, 0.95, 0.95, 0.95],
                  "triplet-ls": [0.90, 0.90, 0.91, 0.90],
                  "triplet-ls-m2": [0.93, 0.93, 0.93, 0.93]},
                 val={"dkd": 0.93, "dkd-b2": 0.90, "triplet-ls": 0.90, "triplet-ls-m2": 0.95,
                      "triplet-batch-semihard": 0.93, "triplet-batch-hard": 0.92})
    assert vd.modern_methods(table) == ["dkd", "triplet-ls-m2"]  # not dkd-b2: test is unseen
    frame = vd.modern_frame(table).set_index(["a", "b"])
    assert ("dkd-b2", "kd-t4") not in frame.index
    assert frame.loc[("dkd", "kd-t4"), "mean"] == pytest.approx(1.0)
    # dkd and the semi-hard miner were chosen at seed 1: their intervals read seeds 2-4
    assert frame.loc[("dkd", "kd-t4"), "n"] == 3
    assert frame.loc[("dkd", "triplet-batch-semihard"), "reading"] == vd.REFUTED
    assert frame.loc[("triplet-ls-m2", "triplet"), "reading"] == vd.HOLDS  # the raw twin
    assert "`dkd` > `kd-t4`" in vd.modern_sentence(table)
    assert vd.modern_sentence(runs({"kd-t4": [0.9]})) == ""


def test_headline_pairs_put_the_chosen_rate_and_mined_triplet_first_then_the_others():
    names = ["triplet", "kd-t4", "ce-wd0.007", "triplet-batch-hard", "triplet-batch-semihard",
             "logit-mse", "logit-mse-lr0.003", "logit-mse-lr0.001"]
    val = {"triplet-batch-semihard": 0.95, "triplet-batch-hard": 0.94,
           "logit-mse-lr0.001": 0.93, "logit-mse-lr0.003": 0.92, "logit-mse": 0.1}
    runs = pd.DataFrame([{"experiment": n, "seed": s, "test_acc": 0.9, "val_acc": val.get(n, 0.9)}
                         for n in names for s in (1, 2)])
    pairs = vd.headline_pairs(runs)
    assert pairs.index(("triplet-batch-semihard", "kd-t4")) < pairs.index(
        ("triplet-batch-hard", "kd-t4"))  # chosen on validation first, the other after it
    assert ("triplet-batch-hard", "triplet") in pairs
    assert pairs.index(("kd-t4", "logit-mse-lr0.001")) < pairs.index(
        ("kd-t4", "logit-mse-lr0.003"))
    assert ("logit-mse-lr0.003", "ce-wd0.007") in pairs
    assert ("kd-t4", "logit-mse") not in pairs  # the collapsed rate 0.01 is neither
    assert len(pairs) == len(set(pairs))


def test_the_control_at_0003_is_read_paired_once_the_mined_triplet_at_0003_has_its_seeds():
    from tkd.experiments import get_preset
    from tkd.fair import CONTROL_RATE_CHECK, control_partner
    from tkd.records import load_records
    from tkd.tables import runs_frame

    real = runs_frame(load_records(get_preset("fashion")), check=False)
    partner = control_partner(real)
    twins = real.experiment.isin([partner, "ce-wd0.007-lr0.003"])
    real = real[~twins | (real.seed == 1)]  # their rate-candidate runs only
    assert "two rates, so a direction" in vd._control_text(real)
    twin = real[(real.experiment == CONTROL_RATE_CHECK) & (real.seed > 1)].copy()
    gaps = [0.019, 0.021, 0.018, 0.022][:len(twin)]  # mean 0.02 over seeds 2-5
    twin["experiment"], twin["test_acc"] = partner, twin.test_acc + gaps
    text = vd._control_text(pd.concat([real, twin]))
    assert "two rates" not in text
    assert f"`{partner}` − `{CONTROL_RATE_CHECK}`: ahead, +2" in text
    assert "5 seeds" in text  # seeds 1-5: neither side's runs chose anything
    assert "against the student alone at that rate" not in text  # one seed of it so far
    alone = twin.copy()
    alone["experiment"], alone["test_acc"] = "ce-wd0.007-lr0.003", twin.test_acc - 0.03
    text = vd._control_text(pd.concat([real[real.experiment != "ce-wd0.007-lr0.003"], twin, alone]))
    assert f"against the student alone at that rate, `{CONTROL_RATE_CHECK}` − " in text
