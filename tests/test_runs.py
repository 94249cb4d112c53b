"""Training and loading runs (tkd.runs), on tiny real runs of `digits`."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from tests.helpers import edit_record
from tkd import experiments as ex
from tkd import records as rc
from tkd import runs as rn
from tkd.checkpoint import save_model
from tkd.grid import reproduce
from tkd.models import build_model

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin


TINY = dataclasses.replace(ex.PRESETS["quick"], epochs=2, teacher_epochs=1, seeds=(1,),
                           headline_seeds=(1,), sweep_seeds=(1,))


QUICK = ex.PRESETS["quick"]


def test_reproduce_trains_teacher_first_writes_records_and_skips_existing(tmp_path):
    lines: list[str] = []
    paths = reproduce(TINY, ["ce", "triplet"], root=tmp_path, log=lines.append, progress=False)
    assert "teacher trained" in lines[0]
    assert rc.teacher_path(TINY, tmp_path).is_file()
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == \
        ["quick/ce/1.json", "quick/triplet/1.json"]
    record = json.loads(paths[1].read_text())
    assert set(record) >= {"config", "history", "final", "environment", "wall_seconds"}
    assert record["config"]["experiment"] == "triplet"
    assert record["config"]["objective"]["triplet_weight"] == 2.0
    assert record["config"]["train"]["weight_decay"] == 0.007
    assert json.loads(paths[0].read_text())["config"]["train"]["weight_decay"] == 0.01
    assert record["history"]["epoch"] == [1, 2]
    assert "train_triplet" in record["history"] and "test_triplet" in record["history"]
    assert 0.0 <= record["final"]["test_acc"] <= 1.0
    before = [p.stat().st_mtime_ns for p in paths]
    lines.clear()
    reproduce(TINY, ["ce", "triplet"], root=tmp_path, log=lines.append, progress=False)
    assert "teacher loaded" in lines[0]
    assert all("skipped" in line for line in lines[1:])
    assert [p.stat().st_mtime_ns for p in paths] == before


def test_a_run_depends_on_its_seed_only(tmp_path):
    data = ex.load_data(TINY)
    first = rn.run_experiment(TINY, "ce", 3, data, root=tmp_path / "a")
    rn.run_experiment(TINY, "ce", 4, data, root=tmp_path / "b")  # moves the global RNG
    again = rn.run_experiment(TINY, "ce", 3, data, root=tmp_path / "c")
    assert first["history"]["train_total"] == again["history"]["train_total"]


def test_load_or_train_student_never_loads_a_student_without_a_current_record(tmp_path):
    data = ex.load_data(QUICK)
    data.train = data.train.subset(100)
    teacher = build_model("paper-teacher", 10, 1, 8).eval()
    model = rn.load_or_train_student(QUICK, "triplet", data, teacher, seed=1, epochs=1,
                                     root=tmp_path, log=lambda _: None)
    assert not model.training
    path = rc.student_path(QUICK, "triplet", 1, tmp_path)
    assert path == tmp_path / "quick" / "triplet" / "1.pt"
    assert not path.exists()  # a shortened run is not kept as the preset's student
    save_model(path, model, "paper-student", 10, 1, 8)  # a student with no record
    with pytest.raises(ValueError, match=r"no record 1.json.*python -m tkd reproduce --preset "
                                         r"quick --experiments triplet --seeds 1"):
        rn.load_or_train_student(QUICK, "triplet", data, teacher, seed=1, epochs=1,
                                 root=tmp_path, log=lambda _: None)
    with pytest.raises(ValueError, match="no record"):
        rn.load_student(QUICK, "triplet", root=tmp_path)


SHORT = dataclasses.replace(TINY, name="short", epochs=1, subset=100)


def test_a_saved_student_of_another_teacher_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(ex.PRESETS, "short", SHORT)
    reproduce(SHORT, ["logit-mse"], root=tmp_path, log=lambda _: None, progress=False)
    data = ex.load_data(SHORT)
    rn.load_student(SHORT, "logit-mse", root=tmp_path, data_identity=data.identity())
    edit_record(rc.result_path(SHORT, "logit-mse", 1, tmp_path), "provenance", "teacher_sha256",
         "0" * 64)
    with pytest.raises(ValueError, match="another teacher"):
        rn.load_student(SHORT, "logit-mse", root=tmp_path, data_identity=data.identity())


def test_a_resumed_run_records_the_wall_time_of_all_its_sessions(tmp_path, monkeypatch):
    """Ctrl-C after epoch 1, then the same run again: the record's wall time counts the first
    session's epoch too (made to look slow here: 1000 s)."""
    data = ex.load_data(TINY)
    original = rn.RunClock.__call__

    def interrupt_after_epoch_one(self, row):
        original(self, row)
        raise KeyboardInterrupt

    monkeypatch.setattr(rn.RunClock, "__call__", interrupt_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        rn.run_experiment(TINY, "ce", 1, data, root=tmp_path)
    monkeypatch.setattr(rn.RunClock, "__call__", original)
    seconds = rc.result_path(TINY, "ce", 1, tmp_path).with_name("1.run") / "seconds.json"
    assert len(json.loads(seconds.read_text())["seconds"]) == 1
    seconds.write_text(json.dumps({"seconds": [1000.0]}))
    record = rn.run_experiment(TINY, "ce", 1, data, root=tmp_path)
    assert record["history"]["epoch"] == [1, 2]
    assert 1000.0 < record["wall_seconds"] < 1000.0 + 600
