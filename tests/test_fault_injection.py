"""Fault injection (issue 32): ``python -m tkd reproduce`` on a reduced quick plan (the
teacher, ``ce`` and ``triplet``, seed 1) is interrupted at random moments in every phase, with
SIGINT (Ctrl-C) and SIGKILL, and run again each time. After every interruption nothing that
is reported current differs from an uninterrupted baseline made in the test; at the end
every record and every saved model is the baseline's, bit for bit (wall and epoch times
aside).

Each moment is a random epoch of the phase plus a random fraction of an epoch, drawn from
``TKD_FAULT_SEED`` (default: a new seed each time, printed on failure). The baseline trains
beside the interrupted runs (a second core). 8 minutes on a 2-core CPU shared with other
jobs (load average 8): marked slow (CI runs it). ``pytest -s`` prints where each
interruption landed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tkd import experiments as ex
from tkd import grid
from tkd import records as rc
from tkd import staleness as sl
from tkd.records import file_sha256

pytestmark = pytest.mark.slow
RUNS = ["ce", "triplet"]
COMMAND = [sys.executable, "-m", "tkd", "reproduce", "--preset", "quick", "--experiments",
           *RUNS, "--seeds", "1", "--no-figures"]
TIMING = ("epoch_seconds", "images_per_second")


def run(root: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, "--results", str(root)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, _ = process.communicate(timeout=900)
    return process.returncode, out


def content(path: Path) -> dict:
    """A record without what differs between identical runs: wall and epoch times."""
    record = rc.read_record(path)
    record.pop("wall_seconds")
    record["history"] = {k: v for k, v in record["history"].items() if k not in TIMING}
    record["final"] = {k: v for k, v in record["final"].items() if k not in TIMING}
    return record


def files(root: Path) -> dict[str, object]:
    """Every record (its content) and every saved model (its sha256) under ``root``."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.suffix == ".json" and path.parent.name != "1.run" and ".run/" not in name:
            found[name] = content(path)
        elif path.suffix == ".pt" and ".run/" not in name:
            found[name] = file_sha256(path)
    return found


def reported_current(root: Path, identity: dict) -> dict[str, object]:
    """What the package would reuse now (the teacher if ``teacher_state`` says current, each
    student whose record exists or whose weights ``saved_student_reason`` accepts), as
    :func:`files` shows it; a record is written last, so any record must be whole."""
    preset, now, seen = ex.PRESETS["quick"], files(root), {}
    if grid.teacher_state(preset, root, identity)[0] == "current":
        seen.update({k: now[k] for k in ("quick/teacher/1.json", "quick/teacher/model.pt")})
    for name in RUNS:
        record = rc.result_path(preset, name, 1, root)
        if record.is_file():
            seen[record.relative_to(root).as_posix()] = content(record)
        if sl.saved_student_reason(preset, name, 1, root, identity) is None:
            pt = rc.student_path(preset, name, 1, root).relative_to(root).as_posix()
            seen[pt] = now[pt]
    return seen


def last_epoch(folder: Path) -> int:
    """The newest checkpoint's epoch in ``folder`` (0 when none)."""
    names = [p.name for p in folder.glob("epoch-*.pt")] if folder.is_dir() else []
    return max((int(n[6:10]) for n in names), default=0)


def interrupt(process: subprocess.Popen, folder: Path, epoch: int, fraction: float,
              kind: signal.Signals) -> str:
    """Send ``kind`` ``fraction`` of an epoch after ``folder`` holds epoch ``epoch``'s
    checkpoint (or as soon as the phase is over: its record ``1.json`` exists); returns what
    was done."""
    seen, last, record = time.monotonic(), 0, folder.parent.parent / "1.json"
    while process.poll() is None and last_epoch(folder) < epoch and not record.exists():
        now = last_epoch(folder)
        if now != last:
            seen, last = time.monotonic(), now
        if last and not folder.exists():
            break
        time.sleep(0.01)
    per_epoch = max(0.05, time.monotonic() - seen) if last else 0.3
    time.sleep(fraction * per_epoch)
    if process.poll() is not None:
        return f"finished before {kind.name}"
    process.send_signal(kind)
    return f"{kind.name} after epoch {epoch} +{fraction * per_epoch:.2f}s"


def test_reproduce_interrupted_anywhere_ends_bit_identical_to_an_uninterrupted_run(tmp_path):
    seed = int(os.environ.get("TKD_FAULT_SEED", time.time_ns() % 2**32))
    draw = random.Random(seed)
    note = f"TKD_FAULT_SEED={seed}"
    baseline_run = run(tmp_path / "baseline", tmp_path)  # beside the interrupted ones
    identity = ex.load_data(ex.get_preset("quick")).identity()
    preset = ex.PRESETS["quick"]
    root = tmp_path / "interrupted"
    phases = {"teacher": (root / "quick/teacher/1.run/checkpoints", preset.teacher_epochs),
              **{name: (root / f"quick/{name}/1.run/checkpoints", preset.epochs)
                 for name in RUNS}}
    story, current = [], []
    for phase, (folder, epochs) in phases.items():
        for kind in (signal.SIGINT, signal.SIGKILL):
            process = run(root, tmp_path)
            story.append(f"{phase}: " + interrupt(process, folder, draw.randint(1, epochs),
                                                  draw.random(), kind))
            code, out = finish(process)
            story[-1] += f", rc {code}"
            if kind == signal.SIGINT and code == 130:
                assert "Traceback" not in out, (note, story, out)
            assert code in (0, 130, -signal.SIGINT, -signal.SIGKILL), (note, story, out)
            current.append(reported_current(root, identity))
    code, out = finish(run(root, tmp_path))
    assert code == 0, (note, story, out)
    code, log = finish(baseline_run)
    assert code == 0, log
    baseline = files(tmp_path / "baseline")
    assert len(baseline) == 6, baseline.keys()  # teacher 1.json + model.pt, 2 x (json + pt)
    for k, seen in enumerate(current):  # nothing interrupted was ever reported current
        assert seen == {key: baseline[key] for key in seen}, (note, story[: k + 1])
    assert files(root) == baseline, (note, story)
    leftovers = [p for p in root.rglob("*") if p.name.endswith((".run", ".lock", ".tmp"))]
    assert not leftovers, (note, story, leftovers)
    print(note, *story, sep="\n")
