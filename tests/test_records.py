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
