"""tkd.cluster on submitit's local executor: a teacher job, then the runs as one job array,
writing the same records as a local reproduction."""

from __future__ import annotations

import builtins
import dataclasses
import math

import pytest

from tkd import cluster
from tkd import experiments as ex
from tkd.cli import main
from tkd.results import load_record

TINY = dataclasses.replace(ex.PRESETS["quick"], teacher_epochs=3, epochs=2)


@pytest.mark.slow
def test_submit_grid_on_the_local_executor_writes_the_records(tmp_path, capsys):
    pytest.importorskip("submitit")
    root = tmp_path / "results"
    runs = [("ce", 1), ("triplet", 1)]
    submitted = cluster.submit_grid(TINY, runs, executor="submitit-local",
                                    folder=tmp_path / "logs", root=root, time_min=10, epochs=2)
    finals = cluster.wait(submitted)
    assert submitted["teacher_job_id"] and len(submitted["run_job_ids"]) == 2
    assert ex.teacher_path(TINY, root).is_file()
    for (name, seed), final in zip(runs, finals):
        record = load_record(ex.result_path(TINY, name, seed, root))
        assert ex.student_path(TINY, name, seed, root).is_file()
        assert math.isfinite(final["test_acc"]) and 0 <= final["test_acc"] <= 1
        assert record["final"] == final and len(record["history"]["epoch"]) == 2
    out = capsys.readouterr().out
    assert "job array" in out and str(tmp_path / "logs") in out
    again = cluster.submit_grid(TINY, runs, executor="submitit-local",
                                folder=tmp_path / "logs", root=root, epochs=2)
    assert again["teacher_job_id"] is None and again["jobs"] == []  # everything was done


def test_a_missing_submitit_gives_the_install_command(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_submitit(name, *args, **kwargs):
        if name == "submitit" or name.startswith("submitit."):
            raise ImportError("No module named 'submitit'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_submitit)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'tkd\[cluster\]'"):
        cluster.submit_grid("quick", [("ce", 1)], executor="slurm", folder=tmp_path,
                            root=tmp_path)
    code = main(["reproduce", "--preset", "quick", "--executor", "slurm", "--results",
                 str(tmp_path), "--experiments", "ce", "--seeds", "1"])
    assert code == 2 and "submitit is not installed" in capsys.readouterr().err


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown executor"):
        cluster.make_executor("pbs", tmp_path)
