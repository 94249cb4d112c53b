"""A CLI run killed with SIGKILL and restarted with --resume ends exactly like an unkilled run.

Every run is a real ``python -m tkd train`` subprocess on CPU with ``--deterministic``. Kills
at an exact moment use a tiny wrapper that sends SIGKILL to its own process just before the
n-th optimizer step (mid-epoch) or the n-th atomic rename (mid-checkpoint); the slow test kills
from outside at a random moment. The resumed run is always the plain CLI command + --resume.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tkd.checkpoint import list_checkpoints, load_model, save_model
from tkd.models import build_model

ROOT = Path(__file__).resolve().parents[1]
# One thread per process: on a busy 2-core machine, two OpenMP threads per process make each
# step ~100x slower (threads spin while the other core is taken); results are exact either way.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SUBSET, BATCH, EPOCHS = 300, 20, 4
STEPS = SUBSET // BATCH  # optimizer steps per epoch
COMMON = ["--dataset", "digits", "--subset", str(SUBSET), "--batch-size", str(BATCH),
          "--deterministic", "--no-progress", "--device", "cpu"]
TIMING = ["epoch_seconds", "images_per_second"]

KILLER = """
import os, signal, sys
import torch
what, n = sys.argv[1], int(sys.argv[2])
calls = 0
def killing(original):
    def wrapper(*args, **kwargs):
        global calls
        calls += 1
        if calls == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)
    return wrapper
if what == "step":
    torch.optim.SGD.step = killing(torch.optim.SGD.step)
else:
    os.replace = killing(os.replace)
from tkd.cli import main
sys.exit(main(sys.argv[3:]))
"""


def train_args(out: Path, *extra: str, epochs: int = EPOCHS) -> list[str]:
    return ["train", *COMMON, "--epochs", str(epochs), "--out", str(out), *extra]


def live_epochs(out: Path) -> list[int]:
    """The epochs in a run's live history.csv (rewritten after every checkpointed epoch)."""
    return pd.read_csv(out / "history.csv")["epoch"].tolist()


def cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tkd", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def killed_at(what: str, n: int, args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI and SIGKILL it just before the n-th optimizer step / atomic rename."""
    result = subprocess.run([sys.executable, "-c", KILLER, what, str(n), *args], cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr
    return result


def assert_same_run(reference: Path, resumed: Path, epochs: int = EPOCHS) -> None:
    """History (every loss and accuracy column), final metrics and weights are identical."""
    a = pd.read_csv(reference / "history.csv").drop(columns=TIMING)
    b = pd.read_csv(resumed / "history.csv").drop(columns=TIMING)
    assert len(a) == epochs
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    final_a, final_b = (json.loads((d / "result.json").read_text())["final"]
                        for d in (reference, resumed))
    for key in TIMING:
        final_a.pop(key), final_b.pop(key)
    assert final_a == final_b
    weights_a = load_model(reference / "model.pt").state_dict()
    weights_b = load_model(resumed / "model.pt").state_dict()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Uninterrupted reference runs, made once: a teacher, then students of that teacher."""
    root = tmp_path_factory.mktemp("runs")
    made: dict[str, Path] = {}

    def reference(name: str, *extra: str) -> Path:
        if name not in made:
            result = cli(train_args(root / name, *extra))
            assert result.returncode == 0, result.stderr
            made[name] = root / name
        return made[name]

    return reference


TEACHER = ("--model", "paper-teacher", "--weight-decay", "5e-4")


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A (randomly initialised) teacher: exact resume does not depend on its quality."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "model.pt"
    return save_model(path, build_model("paper-teacher", 10, 1, 8), "paper-teacher", 10, 1, 8)


def student(teacher_file: Path, negatives: str) -> tuple[str, ...]:
    return ("--model", "paper-student", "--teacher", str(teacher_file), "--method", "triplet",
            "--negatives", negatives)


@pytest.mark.parametrize("case", [
    pytest.param("teacher", marks=pytest.mark.slow), "triplet-sample"])
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(runs, teacher_file, tmp_path, case):
    extra = TEACHER if case == "teacher" else student(teacher_file, "sample")
    reference = runs(case, *extra)
    epoch, batch = (2, 7) if case == "teacher" else (3, 4)
    killed_at("step", (epoch - 1) * STEPS + batch, train_args(tmp_path, *extra))
    # the kill landed inside `epoch`: only the epochs before it are checkpointed
    assert list_checkpoints(tmp_path / "checkpoints")[-1].name == f"epoch-{epoch - 1:04d}.pt"
    # the live history.csv holds the finished epochs, and the resumed run goes on from there
    assert live_epochs(tmp_path) == list(range(1, epoch))
    resumed = cli(train_args(tmp_path, *extra, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, tmp_path)


RENAMES_PER_EPOCH = 4  # the checkpoint, its .sha256 sidecar, the live history.csv, seconds.json


@pytest.mark.slow
@pytest.mark.parametrize("rename", [RENAMES_PER_EPOCH + 1, RENAMES_PER_EPOCH + 2],
                         ids=["before-checkpoint-rename", "before-sidecar-rename"])
def test_sigkill_while_writing_a_checkpoint_then_resume(runs, teacher_file, tmp_path, rename):
    """Killed inside save_checkpoint of epoch 2 (batch-hard negatives): a stray .tmp, or a
    checkpoint without its sidecar, is left; resume copes and the run still matches."""
    extra = student(teacher_file, "batch-hard")
    reference = runs("triplet-batch-hard", *extra)
    killed_at("replace", rename, train_args(tmp_path, *extra))
    folder = tmp_path / "checkpoints"
    assert live_epochs(tmp_path) == [1]
    if rename == RENAMES_PER_EPOCH + 1:
        assert list(folder.glob(".epoch-0002.pt.*.tmp"))
        assert [p.name for p in list_checkpoints(folder)] == ["epoch-0001.pt"]
    else:
        assert (folder / "epoch-0002.pt").exists()
        assert not (folder / "epoch-0002.pt.sha256").exists()
    resumed = cli(train_args(tmp_path, *extra, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert not list(folder.glob(".*.tmp"))
    assert_same_run(reference, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_external_sigkill_at_a_random_moment(tmp_path, seed):
    """Kill from outside at a random time after the first checkpoint (usually mid-epoch)."""
    extra = (*TEACHER, "--subset", "600")
    reference = tmp_path / "reference"
    assert cli(train_args(reference, *extra, epochs=6)).returncode == 0
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "tkd", *train_args(out, *extra, epochs=6)],
                               cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first, second = (out / "checkpoints" / f"epoch-000{e}.pt.sha256" for e in (1, 2))
    deadline = time.monotonic() + 240
    while not first.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    while not second.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    epoch_seconds = time.monotonic() - started
    time.sleep(random.Random(seed).uniform(0.0, 1.0) * epoch_seconds)  # within epoch 3
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL  # it was still running
    last = int(list_checkpoints(out / "checkpoints")[-1].stem.split("-")[1])
    # history.csv follows the checkpoint (it may lag by the epoch killed in between)
    assert live_epochs(out) in (list(range(1, last + 1)), list(range(1, last)))
    resumed = cli(train_args(out, *extra, "--resume", epochs=6))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, out, epochs=6)
