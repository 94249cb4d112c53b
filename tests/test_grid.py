"""The grid of a preset: records with provenance and no machine paths, stale runs rerun, live
history while a run trains, failures reported without stopping the others, and worker
processes that give the same numbers as one process. Tiny real runs: a 200-image subset of
digits and a small teacher."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers import edit_record
from tkd import experiments as ex
from tkd import grid
from tkd import records as rc
from tkd import runs as rn
from tkd import staleness as sl
from tkd.checkpoint import load_model, save_model
from tkd.live import HISTORY_FILE
from tkd.records import file_sha256, git_state, history_frame, load_record
from tkd.train import predict

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
TIMING = ["epoch_seconds", "images_per_second"]
TINY = dataclasses.replace(
    ex.PRESETS["quick"], name="quick", epochs=1, teacher_epochs=1, subset=200, seeds=(1,),
    headline_seeds=(1,), sweep_seeds=(1,), teacher_model="paper-student")


def reproduce(root, experiments, preset=TINY, **kwargs) -> list[str]:
    """Run the grid quietly; returns its log lines."""
    lines: list[str] = []
    grid.reproduce(preset, experiments, root=root, log=lines.append, progress=False, **kwargs)
    return lines


def scale_teacher(teacher_file, factor: float, record: bool = True):
    """New teacher weights under the same recipe: every parameter times ``factor`` (as if
    retrained elsewhere; ``record``: its record names the new file's sha256); returns the new
    teacher."""
    teacher = load_model(teacher_file)
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(factor)
    save_model(teacher_file, teacher, TINY.teacher_model, 10, 1, 8)
    if record:
        edit_record(teacher_file.with_name("1.json"), "provenance", "model_sha256",
                    file_sha256(teacher_file))
    return teacher


def line_of(lines: list[str], experiment: str) -> str:
    found = [line for line in lines if f"] {experiment} seed" in line]
    assert len(found) >= 1, lines
    return " | ".join(found)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny grid: the teacher, a CE student and a logit-MSE student."""
    root = tmp_path_factory.mktemp("grid")
    reproduce(root, ["ce", "logit-mse"])
    return root


# ---------------------------------------------------------------------- provenance ----


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def test_records_hold_provenance_and_no_absolute_path(done):
    record = load_record(rc.result_path(TINY, "logit-mse", 1, done))
    origin = record["provenance"]
    here = git_state()  # None outside a git checkout (e.g. a copied tree)
    assert (origin["commit"], origin["dirty"]) == (here["commit"], here["dirty"])
    if here["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", origin["commit"]) and isinstance(origin["dirty"], bool)
    assert origin["teacher_sha256"] == file_sha256(rc.teacher_path(TINY, done))
    assert origin["data"] == ex.load_data(TINY).identity()
    assert record["config"]["teacher"] == "quick/teacher/model.pt"  # relative to the root
    assert load_record(rc.result_path(TINY, "ce", 1, done))["provenance"]["teacher_sha256"] \
        is None  # CE uses no teacher
    machine = record["environment"]  # enough to explain a CPU run that rounds differently
    assert machine["device"] == "cpu" and machine["threads"] >= 1
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if Path("/proc/cpuinfo").is_file():
        assert machine["device_name"] not in ("", "x86_64", "aarch64")  # the model's name
    for path in done.rglob("*.json"):
        text = path.read_text()
        assert str(done) not in text, path
        for value in strings(json.loads(text)):
            assert not value.startswith(("/", "\\")) and not re.match(r"[A-Za-z]:\\", value), \
                (path, value)


def test_git_state_inside_and_outside_a_checkout(tmp_path, monkeypatch):
    here = git_state()
    if here["commit"] is not None:
        assert re.fullmatch(r"[0-9a-f]{40}", here["commit"]) and isinstance(here["dirty"], bool)
    monkeypatch.delenv("TKD_GIT_COMMIT", raising=False)
    monkeypatch.delenv("TKD_GIT_DIRTY", raising=False)
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
    monkeypatch.setenv("TKD_GIT_COMMIT", "a" * 40)  # a copied tree: the launcher says it
    monkeypatch.setenv("TKD_GIT_DIRTY", "1")
    assert git_state(tmp_path) == {"commit": "a" * 40, "dirty": True}
    monkeypatch.setenv("TKD_GIT_DIRTY", "0")
    assert git_state(tmp_path)["dirty"] is False


# ------------------------------------------------------------------------- stale runs ----


def test_nothing_changed_means_everything_is_skipped(done):
    lines = reproduce(done, ["ce", "logit-mse"])
    assert "teacher loaded" in lines[0]
    for name in ("ce", "logit-mse"):
        assert "up to date, skipped" in line_of(lines, name)


def test_a_new_teacher_makes_its_students_stale(tmp_path):
    root = tmp_path / "grid"
    reproduce(root, ["ce", "logit-mse"])
    teacher_file = rc.teacher_path(TINY, root)
    # new weights under the same recipe (e.g. a teacher file copied in from elsewhere)
    teacher = scale_teacher(teacher_file, 1.5)
    lines = reproduce(root, ["ce", "logit-mse"])
    assert "stale, it was trained with another teacher" in line_of(lines, "logit-mse")
    assert "up to date" in line_of(lines, "ce")  # it uses no teacher
    record = load_record(rc.result_path(TINY, "logit-mse", 1, root))
    assert record["provenance"]["teacher_sha256"] == file_sha256(teacher_file)
    # ... and it was really trained and scored against the new teacher's logits
    data = ex.load_data(TINY)
    student = load_model(rc.student_path(TINY, "logit-mse", 1, root))
    mse = (predict(student, data.test.images) - predict(teacher, data.test.images)).pow(2).mean()
    assert record["final"]["test_mse"] == pytest.approx(mse.item(), rel=1e-4)
    # a changed teacher recipe retrains the teacher, and its students rerun again
    lines = reproduce(root, ["ce", "logit-mse"], dataclasses.replace(TINY, teacher_lr=0.02))
    assert "teacher trained" in lines[0]
    assert "stale" in line_of(lines, "logit-mse") and "up to date" in line_of(lines, "ce")
    assert file_sha256(teacher_file) != record["provenance"]["teacher_sha256"]


@pytest.mark.parametrize("change", [{"teacher_model": "student-2022"}, {"validation": 100}],
                         ids=["teacher-model", "validation-split"])
def test_a_teacher_of_another_model_or_split_is_retrained(done, tmp_path, change):
    """The teacher is current only if its record's model and data split match today's too
    (a teacher trained before a validation split existed has seen those images)."""
    root = tmp_path / "grid"
    shutil.copytree(done, root)
    preset = dataclasses.replace(TINY, **change)
    lines = reproduce(root, ["logit-mse"], preset)
    assert "teacher trained" in lines[0]
    assert load_model(rc.teacher_path(preset, root)).tkd_info["name"] == preset.teacher_model
    assert "stale" in line_of(lines, "logit-mse")
    assert reproduce(root, ["logit-mse"], preset)[0].startswith("[quick] teacher loaded")


def test_a_teacher_record_with_a_removed_setting_is_stale_not_a_crash(done, tmp_path):
    """Records written before a TrainConfig field was removed (e.g. the old ``bf16`` flag)."""
    root = tmp_path / "grid"
    shutil.copytree(done, root)
    path = rc.teacher_path(TINY, root).with_name("1.json")
    record = load_record(path)
    record["config"]["train"]["bf16"] = True
    path.write_text(json.dumps(record))
    assert "teacher trained" in reproduce(root, ["ce"])[0]


def test_changed_settings_make_a_run_stale(done, tmp_path):
    root = tmp_path / "grid"
    shutil.copytree(done, root)
    lines = reproduce(root, ["ce"], dataclasses.replace(TINY, lr=0.02))
    assert "stale, its settings changed (train)" in line_of(lines, "ce")
    assert load_record(rc.result_path(TINY, "ce", 1, root))["config"]["train"]["lr"] == 0.02


# ----------------------------------------------------------------------- live history ----


def test_history_csv_grows_each_epoch_and_is_removed_at_the_end(tmp_path, live_history):
    seen = live_history
    data = ex.load_data(TINY)
    record = rn.run_experiment(TINY, "ce", 1, data, root=tmp_path, epochs=3)
    work = rc.result_path(TINY, "ce", 1, tmp_path).with_name("1.run")
    assert seen == [[1], [1, 2], [1, 2, 3]]
    assert not work.exists() and not list(tmp_path.rglob(HISTORY_FILE))
    assert record["history"]["epoch"] == [1, 2, 3]
    assert rc.result_path(TINY, "ce", 1, tmp_path).is_file()


# ----------------------------------------------------------------------------- failures ----


def test_a_failed_run_is_reported_and_the_others_finish(done, tmp_path, monkeypatch):
    root = tmp_path / "grid"
    shutil.copytree(done / "quick" / "teacher", root / "quick" / "teacher")
    original = grid.run_one

    def flaky(preset, experiment, *args, **kwargs):
        if experiment == "ce":
            raise RuntimeError("boom")
        return original(preset, experiment, *args, **kwargs)

    monkeypatch.setattr(grid, "run_one", flaky)
    lines = reproduce(root, ["ce", "logit-mse"])
    assert "FAILED: RuntimeError: boom" in line_of(lines, "ce")
    assert "test acc" in line_of(lines, "logit-mse")
    assert "1 run(s) failed: ce seed 1" in lines[-1]
    assert not rc.result_path(TINY, "ce", 1, root).exists()
    assert rc.result_path(TINY, "logit-mse", 1, root).is_file()


DIVERGES = ex.Experiment("ce-diverges", "ce", "CE at lr 1e4 (diverges in epoch 2)", lr=1e4)


def test_a_diverged_run_keeps_a_failed_record_and_is_not_retried(done, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setitem(ex.EXPERIMENTS, DIVERGES.name, DIVERGES)
    root = tmp_path / "grid"
    shutil.copytree(done / "quick" / "teacher", root / "quick" / "teacher")
    lines = reproduce(root, [DIVERGES.name, "ce"], epochs=2)
    assert "FAILED: NonFiniteLossError: the ce loss became nan at epoch 2" in \
        line_of(lines, DIVERGES.name)
    assert "test acc" in line_of(lines, "ce")  # the other run finished
    path = rc.result_path(TINY, DIVERGES.name, 1, root)
    failed = rc.failed_path(path)
    assert not path.exists() and failed.is_file()
    record = load_record(failed)
    assert record["config"] == sl.expected_run(TINY, DIVERGES.name, 1, 2)
    assert "epoch 2" in record["error"]
    assert history_frame(record)["epoch"].tolist() == [1]  # the epochs that finished
    assert record["provenance"]["teacher_sha256"] is None  # CE: no teacher involved
    assert not any(v.startswith("/") for v in strings(record))
    assert str(root) not in failed.read_text()
    lines = reproduce(root, [DIVERGES.name, "ce"], epochs=2)
    assert "diverged before" in line_of(lines, DIVERGES.name)
    assert "not retried" in line_of(lines, DIVERGES.name)
    assert "up to date" in line_of(lines, "ce")
    lines = reproduce(root, [DIVERGES.name], epochs=1)  # other settings: tried again
    assert "test acc" in line_of(lines, DIVERGES.name)
    assert path.is_file() and not failed.exists()


def test_a_diverged_distillation_run_is_retried_with_a_new_teacher(done, tmp_path):
    preset = dataclasses.replace(TINY, lr=1e4)
    root = tmp_path / "grid"
    shutil.copytree(done / "quick" / "teacher", root / "quick" / "teacher")
    lines = reproduce(root, ["logit-mse"], preset, epochs=2)
    assert "FAILED: NonFiniteLossError" in line_of(lines, "logit-mse")
    assert "diverged before" in line_of(reproduce(root, ["logit-mse"], preset, epochs=2),
                                        "logit-mse")
    teacher_file = rc.teacher_path(TINY, root)
    scale_teacher(teacher_file, 0.5)
    lines = reproduce(root, ["logit-mse"], preset, epochs=2)
    assert "diverged before" not in line_of(lines, "logit-mse")  # tried with the new teacher
    failed = rc.failed_path(rc.result_path(TINY, "logit-mse", 1, root))
    if failed.is_file():  # diverged again: the record names the teacher it diverged with
        assert load_record(failed)["provenance"]["teacher_sha256"] == file_sha256(teacher_file)


def test_jobs_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        grid.reproduce(TINY, ["ce"], root=tmp_path, jobs=0, log=lambda _: None)


# ------------------------------------------------------------------- worker processes ----


@pytest.mark.slow
def test_two_workers_give_the_same_histories_as_one_process(done, tmp_path):
    """Spawned workers (each with the per-process teacher cache) reproduce the in-process
    grid exactly, timing columns aside."""
    experiments = ["ce", "logit-mse"]
    histories = {}
    for jobs in (1, 2):
        root = tmp_path / f"jobs{jobs}"
        shutil.copytree(done / "quick" / "teacher", root / "quick" / "teacher")
        lines = reproduce(root, experiments, epochs=2, threads=1, jobs=jobs)
        assert not any("FAILED" in line for line in lines), lines
        histories[jobs] = {
            name: pd.DataFrame(load_record(rc.result_path(TINY, name, 1, root))["history"])
            .drop(columns=TIMING) for name in experiments}
    for name in experiments:
        assert histories[1][name]["epoch"].tolist() == [1, 2]
        pd.testing.assert_frame_equal(histories[1][name], histories[2][name], check_exact=True)


# ------------------------------------------------- one staleness check, every kind ----


def copy_of(done, tmp_path):
    root = tmp_path / "grid"
    shutil.copytree(done, root)
    return root


STALE_EDITS = {  # what a record says -> the reason reproduce must give
    "settings": (("config", "train", "lr", 0.5), "its settings changed (train)"),
    "data": (("provenance", "data", "sizes", "train", 999), "it was trained on other data"),
    "code": (("provenance", "code", "tkd.train.fit", "000000000000"),
             "the code changed since it was recorded: tkd.train.fit"),
    "no-code": (("provenance", "code", {}), "recorded before code fingerprints"),
}


@pytest.mark.parametrize("kind", list(STALE_EDITS))
def test_every_kind_of_stale_record_is_rerun(done, tmp_path, kind):
    """A teacher-free run (ce) is checked for its data and code too, not only settings."""
    root = copy_of(done, tmp_path)
    edit, reason = STALE_EDITS[kind]
    edit_record(rc.result_path(TINY, "ce", 1, root), *edit)
    lines = reproduce(root, ["ce", "logit-mse"])
    assert "stale, " in line_of(lines, "ce") and reason in line_of(lines, "ce")
    assert "up to date" in line_of(lines, "logit-mse")
    assert "up to date" in line_of(reproduce(root, ["ce"]), "ce")


def test_a_diverged_run_of_older_code_is_retried(done, tmp_path):
    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    record = {**load_record(path), "error": "the ce loss became nan at epoch 1"}
    failed = rc.failed_path(path)
    failed.write_text(json.dumps(record))
    path.unlink()
    assert "diverged before" in line_of(reproduce(root, ["ce"]), "ce")
    edit_record(failed, "provenance", "code", "tkd.losses.kd_loss", "000000000000")
    lines = reproduce(root, ["ce"])
    assert "test acc" in line_of(lines, "ce") and path.is_file() and not failed.exists()


def test_an_equivalence_entry_keeps_older_code_current(done, tmp_path):
    from tkd.equivalence import add_equivalence
    from tkd.provenance import code_fingerprint

    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    edit_record(path, "provenance", "code", "tkd.train.fit", "000000000000")
    old = load_record(path)["provenance"]["code"]
    assert add_equivalence(root, old, code_fingerprint(), {"evidence": "test"})
    assert not add_equivalence(root, old, code_fingerprint(), {"evidence": "test"})  # once
    assert "up to date" in line_of(reproduce(root, ["ce"]), "ce")


def test_a_teacher_file_that_is_not_the_recorded_one_is_retrained(done, tmp_path):
    root = copy_of(done, tmp_path)
    scale_teacher(rc.teacher_path(TINY, root), 1.5, record=False)
    lines = reproduce(root, ["logit-mse"])
    assert "teacher trained" in lines[0] and "model.pt is not the file it recorded" in lines[0]
    record = load_record(rc.teacher_path(TINY, root).with_name("1.json"))
    assert record["provenance"]["model_sha256"] == file_sha256(rc.teacher_path(TINY, root))
    assert "up to date" in line_of(lines, "logit-mse")  # the deterministic retrain: same file


@pytest.mark.parametrize("edit", [("provenance", "data", "name", "other"),
                                  ("provenance", "code", "tkd.models.build_model", "0" * 12)],
                         ids=["data", "code"])
def test_a_teacher_of_other_data_or_code_is_retrained(done, tmp_path, edit):
    root = copy_of(done, tmp_path)
    edit_record(rc.teacher_path(TINY, root).with_name("1.json"), *edit)
    assert "teacher trained" in reproduce(root, ["ce"])[0]


def test_a_shared_teacher_is_judged_by_its_own_preset(tmp_path, monkeypatch):
    """A preset sharing another's teacher (like fashion-2x) loads it, not retrains it."""
    owner = dataclasses.replace(TINY, name="tiny")
    sharing = dataclasses.replace(owner, name="tiny-2x", epochs=2, lr_step=2,
                                  teacher_preset="tiny")
    monkeypatch.setitem(ex.PRESETS, "tiny", owner)
    monkeypatch.setitem(ex.PRESETS, "tiny-2x", sharing)
    root = tmp_path / "grid"
    assert "teacher trained" in reproduce(root, ["logit-mse"], sharing)[0]
    teacher_record = load_record(root / "tiny" / "teacher" / "1.json")
    assert teacher_record["config"]["preset"] == "tiny"  # trained with the owner's recipe
    assert grid.teacher_state(sharing, root) == ("current", None)
    assert "teacher loaded" in reproduce(root, ["ce"], owner)[0]
    assert "teacher loaded" in reproduce(root, ["logit-mse"], sharing)[0]
    assert not (root / "tiny-2x" / "teacher").exists()


def test_a_setting_added_later_at_its_default_keeps_records_current(done, tmp_path):
    """A record written before a TrainConfig field existed (here: without ``compile``, whose
    default today is False) is current; one that lacks it while today's value differs is not."""
    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    record = load_record(path)
    del record["config"]["train"]["compile"]
    path.write_text(json.dumps(record))
    assert "up to date" in line_of(reproduce(root, ["ce"]), "ce")
    assert sl.stale_reason(record, TINY, "ce", 1, None) is None
    want = sl.expected_run(TINY, "ce", 1)
    want["train"]["compile"] = True
    assert sl._changed_settings(record["config"], want) == ["train"]


def test_a_shared_teacher_is_trained_and_judged_on_its_own_presets_data(tmp_path):
    """A preset that shares another's teacher (``teacher_preset``) on a subset of its data
    neither retrains that teacher for the subset nor trains it on the subset."""
    from dataclasses import replace

    from tkd import experiments as ex
    from tkd.grid import teacher_state

    owner = replace(ex.get_preset("quick"), name="quick", teacher_epochs=1)
    small = replace(owner, name="small", subset=300, teacher_preset="quick")
    saved = {"quick": owner, "small": small}
    original = ex.PRESETS.copy()
    ex.PRESETS.update(saved)
    try:
        rn.train_teacher(small, ex.load_data(small), tmp_path)  # trains the owner's teacher
        record = rc.load_record(rc.teacher_path(owner, tmp_path).with_name("1.json"))
        assert record["provenance"]["data"] == ex.load_data(owner).identity()
        assert teacher_state(small, tmp_path, ex.load_data(owner).identity())[0] == "current"
    finally:
        ex.PRESETS.clear()
        ex.PRESETS.update(original)


def test_an_objective_field_added_later_at_its_default_keeps_records_current(done, tmp_path):
    """Records written before the relation terms existed (no ``pkt_weight`` and co. in their
    objective) stay current; a record whose objective lacks a field that today is not at its
    default is stale."""
    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    record = load_record(path)
    for name in ("rkd_distance_weight", "rkd_angle_weight", "pkt_weight", "hint_weight",
                 "relation_space"):
        del record["config"]["objective"][name]
    path.write_text(json.dumps(record))
    assert sl.stale_reason(record, TINY, "ce", 1, None) is None
    want = sl.expected_run(TINY, "ce", 1)
    want["objective"]["pkt_weight"] = 1.0
    assert sl._changed_settings(record["config"], want) == ["objective"]
