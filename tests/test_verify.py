"""`tkd verify`: fresh runs against committed records at three levels (identical, within
noise, same conclusions), each checked on constructed records."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from tkd import experiments as ex
from tkd import records as rc
from tkd import runs as rn
from tkd.cli import main
from tkd.records import load_record
from tkd.verify import (
    IMAGE_FLOOR,
    compare_records,
    compare_runs,
    conclusion_frame,
    levels,
    noise_frame,
    reproduced,
    summary_line,
)

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
COMMITTED = Path(__file__).resolve().parents[1] / "results"
TINY = dataclasses.replace(ex.PRESETS["quick"], epochs=2)


def copy_records(root: Path, runs: list[tuple[str, int]]) -> Path:
    """Copy committed quick records (JSON only) into ``root``."""
    for name, seed in runs:
        target = rc.result_path(ex.get_preset("quick"), name, seed, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(rc.result_path(ex.get_preset("quick"), name, seed, COMMITTED), target)
    return root


def edit(root: Path, name: str, seed: int, change) -> None:
    path = rc.result_path(ex.get_preset("quick"), name, seed, root)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_two_real_runs_of_the_same_seed_match_exactly(tmp_path):
    data = ex.load_data(TINY)
    for folder in ("a", "b"):
        rn.run_experiment(TINY, "ce", 1, data, root=tmp_path / folder, device="cpu")
    frame = compare_runs(tmp_path / "a", tmp_path / "b", ex.get_preset("quick"))
    assert len(frame) == 1 and frame.match.all() and frame.history_match.all()
    assert summary_line(frame) == "1/1 runs match the committed results (max |Δacc| = 0.00 points)"


def test_a_changed_accuracy_or_history_is_named(tmp_path):
    runs = [("ce", 1), ("ce", 2), ("triplet", 1)]
    fresh = copy_records(tmp_path / "fresh", runs)
    committed = copy_records(tmp_path / "committed", [*runs, ("triplet", 2), ("kd-t4", 1)])

    def lower(record):
        record["final"]["test_acc"] -= 0.01
        record["history"]["test_acc"][-1] -= 0.01

    edit(fresh, "ce", 2, lower)
    edit(fresh, "triplet", 1, lambda r: r["history"]["train_total"].__setitem__(0, 9.0))
    edit(fresh, "ce", 1, lambda r: r["history"]["epoch_seconds"].__setitem__(0, 99.0))
    frame = compare_runs(fresh, committed, ex.get_preset("quick")).set_index(["experiment", "seed"])
    assert "kd-t4" not in frame.index.get_level_values(0)  # not run afresh: not compared
    assert frame.loc[("ce", 1), "match"]  # timing columns are ignored
    assert not frame.loc[("ce", 2), "match"]
    assert frame.loc[("ce", 2), "delta"] == pytest.approx(1.0)
    assert not frame.loc[("triplet", 1), "match"] and frame.loc[("triplet", 1), "delta"] == 0
    assert not frame.loc[("triplet", 2), "match"]  # committed, but missing afresh
    line = summary_line(frame.reset_index())
    assert line.startswith("1/4 runs match the committed results (max |Δacc| = 1.00 points)")
    assert "ce seed 2 (|Δacc| 1.00" in line and "triplet seed 2 (no fresh run)" in line


def test_another_device_type_gets_the_stated_tolerance(tmp_path):
    fresh = copy_records(tmp_path / "fresh", [("ce", 1)])
    committed = copy_records(tmp_path / "committed", [("ce", 1)])

    def on_gpu(record, shift):
        record["environment"]["device"] = "cuda:0"
        record["final"]["test_acc"] += shift / 100
        record["history"]["test_acc"][-1] = record["final"]["test_acc"]
        record["history"]["train_total"][0] += 1e-4

    # a quick record from CUDA breaks the place rule of the files (quick is a CPU preset):
    # the tolerance across device types is a rule of the records, compared in memory
    edit(fresh, "ce", 1, lambda r: on_gpu(r, 0.25))
    pair = [[load_record(rc.result_path(ex.get_preset("quick"), "ce", 1, root))]
            for root in (fresh, committed)]
    assert compare_records(*pair, tolerance=None).match.all()
    assert not compare_records(*pair, tolerance=0.0).match.any()


HEADLINE_RUNS = [(e, s) for e in ("ce", "ce-wd0.007", "kd-t4", "triplet",
                                  "triplet-batch-semihard") for s in (1, 2, 3)]
ONE_IMAGE = 1 / 359  # the quick preset's test set


def shift(points: float):
    def change(record):
        record["final"]["test_acc"] += points
        record["history"]["test_acc"][-1] += points
    return change


def test_one_test_image_passes_level_2_but_not_level_1(tmp_path):
    fresh = copy_records(tmp_path / "fresh", HEADLINE_RUNS)
    committed = copy_records(tmp_path / "committed", HEADLINE_RUNS)
    edit(fresh, "kd-t4", 2, shift(-ONE_IMAGE))
    result = levels(ex_records(fresh), ex_records(committed))
    assert not result["identical"].match.all()
    noise = result["noise"].set_index("experiment")
    assert noise.ok.all() and noise.loc["kd-t4", "worst"] == pytest.approx(100 * ONE_IMAGE)
    assert (noise.bound >= 100 * IMAGE_FLOOR * ONE_IMAGE - 1e-9).all()
    assert reproduced(result)


def test_beyond_the_seed_spread_fails_level_2(tmp_path):
    fresh = copy_records(tmp_path / "fresh", HEADLINE_RUNS)
    committed = copy_records(tmp_path / "committed", HEADLINE_RUNS)
    bound = noise_frame(ex_records(committed), ex_records(committed)).set_index(
        "experiment").loc["triplet", "bound"]
    edit(fresh, "triplet", 1, shift(-(bound + 0.5) / 100))
    noise = levels(ex_records(fresh), ex_records(committed))["noise"].set_index("experiment")
    assert not noise.loc["triplet", "ok"] and noise.drop("triplet").ok.all()


def test_a_diverged_twin_is_a_categorical_mismatch(tmp_path):
    fresh = copy_records(tmp_path / "fresh", HEADLINE_RUNS)
    committed = copy_records(tmp_path / "committed", HEADLINE_RUNS)

    def at_chance(record):
        record["final"]["val_acc"] = record["final"]["test_acc"] = 0.1
        record["history"]["val_acc"][-1] = record["history"]["test_acc"][-1] = 0.1

    edit(fresh, "ce", 3, at_chance)
    result = levels(ex_records(fresh), ex_records(committed))
    row = result["noise"].set_index("experiment").loc["ce"]
    assert row.categorical == [3] and not row.ok
    assert not reproduced(result)


def test_a_flipped_verdict_step_fails_level_3(tmp_path):
    fresh = copy_records(tmp_path / "fresh", HEADLINE_RUNS)
    committed = copy_records(tmp_path / "committed", HEADLINE_RUNS)
    same = conclusion_frame(ex_records(fresh), ex_records(committed))
    assert len(same) and same.ok.all()
    step = same.set_index(["a", "b"]).loc[("triplet", "ce")]
    assert step.committed == "holds"  # the records' triplet beats the authors' student alone
    for seed in (1, 2, 3):  # afresh it falls ~20 points below it on every seed
        edit(fresh, "triplet", seed, shift(-0.2 - 0.01 * seed))
    steps = conclusion_frame(ex_records(fresh), ex_records(committed)).set_index(["a", "b"])
    row = steps.loc[("triplet", "ce")]
    assert row.fresh == "refuted" and not row.ok
    assert steps.loc[("ce-wd0.007", "ce")].ok  # a step the change does not touch


def ex_records(root):
    from tkd.records import load_records
    return load_records(ex.get_preset("quick"), root)


def test_verify_command_states_each_level_and_exits_on_2_and_3(tmp_path, capsys):
    fresh = copy_records(tmp_path / "fresh", HEADLINE_RUNS)
    args = ["verify", "--preset", "quick", "--fresh", str(fresh), "--committed", str(COMMITTED)]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-4].startswith("level 1, identical: yes: 15/15 runs match")
    assert lines[-3].startswith("level 2, within noise: yes: 5/5 experiments")
    assert lines[-2].startswith("level 3, same conclusions: yes")
    assert lines[-1].startswith("REPRODUCED") and "identical to the bit" in lines[-1]
    edit(fresh, "kd-t4", 1, shift(ONE_IMAGE))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "level 1, identical: no" in out and "not identical to the bit" in out
    edit(fresh, "kd-t4", 1, shift(0.3))
    assert main(args) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("NOT REPRODUCED: level 2 (within noise)")
    assert main([*args[:-4], "--fresh", str(tmp_path / "empty")]) == 2


def test_runs_from_another_cpu_model_are_named(tmp_path, capsys):
    fresh = copy_records(tmp_path / "fresh", [("ce", seed) for seed in (1, 2, 3)])
    args = ["verify", "--preset", "quick", "--fresh", str(fresh), "--committed", str(COMMITTED)]

    def on_another_cpu(record):
        record["environment"].update(device_name="Other CPU", cpu_capability="AVX2")
        record["history"]["train_total"][0] += 1e-6

    for seed in (1, 2, 3):
        edit(fresh, "ce", seed, on_another_cpu)
    assert main(args) == 0  # within noise: the results came out again
    out = capsys.readouterr().out
    assert "these on cpu Other CPU (AVX2)" in out and "level 1, identical: no" in out


def test_a_column_only_the_fresh_run_logs_is_not_a_difference():
    from tkd.verify import history_matches

    committed = {"history": {"test_acc": [0.5, 0.6], "epoch_seconds": [1.0, 2.0]}}
    fresh = {"history": {"test_acc": [0.5, 0.6], "test_teacher_kl": [0.3, 0.2],
                         "epoch_seconds": [3.0, 4.0]}}
    assert history_matches(fresh, committed)
    assert not history_matches(committed, fresh)  # a column the fresh run lost is a difference
    assert not history_matches({"history": {"test_acc": [0.5, 0.7]}}, committed)


def test_a_one_seed_rerun_is_checked_as_a_part_that_is_named(tmp_path, capsys):
    """After rerunning seed 1 only (the lesson's run) verify misses seeds 2-3 unless told to
    check a part: then it names the part, and level 3 (paired intervals) is not checked."""
    fresh = copy_records(tmp_path / "fresh", [(e, 1) for e, _ in HEADLINE_RUNS[::3]])
    args = ["verify", "--preset", "quick", "--fresh", str(fresh), "--committed", str(COMMITTED)]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "seeds [2, 3] have no fresh run (to check only the seeds rerun: --seeds)" in out
    assert main([*args, "--seeds", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-5] == "checked a part: seeds 1 of the committed seeds 1, 2, 3"
    assert lines[-4].startswith("level 1, identical: yes: 5/5 runs match")
    assert lines[-3].startswith("level 2, within noise: yes: 5/5 experiments")
    assert lines[-2].startswith("level 3, same conclusions: not checked: a paired interval")
    assert lines[-1] == ("REPRODUCED (the part checked: seeds 1; level 3 not checked): every "
                         "run within noise (identical to the bit)")
    edit(fresh, "kd-t4", 1, shift(0.3))  # beyond the seed spread: the part still fails
    assert main([*args, "--seeds", "1"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(
        "NOT REPRODUCED (the part checked: seeds 1; level 3 not checked): level 2")
    assert main([*args, "--seeds", "7"]) == 2
    assert "seeds [7] have no committed record" in capsys.readouterr().err


def test_a_part_of_two_seeds_checks_the_conclusions_on_those_seeds(tmp_path):
    runs = [(e, s) for e, s in HEADLINE_RUNS if s in (1, 2)]
    fresh = copy_records(tmp_path / "fresh", [*runs, ("ce", 3)])
    result = levels(ex_records(fresh), ex_records(COMMITTED), seeds=[2, 1])
    assert result["part"] == {"seeds": [1, 2], "committed": [1, 2, 3]}
    assert set(result["identical"].seed) == {1, 2} and result["identical"].match.all()
    assert result["conclusions"] is not None and result["conclusions"].ok.all()
    assert reproduced(result)
