"""Where records live, writing and reading them (tkd.records)."""

from __future__ import annotations

import torch

from tkd import experiments as ex
from tkd import records as rc

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin


QUICK = ex.PRESETS["quick"]


def test_results_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path))
    assert rc.result_path(QUICK, "ce", 2) == tmp_path / "quick" / "ce" / "2.json"
    assert rc.teacher_path(ex.PRESETS["fashion"]) == tmp_path / "fashion" / "teacher" / "model.pt"


def good_record() -> dict:
    history = {"epoch": [1, 2], "test_acc": [0.5, 0.75], "train_loss": [2.0, 1.0]}
    return {"config": {"preset": "quick", "experiment": "ce", "seed": 1,
                       "train": {"epochs": 2}},
            "history": history, "final": {k: float(v[-1]) for k, v in history.items()},
            "environment": {"device": "cpu"}, "provenance": {}, "wall_seconds": 1.0,
            "interrupted": False}


def test_record_fault_names_each_history_fault():
    """The history checks (tkd.records._history_fault) and those against the config and
    final that record_fault makes after them."""
    assert rc.record_fault(good_record()) is None
    damages = {
        "history has no 'test_acc' column": lambda h: h.pop("test_acc"),
        "history column 'train_loss' is not a list": lambda h: h.update(train_loss=2.0),
        "history column 'test_acc' holds 'x', not a number":
            lambda h: h.update(test_acc=["x", 0.75]),
        "history columns differ in length ([1, 2])": lambda h: h.update(train_loss=[2.0]),
        "history's epochs are not 1, 2, ..., n": lambda h: h.update(epoch=[1, 3]),
    }
    for fault, damage in damages.items():
        record = good_record()
        damage(record["history"])
        assert rc.record_fault(record) == f"its {fault}"
    record = good_record()
    record["interrupted"] = True
    assert rc.record_fault(record) == "it says interrupted but holds all 2 epochs"
