"""Nothing half-done is ever taken as done (issue 32): interrupted teachers, malformed or
misplaced records, two writers into one run, weights that are not their record's, unsafe
CIFAR files, and the exit codes and messages of the commands. Each test first reproduced the
fault it names."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

from tests.helpers import edit_record
from tkd import cli, grid, train
from tkd import experiments as ex
from tkd import records as rc
from tkd import runs as rn
from tkd import staleness as sl
from tkd.checkpoint import load_latest_checkpoint, save_checkpoint
from tkd.data import load_dataset
from tkd.files import BusyError, run_lock
from tkd.records import RecordError, file_sha256, load_record, load_records

torch.set_num_threads(1)
TINY = dataclasses.replace(
    ex.PRESETS["quick"], name="quick", epochs=2, teacher_epochs=3, subset=200, seeds=(1,),
    headline_seeds=(1,), sweep_seeds=(1,), teacher_model="paper-student")
TIMING = ("epoch_seconds", "images_per_second")


def reproduce(root, experiments=("ce", "logit-mse"), preset=TINY, **kwargs):
    lines: list[str] = []
    paths = grid.reproduce(preset, list(experiments), root=root, log=lines.append,
                           progress=False, **kwargs)
    return paths, lines


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny grid: teacher (3 epochs), CE and logit-MSE students (2 epochs)."""
    root = tmp_path_factory.mktemp("done")
    reproduce(root)
    return root


