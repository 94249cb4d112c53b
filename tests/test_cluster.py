"""tkd.cluster on submitit's local executor: a teacher job, then the runs as one job array,
writing the same records as a local reproduction."""

from __future__ import annotations

import builtins
import dataclasses
import math

import pytest

from tests.helpers import edit_record
from tkd import cluster
from tkd import experiments as ex
from tkd import records as rc
from tkd.cli import main
from tkd.grid import reproduce
from tkd.portable import portable_environment
from tkd.records import load_record

TINY = dataclasses.replace(ex.PRESETS["quick"], teacher_epochs=3, epochs=2)


@pytest.mark.slow
def test_submit_grid_on_the_local_executor_writes_the_records(tmp_path, capsys):
    pytest.importorskip("submitit")
    root = tmp_path / "results"
    runs = [("ce", 1), ("triplet", 1)]
    submitted = cluster.submit_grid(TINY, runs, executor="submitit-local",
                                    folder=tmp_path / "logs", root=root, time_min=10, epochs=2,
                                    environment=portable_environment(1))
    finals = cluster.wait(submitted)
    assert submitted["teacher_job_id"] and len(submitted["run_job_ids"]) == 2
    assert rc.teacher_path(TINY, root).is_file()
    for (name, seed), final in zip(runs, finals):
        record = load_record(rc.result_path(TINY, name, seed, root))
        assert rc.student_path(TINY, name, seed, root).is_file()
        assert math.isfinite(final["test_acc"]) and 0 <= final["test_acc"] <= 1
        assert record["final"] == final and len(record["history"]["epoch"]) == 2
        assert record["environment"]["cpu_mode"]["mode"] == "portable"  # set in the job
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
        cluster.submit_grid(ex.get_preset("quick"), [("ce", 1)], executor="slurm", folder=tmp_path,
                            root=tmp_path)
    code = main(["reproduce", "--preset", "quick", "--executor", "slurm", "--results",
                 str(tmp_path), "--experiments", "ce", "--seeds", "1"])
    assert code == 2 and "submitit is not installed" in capsys.readouterr().err


def test_jobs_export_the_environment_before_python_starts(tmp_path):
    pytest.importorskip("submitit")
    job_executor = cluster.make_executor("submitit-local", tmp_path,
                                         environment={"A": "b c", "MKL_CBWR": "COMPATIBLE"})
    assert job_executor._executor.parameters["setup"] == ["export A='b c'",
                                                          "export MKL_CBWR=COMPATIBLE"]


@pytest.mark.parametrize("mode, expected", [([], portable_environment(1)),
                                            (["--cpu-mode", "native"], None)])
def test_the_portable_mode_travels_to_cluster_jobs(tmp_path, monkeypatch, mode, expected):
    seen = {}
    monkeypatch.setattr(cluster, "submit_grid", lambda *a, **kw: seen.update(kw) or {})
    code = main(["reproduce", "--preset", "quick", "--executor", "slurm", "--results",
                 str(tmp_path), "--experiments", "ce", "--seeds", "1", *mode])
    assert code == 0 and seen["environment"] == expected


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown executor"):
        cluster.make_executor("pbs", tmp_path)


GRID_TINY = dataclasses.replace(
    ex.PRESETS["quick"], epochs=1, teacher_epochs=1, subset=200, teacher_model="paper-student")


class FakeJob:
    def __init__(self, n):
        self.job_id = str(n)

    def result(self):
        return 0.5


class FakeExecutor:
    """Records what would be submitted; the teacher job is not run."""

    def __init__(self):
        self.submitted, self.arrays = [], []

    def update_parameters(self, **kwargs):
        pass

    def submit(self, function, *args):
        self.submitted.append((function.__name__, args))
        return FakeJob(len(self.submitted))

    def map_array(self, function, *columns):
        self.arrays.append(list(zip(columns[1], columns[2])))
        return [FakeJob(100 + k) for k in range(len(columns[1]))]


def test_submit_grid_submits_exactly_the_stale_runs_of_the_local_grid(tmp_path, monkeypatch):
    """The same teacher and pending checks as tkd.grid.reproduce: a stale record (settings,
    teacher, data, code) is resubmitted, a current one is not; a stale teacher is retrained."""
    root = tmp_path / "results"
    runs = [("ce", 1), ("logit-mse", 1), ("kd-t4", 1), ("ce-wd0.007", 1), ("pair", 1)]
    reproduce(GRID_TINY, [e for e, _ in runs], root=root, log=lambda _: None, progress=False)
    edit_record(rc.result_path(GRID_TINY, "ce", 1, root), "config", "train", "lr", 0.5)
    edit_record(rc.result_path(GRID_TINY, "logit-mse", 1, root), "provenance",
                "teacher_sha256", "0" * 64)
    edit_record(rc.result_path(GRID_TINY, "kd-t4", 1, root), "provenance", "data", "name",
                "x")
    edit_record(rc.result_path(GRID_TINY, "ce-wd0.007", 1, root), "provenance", "code",
                "tkd.train.fit", "0" * 12)
    fake = FakeExecutor()
    monkeypatch.setattr(cluster, "make_executor", lambda *args, **kwargs: fake)
    lines = []
    submitted = cluster.submit_grid(GRID_TINY, runs, executor="slurm", root=root,
                                    log=lines.append)
    assert submitted["teacher_job_id"] is None and fake.submitted == []
    assert sorted(submitted["runs"]) == sorted(runs[:4])  # pair is current
    assert any("ce seed 1: stale, its settings changed" in line for line in lines)
    edit_record(rc.teacher_path(GRID_TINY, root).with_name("1.json"), "provenance", "code",
                "tkd.models.build_model", "0" * 12)
    submitted = cluster.submit_grid(GRID_TINY, runs, executor="slurm", root=root,
                                    log=lines.append)
    assert fake.submitted[0][0] == "run_teacher" and fake.submitted[0][1][-1] is True  # force
    assert "pair" in {e for e, _ in submitted["runs"]}  # its teacher is being retrained
