"""`tkd verify`: fresh runs against committed records, exact on the same device type."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from tkd import experiments as ex
from tkd.cli import main
from tkd.verify import CROSS_DEVICE_TOLERANCE, compare_runs, summary_line

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
COMMITTED = Path(__file__).resolve().parents[1] / "results"
TINY = dataclasses.replace(ex.PRESETS["quick"], epochs=2)


def copy_records(root: Path, runs: list[tuple[str, int]]) -> Path:
    """Copy committed quick records (JSON only) into ``root``."""
    for name, seed in runs:
        target = ex.result_path("quick", name, seed, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ex.result_path("quick", name, seed, COMMITTED), target)
    return root


def edit(root: Path, name: str, seed: int, change) -> None:
    path = ex.result_path("quick", name, seed, root)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_two_real_runs_of_the_same_seed_match_exactly(tmp_path):
    data = ex.load_data(TINY)
    for folder in ("a", "b"):
        ex.run_experiment(TINY, "ce", 1, data, root=tmp_path / folder, device="cpu")
    frame = compare_runs(tmp_path / "a", tmp_path / "b", "quick")
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
    frame = compare_runs(fresh, committed, "quick").set_index(["experiment", "seed"])
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
        record["history"]["train_total"][0] += 1e-4

    edit(fresh, "ce", 1, lambda r: on_gpu(r, CROSS_DEVICE_TOLERANCE / 2))
    assert compare_runs(fresh, committed, "quick", tolerance=None).match.all()
    assert not compare_runs(fresh, committed, "quick", tolerance=0.0).match.any()
    edit(fresh, "ce", 1, lambda r: on_gpu(r, CROSS_DEVICE_TOLERANCE))
    assert not compare_runs(fresh, committed, "quick", tolerance=None).match.any()


def test_verify_command_exit_code(tmp_path, capsys):
    fresh = copy_records(tmp_path / "fresh", [(e, s) for e in ("ce", "triplet") for s in (1, 2, 3)])
    args = ["verify", "--preset", "quick", "--fresh", str(fresh), "--committed", str(COMMITTED)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| `ce` |" in out and "6/6 runs match the committed results" in out
    edit(fresh, "ce", 1, lambda r: r["final"].__setitem__("test_acc", 0.5))
    assert main(args) == 1
    assert "5/6 runs match" in capsys.readouterr().out
    assert main([*args[:-4], "--fresh", str(tmp_path / "empty")]) == 2


def test_runs_from_another_cpu_model_are_named_with_the_way_to_compare_them(tmp_path, capsys):
    fresh = copy_records(tmp_path / "fresh", [("ce", seed) for seed in (1, 2, 3)])
    args = ["verify", "--preset", "quick", "--fresh", str(fresh), "--committed", str(COMMITTED)]

    def on_another_cpu(record):
        record["environment"].update(device_name="Other CPU", cpu_capability="AVX2")
        record["final"]["test_acc"] -= 0.002

    for seed in (1, 2, 3):
        edit(fresh, "ce", seed, on_another_cpu)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "note: the committed runs were trained on cpu x86_64 (instruction set not " \
           "recorded); these on cpu Other CPU (AVX2)" in out
    assert f"verify --preset quick --fresh {fresh} --tolerance 0.6" in out
    assert main([*args, "--tolerance", "0.6"]) == 0
    assert "note:" not in capsys.readouterr().out  # all match: nothing to explain
    edit(fresh, "ce", 1, lambda r: r["final"].__setitem__("test_acc", 0.5))
    assert main(args) == 1
    assert "note:" in capsys.readouterr().out