def copy_of(done, tmp_path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(done, root)
    return root


def training(record: dict) -> dict:
    """What training decided in a record: history without timing, final, config."""
    history = {k: v for k, v in record["history"].items() if k not in TIMING}
    final = {k: v for k, v in record["final"].items() if k not in TIMING}
    return {"history": history, "final": final, "config": record["config"]}


def ctrl_c_at(monkeypatch, epoch: int, teacher: bool):
    """Make the next fit of the teacher (or of a student) get Ctrl-C inside ``epoch``."""
    original = train.run_epoch

    def interrupted(run, number, splits):
        is_teacher = run.config.epochs == TINY.teacher_epochs and run.teacher is None \
            and run.config.lr == TINY.teacher_lr
        if number == epoch and is_teacher == teacher:
            raise KeyboardInterrupt
        return original(run, number, splits)

    monkeypatch.setattr(train, "run_epoch", interrupted)


# ------------------------------------------------------- case 1: an interrupted teacher ----


def test_ctrl_c_in_the_teacher_commits_nothing_and_the_rerun_resumes(done, tmp_path,
                                                                      monkeypatch):
    """Before: model.pt and a record with interrupted: true (1 of 3 epochs) were saved, the
    students trained on it and teacher_state said current. After: KeyboardInterrupt, no
    teacher file, no student; the rerun resumes from the epoch-1 checkpoint and ends with the
    uninterrupted teacher's history and weights."""
    root = tmp_path / "r"
    ctrl_c_at(monkeypatch, 2, teacher=True)
    with pytest.raises(KeyboardInterrupt):
        reproduce(root)
    teacher = rc.teacher_path(TINY, root)
    assert not teacher.exists() and not teacher.with_name("1.json").exists()
    assert grid.teacher_state(TINY, root)[0] == "missing"
    assert not rc.result_path(TINY, "ce", 1, root).exists()
    assert (teacher.parent / "1.run" / "checkpoints" / "epoch-0001.pt").is_file()
    monkeypatch.undo()
    reproduce(root)
    ours, theirs = (load_record(r / "quick/teacher/1.json") for r in (root, done))
    assert training(ours) == training(theirs)
    assert file_sha256(teacher) == file_sha256(rc.teacher_path(TINY, done))
    assert not (teacher.parent / "1.run").exists()


def test_an_interrupted_retraining_keeps_the_old_teacher(done, tmp_path, monkeypatch):
    """Before: retraining a stale teacher and pressing Ctrl-C overwrote the good old one with
    the half-trained one. After: the old model.pt and record stay, byte for byte."""
    root = copy_of(done, tmp_path)
    record = root / "quick/teacher/1.json"
    edit_record(record, "provenance", "code", {"tkd/train.py:fit": "0" * 16})  # stale code
    before = (file_sha256(rc.teacher_path(TINY, root)), record.read_bytes())
    ctrl_c_at(monkeypatch, 2, teacher=True)
    with pytest.raises(KeyboardInterrupt):
        reproduce(root)
    assert (file_sha256(rc.teacher_path(TINY, root)), record.read_bytes()) == before


def test_a_record_of_an_interrupted_teacher_is_never_current(done, tmp_path):
    """Records of the old bug (interrupted: true, a cut history) are stale, not current."""
    root = copy_of(done, tmp_path)
    path = root / "quick/teacher/1.json"
    record = load_record(path)
    record["history"] = {k: v[:1] for k, v in record["history"].items()}
    record["final"] = {k: float(v[-1]) for k, v in record["history"].items()}
    record["interrupted"] = True
    path.write_text(json.dumps(record))
    state, why = grid.teacher_state(TINY, root)
    assert state == "stale" and "interrupted after 1 of 3 epochs" in why


def test_a_killed_teacher_resumes_from_its_checkpoints(done, tmp_path, monkeypatch):
    """Before: the teacher of reproduce had no checkpoints, a SIGKILL lost every epoch. Here
    the kill is simulated by an exception that escapes fit after epoch 2's checkpoint; the
    rerun trains only epoch 3 and ends as the uninterrupted teacher."""
    root = tmp_path / "r"
    original, ran = train.run_epoch, []

    def dies(run, number, splits):
        if run.teacher is None and run.config.lr == TINY.teacher_lr and number == 3:
            raise SystemExit("killed")
        ran.append(number)
        return original(run, number, splits)

    monkeypatch.setattr(train, "run_epoch", dies)
    with pytest.raises(SystemExit):
        reproduce(root, ["ce"])
    monkeypatch.setattr(train, "run_epoch", lambda *a: (ran.append(a[1]), original(*a))[1])
    ran.clear()
    reproduce(root, ["ce"])
    assert ran[0] == 3  # the teacher resumed after epoch 2
    assert training(load_record(root / "quick/teacher/1.json")) == \
        training(load_record(done / "quick/teacher/1.json"))


# ------------------------------------------------------------ case 2: a record's place ----


def test_a_record_copied_under_another_experiment_or_preset_is_refused(done, tmp_path):
    """Before: figures counted a copy as one more seed, verify failed with a pandas error.
    After: RecordError naming the file, what is wrong and how to fix it."""
    root = copy_of(done, tmp_path)
    copy = root / "quick/logit-mse/2.json"
    shutil.copy(root / "quick/ce/1.json", copy)
    with pytest.raises(RecordError, match=r"logit-mse/2\.json.*config\.experiment is 'ce', "
                       r"not 'logit-mse'.*config\.seed is '1', not '2'.*move it"):
        load_records(ex.get_preset("quick"), root)
    copy.unlink()
    other = root / "fashion/ce/1.json"
    other.parent.mkdir(parents=True)
    shutil.copy(root / "quick/ce/1.json", other)
    with pytest.raises(RecordError, match="config.preset is 'quick', not 'fashion'"):
        load_records(ex.get_preset("fashion"), root)


def test_verify_refuses_a_duplicate_naming_the_file(done, tmp_path, capsys):
    root = copy_of(done, tmp_path)
    shutil.copy(root / "quick/ce/1.json", root / "quick/ce/2.json")
    assert cli.main(["verify", "--fresh", str(root), "--committed", str(done)]) == 2
    assert "quick/ce/2.json is refused" in capsys.readouterr().err


def test_the_place_rule_checks_the_device_kind_of_students_not_teachers(done, tmp_path):
    root = copy_of(done, tmp_path)
    edit_record(root / "quick/ce/1.json", "environment", "device", "cuda:0")
    with pytest.raises(RecordError, match="trained on cuda, but every student of preset "
                                          "'quick' comes from cpu"):
        rc.read_record(root / "quick/ce/1.json")
    edit_record(root / "quick/teacher/1.json", "environment", "device", "cuda:0")
    rc.read_record(root / "quick/teacher/1.json")  # the shared teacher is exempt
    h200 = root / "fashion-h200/ce/1.json"
    h200.parent.mkdir(parents=True)
    record = load_record(root / "quick/ce/1.json")
    record["config"]["preset"] = "fashion-h200"
    h200.write_text(json.dumps(record))
    rc.read_record(h200)  # the layout of the moved H200 records


def test_every_committed_record_is_valid_and_in_place():
    """The committed records (moved H200 records, resumed runs whose wall time is below
    their summed epochs, the teacher's TF32 note) all pass the checks, and every saved
    student's weights are the ones its record names."""
    results = Path(__file__).resolve().parent.parent / "results"
    paths = [p for p in sorted(results.glob("*/*/*.json")) if not p.name.endswith(".failed.json")]
    assert len(paths) > 200
    for path in paths:
        record = rc.read_record(path)
        weights = path.with_suffix(".pt")
        if weights.is_file() and path.parent.name != "teacher":
            assert record["provenance"]["model_sha256"] == file_sha256(weights), path


# ---------------------------------------------------------- case 3: a record's contents ----


def cut(record):
    record["history"] = {k: v[:1] for k, v in record["history"].items()}
    record["final"] = {k: float(v[-1]) for k, v in record["history"].items()}


def no_final(record):
    del record["final"]


def no_history(record):
    del record["history"]


def strings(record):
    record["history"]["test_acc"] = [str(v) for v in record["history"]["test_acc"]]
    record["final"]["test_acc"] = str(record["final"]["test_acc"])


def wrong_final(record):
    record["final"]["test_acc"] = 0.1


@pytest.mark.parametrize("damage, fault", [
    (cut, "history holds 1 epochs, its config.train.epochs says 2"),
    (no_final, "lacks final"), (no_history, "lacks history"),
    (strings, "history column 'test_acc' holds '"),
    (wrong_final, "final is not the last epoch of its history")])
def test_a_malformed_record_is_refused_everywhere_naming_the_file(done, tmp_path, damage,
                                                                  fault):
    """Before: 'up to date, skipped' by reproduce, used silently by figures (triplet 97.59 ->
    71.96 +- 44.71) or a traceback that did not name the file. After: reproduce refuses before
    any work and figures refuse, each naming the file and the fault."""
    root = copy_of(done, tmp_path)
    path = root / "quick/ce/1.json"
    record = load_record(path)
    damage(record)
    path.write_text(json.dumps(record))
    for read in (lambda: reproduce(root), lambda: load_records(ex.get_preset("quick"), root)):
        with pytest.raises(RecordError, match=r"quick/ce/1\.json is not a usable run "
                                              rf"record: .*{fault}"):
            read()
    assert "not a usable record" in sl.stale_reason(record, TINY, "ce", 1, None)


# --------------------------------------------------------------- case 4: two writers ----


def test_a_second_writer_into_one_run_is_refused(done, tmp_path):
    """Before: two writers both reported success, or one died on the other's clean-up.
    After: the second gets BusyError naming the run and the process holding it."""
    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    path.unlink()
    data = ex.load_data(TINY)
    with run_lock(path):
        with pytest.raises(BusyError, match=rf"ce/1 is being written by another process "
                                            rf"\(pid {os.getpid()}"):
            rn.run_experiment(TINY, "ce", 1, data, root=root)
        paths, lines = reproduce(root, ["ce"])
        assert paths.failed == [("ce", 1)] and "BusyError" in " ".join(lines)
    rn.run_experiment(TINY, "ce", 1, data, root=root)  # released: the run goes on


def test_a_lock_dies_with_its_process(tmp_path):
    """flock: a writer killed with SIGKILL leaves no stale lock behind."""
    target = tmp_path / "run" / "1.json"
    code = ("import sys, time; from tkd.files import run_lock\n"
            "with run_lock(sys.argv[1]):\n print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match=f"pid {holder.pid}"), run_lock(target):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(target):
        pass
    assert not list(target.parent.glob(".*.lock"))  # no litter either


def test_two_trains_into_one_out_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    with run_lock(out):
        code = cli.main(["train", "--epochs", "1", "--subset", "100", "--no-progress",
                         "--out", str(out)])
    assert code == 2 and "being written by another process" in capsys.readouterr().err


# ------------------------------------------------------ case 5: weights and their record ----


def test_weights_that_are_not_their_records_are_refused(done, tmp_path):
    """Before: ce/1.pt copied over logit-mse/1.pt was served as the logit-MSE student.
    After: load_student refuses it (the record holds the sha256 of its weights)."""
    root = copy_of(done, tmp_path)
    identity = ex.load_data(TINY).identity()
    rn.load_student(TINY, "logit-mse", 1, root, data_identity=identity)
    shutil.copy(rc.student_path(TINY, "ce", 1, root), rc.student_path(TINY, "logit-mse", 1, root))
    with pytest.raises(ValueError, match="weights 1.pt are not the ones its record 1.json names"):
        rn.load_student(TINY, "logit-mse", 1, root, data_identity=identity)


def test_a_teacher_file_that_is_not_its_records_is_never_served(done, tmp_path):
    root = copy_of(done, tmp_path)
    model = rc.teacher_path(TINY, root)
    shutil.copy(rc.student_path(TINY, "ce", 1, root), model)  # same network: it would load
    with pytest.raises(ValueError, match="is not the teacher its record 1.json names"):
        rn.train_teacher(TINY, root=root)
    assert grid.teacher_state(TINY, root)[0] == "stale"  # reproduce retrains it


def test_backfill_weights_vouches_for_records_made_before_weight_hashes(done, tmp_path):
    root = copy_of(done, tmp_path)
    path = rc.result_path(TINY, "ce", 1, root)
    record = load_record(path)
    del record["provenance"]["model_sha256"]
    path.write_text(json.dumps(record))
    assert "backfill-weights" in sl.saved_student_reason(TINY, "ce", 1, root)
    assert cli.main(["backfill-weights", "--results", str(root)]) == 0
    assert load_record(path)["provenance"]["model_sha256"] == file_sha256(path.with_suffix(".pt"))
    assert sl.saved_student_reason(TINY, "ce", 1, root) is None
    before = path.read_bytes()
    cli.main(["backfill-weights", "--results", str(root)])  # idempotent
    assert path.read_bytes() == before


def test_a_checkpoint_without_its_sidecar_is_never_trusted(tmp_path):
    """Before: delete the .sha256, flip bytes: it loaded silently. After: skipped with a
    warning, the previous good one is used; alone, it is refused like any bad checkpoint
    unless it is a run's very first one (a kill before its sidecar)."""
    state = {"model": {"w": torch.arange(4.0)}}
    for epoch in (1, 2):
        save_checkpoint(tmp_path, epoch, state)
    newest = tmp_path / "epoch-0002.pt"
    newest.with_name(newest.name + ".sha256").unlink()
    with pytest.warns(UserWarning, match="unverifiable checkpoint"):
        assert load_latest_checkpoint(tmp_path)["epoch"] == 1
    (tmp_path / "epoch-0001.pt.sha256").unlink()
    with warnings.catch_warnings(), pytest.raises(ValueError, match="no usable checkpoint"):
        warnings.simplefilter("ignore")
        load_latest_checkpoint(tmp_path)


# ----------------------------------------------------------- case 6: unsafe CIFAR files ----


class Payload:
    """Pickles as a call to os.system: what a crafted CIFAR batch would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_cifar_archive(root: Path, marker: Path) -> Path:
    """A cifar-10-python.tar.gz in the official layout whose batches.meta runs a command."""
    archive = root / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
            content = {b"label_names": [b"x"] * 10, b"evil": Payload(marker)}
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return archive


def test_a_malicious_cifar_archive_runs_no_code(tmp_path):
    """Before: reading the archive ran `touch` (pickle.load). After: ValueError naming the
    file and the refused global; the command never runs. The payload is real: plain pickle
    does run it."""
    marker = tmp_path / "pwned"
    malicious_cifar_archive(tmp_path, marker)
    with pytest.raises(ValueError, match=r"batches\.meta: not a readable CIFAR pickle "
                                         r"\(refused global (posix|os)\.system"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()
    pickle.loads((tmp_path / "cifar-10-batches-py/batches.meta").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_safe_unpickler_reads_every_pickle_protocol_of_cifar_batches(tmp_path, protocol):
    """The official files are protocol 2 from Python 2; rewritten ones may be newer."""
    import numpy as np

    from tkd.data import _unpickle

    batch = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [1, 2],
             b"batch_label": b"x", b"filenames": [b"a.png", b"b.png"]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    read = _unpickle(path)
    assert read[b"labels"] == [1, 2] and read[b"filenames"] == [b"a.png", b"b.png"]
    assert np.array_equal(read[b"data"], batch[b"data"])


# ------------------------------------------------------- case 7: exit codes and messages ----


def test_reproduce_exits_1_when_a_run_failed(monkeypatch, capsys):
    monkeypatch.setattr(cli, "reproduce", lambda **kw: grid.Planned([], [("ce", 1)]))
    monkeypatch.setattr(cli, "_apply_cpu_mode", lambda args, preset: None)
    assert cli.main(["reproduce", "--experiments", "ce", "--no-figures"]) == 1
    assert "1 run(s) FAILED" in capsys.readouterr().err


def test_ctrl_c_in_reproduce_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "reproduce", interrupted)
    monkeypatch.setattr(cli, "_apply_cpu_mode", lambda args, preset: None)
    assert cli.main(["reproduce", "--experiments", "ce", "--no-figures"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def test_an_unusable_results_location_is_found_before_the_teacher(tmp_path, monkeypatch,
                                                                  capsys):
    """Before: found after the teacher trained (hours on Fashion) as an OSError traceback."""
    trained = []
    monkeypatch.setattr(grid, "train_teacher", lambda *a, **k: trained.append(1))
    blocked = tmp_path / "results"
    (blocked / "quick").mkdir(parents=True)
    (blocked / "quick" / "ce").write_text("a file where a run folder goes")
    with pytest.raises(NotADirectoryError, match=r"quick/ce is a file, not a folder"):
        reproduce(blocked, ["ce"])
    assert not trained


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(grid, "train_teacher", lambda *a, **k: pytest.fail("trained"))
    root = tmp_path / "results"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(OSError, match="cannot write into"):
            reproduce(root, ["ce"])
    finally:
        root.chmod(0o755)


def test_a_full_disk_is_reported_as_an_error_line(monkeypatch, capsys):
    def full(**kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "reproduce", full)
    monkeypatch.setattr(cli, "_apply_cpu_mode", lambda args, preset: None)
    assert cli.main(["reproduce", "--experiments", "ce", "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "No space left" in err and "Traceback" not in err


def train_args(out, *more):
    return ["train", "--epochs", "2", "--subset", "100", "--no-progress", "--out", str(out),
            *more]


def test_resume_rebuilds_a_damaged_history_csv_from_the_checkpoint(tmp_path, monkeypatch):
    """Before: a corrupt history.csv blocked resume with a message naming no file."""
    out = tmp_path / "run"
    ctrl = train.run_epoch

    def stop(run, number, splits):
        if number == 2:
            raise KeyboardInterrupt
        return ctrl(run, number, splits)

    monkeypatch.setattr(train, "run_epoch", stop)
    assert cli.main(train_args(out)) == 130
    monkeypatch.undo()
    (out / "history.csv").write_bytes(b"\x00\xff garbage, \"unterminated\n")
    assert cli.main(train_args(out, "--resume")) == 0
    assert load_record(out / "result.json")["history"]["epoch"] == [1, 2]


def test_resume_with_fewer_epochs_than_run_is_refused(tmp_path, capsys):
    """Before: a record that said 1 epoch and held 2."""
    out = tmp_path / "run"
    assert cli.main(train_args(out)) == 0
    capsys.readouterr()
    assert cli.main(["train", "--epochs", "1", "--subset", "100", "--no-progress", "--out",
                     str(out), "--resume"]) == 2
    assert "--epochs 1 is fewer than the 2 epochs" in capsys.readouterr().err


def test_a_data_root_pointing_at_the_files_themselves_is_refused(tmp_path, capsys):
    """Before: the files were passed by and the system's copy silently used."""
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (tmp_path / name).write_bytes(b"")
    assert cli.main(["train", "--dataset", "fashion-mnist", "--data-root", str(tmp_path),
                     "--out", str(tmp_path / "o")]) == 2
    assert "holds the fashion-mnist files themselves" in capsys.readouterr().err


def test_cluster_options_with_the_local_executor_are_refused(capsys):
    assert cli.main(["reproduce", "--partition", "gpu", "--no-figures"]) == 2
    assert "--partition only apply to a cluster" in capsys.readouterr().err


def test_verify_refuses_the_committed_folder_as_fresh(capsys):
    results = Path(__file__).resolve().parent.parent / "results"
    assert cli.main(["verify", "--fresh", str(results), "--committed", str(results)]) == 2
    assert "is the committed results folder itself" in capsys.readouterr().err
