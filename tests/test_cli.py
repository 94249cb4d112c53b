"""``python -m tkd train`` refuses bad input before any work: exit code 2 and an ``error:`` line
that names the problem (and lists the valid names where there is a list)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tkd.checkpoint import save_model
from tkd.cli import main
from tkd.experiments import get_preset
from tkd.models import build_model
from tkd.records import file_sha256

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of ``tkd <args>`` run in this process."""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    return code, capsys.readouterr().err


def train(tmp_path: Path, *extra: str) -> list[str]:
    return ["train", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run"), *extra]


@pytest.mark.parametrize("option, value, valid", [
    ("--dataset", "imagenet", "digits"),
    ("--model", "vgg", "paper-student"),
    ("--method", "triplett", "triplet-kd"),
    ("--negatives", "hardest", "batch-semihard"),
])
def test_unknown_names_list_the_valid_ones(tmp_path, capsys, option, value, valid):
    code, err = run(train(tmp_path, option, value), capsys)
    assert code == 2 and "error:" in err and value in err and valid in err


@pytest.mark.parametrize("option, value", [
    ("--epochs", "0"), ("--epochs", "-2"), ("--batch-size", "0"), ("--batch-size", "1.5"),
    ("--margin", "-1"), ("--margin", "nan"), ("--temperature", "0"), ("--temperature", "-1"),
    ("--triplet-weight", "-2"), ("--ce-weight", "inf"), ("--lr", "0"), ("--lr", "nan"),
    ("--weight-decay", "-1"), ("--seed", "-1"), ("--subset", "0"),
])
def test_bad_numbers_are_refused(tmp_path, capsys, option, value):
    code, err = run(train(tmp_path, option, value), capsys)
    assert code == 2 and "error:" in err and option in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra, message", [
    (("--method", "triplet"), "needs --teacher"),
    (("--method", "kd", "--teacher", "missing.pt"), "no such file"),
    (("--device", "tpu9"), "tpu9"),
    (("--method", "ce", "--kd-weight", "0", "--ce-weight", "0"), "every loss weight is 0"),
])
def test_inconsistent_settings_are_refused(tmp_path, capsys, extra, message):
    code, err = run(train(tmp_path, *extra), capsys)
    assert code == 2 and err.startswith("error:") and message in err


def test_existing_checkpoints_need_resume(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "epoch-0001.pt").write_bytes(b"")
    code, err = run(train(tmp_path), capsys)
    assert code == 2 and "already holds checkpoints: add --resume" in err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "run").write_text("not a folder")
    code, err = run(train(tmp_path), capsys)
    assert code == 2 and "is a file" in err


@pytest.mark.parametrize("classes, channels, wrong", [(100, 1, "num_classes 100"),
                                                      (10, 3, "in_channels 3")])
def test_teacher_that_does_not_fit_the_dataset(tmp_path, capsys, classes, channels, wrong):
    path = tmp_path / "teacher.pt"
    save_model(path, build_model("paper-teacher", classes, channels, 8), "paper-teacher",
               classes, channels, 8)
    code, err = run(train(tmp_path, "--method", "triplet", "--teacher", str(path)), capsys)
    assert code == 2 and "does not fit digits" in err and wrong in err


def test_teacher_file_that_is_not_a_model(tmp_path, capsys):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"\x00" * 100)
    code, err = run(train(tmp_path, "--method", "kd", "--teacher", str(path)), capsys)
    assert code == 2 and str(path) in err and "corrupted" in err


def write_idx(path: Path, array: np.ndarray, cut: int = 0) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw[: len(raw) - cut]))


@pytest.mark.parametrize("damage", ["missing-file", "wrong-size", "wrong-shape"])
def test_dataset_folder_with_missing_or_wrong_sized_files(tmp_path, capsys, damage):
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    side = 20 if damage == "wrong-shape" else 28
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", np.zeros((n, side, side)),
                  cut=50 if damage == "wrong-size" and split == "t10k" else 0)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    if damage == "missing-file":
        (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    code, err = run(train(tmp_path, "--dataset", "fashion-mnist", "--data-root",
                          str(tmp_path / "data")), capsys)
    expected = {"missing-file": "missing t10k-labels-idx1-ubyte.gz",
                "wrong-size": "truncated", "wrong-shape": "not 28x28"}[damage]
    assert code == 2 and err.startswith("error:") and expected in err
    assert not (tmp_path / "run").exists()


def test_a_good_run_writes_its_files_and_exit_code_0(tmp_path, capsys):
    code, _ = run(train(tmp_path, "--subset", "100", "--epochs", "1", "--deterministic"),
                  capsys)
    assert code == 0
    assert {p.name for p in (tmp_path / "run").iterdir()} == {
        "checkpoints", "model.pt", "history.csv", "result.json", "seconds.json"}
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["config"]["train"]["weight_decay"] == 0.01  # ce: the presets' rule


def test_validation_split_live_history_and_provenance(tmp_path, capsys, live_history):
    seen = live_history
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, build_model("paper-teacher", 10, 1, 8), "paper-teacher", 10, 1, 8)
    code, err = run(train(tmp_path, "--validation", "100", "--subset", "200", "--epochs", "2",
                          "--method", "triplet", "--teacher", str(teacher)), capsys)
    assert code == 0, err
    assert seen == [[1], [1, 2]]  # history.csv rewritten after every epoch
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    assert record["config"]["validation"] == 100
    assert record["config"]["train"]["weight_decay"] == 0.007  # distillation: the presets' rule
    assert record["provenance"]["data"]["sizes"]["validation"] == 100
    assert record["provenance"]["teacher_sha256"] == file_sha256(teacher)
    assert {"val_acc", "val_triplet"} <= set(record["history"])
    assert pd.read_csv(tmp_path / "run" / "history.csv")["epoch"].tolist() == [1, 2]


def test_exit_code_2_from_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tkd", "train", "--epochs", "0", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert "error: argument --epochs: must be a positive integer, got 0" in result.stderr


# ------------------------------------------------------------------------------- reproduce ----


def test_reproduce_passes_jobs_and_main_only_to_the_library(tmp_path, monkeypatch):
    import tkd.cli
    from tkd.experiments import MAIN, main_experiments

    calls = []
    monkeypatch.setattr(tkd.cli, "reproduce", lambda **kwargs: calls.append(kwargs))
    assert main(["reproduce", "--preset", "quick", "--main-only", "--jobs", "2",
                 "--no-figures", "--results", str(tmp_path), "--tensorboard", "tb",
                 "--cpu-mode", "native"]) == 0
    assert calls[0]["experiments"] == main_experiments(get_preset("quick"))
    assert calls[0]["jobs"] == 2
    assert "logit-mse" not in calls[0]["experiments"]  # lr 0.01 stays in the rate grid
    assert "logit-mse-lr0.003" in calls[0]["experiments"]
    assert main(["reproduce", "--preset", "fashion", "--main-only", "--no-figures",
                 "--results", str(tmp_path)]) == 0  # native by default: no restart
    assert calls[1]["experiments"] == list(MAIN)
    assert (calls[0]["root"], calls[0]["tensorboard"]) == (str(tmp_path), "tb")


def test_reproduce_sends_the_plan_to_the_cluster(tmp_path, monkeypatch):
    import tkd.cluster

    seen = {}

    def fake_submit(preset, runs, **options):
        seen.update(preset=preset, runs=runs, **options)
        return {"jobs": []}

    monkeypatch.setattr(tkd.cluster, "submit_grid", fake_submit)
    assert main(["reproduce", "--executor", "slurm", "--partition", "gpu", "--time-min", "30",
                 "--gpus-per-run", "1", "--experiments", "ce", "triplet", "--seeds", "1",
                 "--results", str(tmp_path)]) == 0
    assert seen["runs"] == [("ce", 1), ("triplet", 1)] and seen["executor"] == "slurm"
    assert (seen["partition"], seen["time_min"], seen["gpus_per_run"]) == ("gpu", 30, 1)
    assert seen["folder"] == tmp_path / "quick" / "_submitit"


@pytest.mark.parametrize("extra", [["--jobs", "0"], ["--executor", "pbs"],
                                   ["--main-only", "--experiments", "ce"],
                                   ["--gpus-per-run", "-1"]])
def test_reproduce_refuses_bad_options(extra, capsys):
    code, err = run(["reproduce", *extra], capsys)
    assert code == 2 and "error:" in err


def test_verify_without_committed_records_says_where_it_looked(tmp_path, capsys):
    fresh = tmp_path / "fresh" / "quick" / "ce"
    fresh.mkdir(parents=True)
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[1] / "results" / "quick" / "ce" / "1.json",
                fresh / "1.json")
    code = main(["verify", "--preset", "quick", "--fresh", str(tmp_path / "fresh"),
                 "--committed", str(tmp_path / "nothing")])
    assert code == 2
    assert "no committed records of preset 'quick'" in capsys.readouterr().err


def test_every_objective_term_has_a_weight_flag():
    """``--<term>-weight`` for every term of tkd.objective.TERMS (a new term gets its flag),
    stored as the ObjectiveConfig field ``<term>_weight``; the old flags keep their names."""
    import argparse
    from dataclasses import fields

    from tkd.cli import add_train_arguments
    from tkd.objective import TERMS, ObjectiveConfig

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    flags = {opt: action.dest for action in parser._actions for opt in action.option_strings}
    config_fields = {f.name for f in fields(ObjectiveConfig)}
    for term in TERMS:
        flag = f"--{term.replace('_', '-')}-weight"
        assert flags.get(flag) == f"{term}_weight", flag
        assert f"{term}_weight" in config_fields
    for old in ("--ce-weight", "--kd-weight", "--mse-weight", "--triplet-weight",
                "--pair-weight"):
        assert old in flags
    args = parser.parse_args(["--out", "x", "--rkd-angle-weight", "3"])
    assert args.rkd_angle_weight == 3.0


def test_fair_plan_on_a_folder_without_records_says_what_to_train_first(tmp_path, capsys):
    assert main(["fair-plan", "2", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no records of the preset fashion" in err and "reproduce --preset fashion" in err
