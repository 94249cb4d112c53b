"""Running a preset's grid: the teacher once, then every (experiment, seed) run that has no
current record, one after another or in ``jobs`` worker processes.

On the CPU the workers share the cores (``threads`` each); on CUDA several runs share each
GPU and runs are spread over all visible GPUs. A run that fails is reported with its error and
does not stop the others; Ctrl-C stops every worker, and each run resumes from its last
finished epoch (its checkpoints stay in ``<seed>.run/``) the next time.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from tkd.experiments import (
    PRESETS,
    Preset,
    get_experiment,
    get_preset,
    load_data,
    plan,
    teacher_owner,
)
from tkd.files import check_writable_folder
from tkd.records import (
    RecordError,
    failed_path,
    file_sha256,
    load_record,
    read_record,
    result_path,
    teacher_path,
)
from tkd.runs import run_experiment, teacher_logits, train_teacher
from tkd.staleness import stale_reason
from tkd.train import pick_device


def reproduce(preset: str | Preset = "quick", experiments: list[str] | None = None,
              seeds: list[int] | None = None, root: str | Path | None = None,
              device: str | None = None, data_root: str | Path | None = None,
              epochs: int | None = None, threads: int | None = None, log=print,
              jobs: int = 1, tensorboard: str | None = None,
              progress: bool | None = None) -> list[Path]:
    """Run a preset end to end: the teacher first (trained once, retrained when its recipe
    changed), then every run of :func:`tkd.experiments.plan` without a current record.
    ``preset``: a name (resolved here, once) or a :class:`tkd.experiments.Preset`.

    A record is reused only when :func:`tkd.staleness.stale_reason` finds it current
    (settings, teacher hash, data and code as today's); a stale one is rerun, with a log line
    saying why. Returns the results paths of all planned runs.
    ``progress``: a bar over the runs (default: only in a terminal).
    """
    preset = get_preset(preset)
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    runs = plan(preset, experiments, seeds)
    device = preset_device(preset, device)
    check_output(preset, runs, root)  # before any work: hours of teacher must not be lost
    check_records(preset, runs, root)
    data = load_data(preset, data_root)
    threads = threads or preset.threads or max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)  # the teacher too: runs must not depend on what ran before
    start = time.perf_counter()
    identity = data.identity()
    owner = teacher_owner(preset)  # a shared teacher is judged on its own preset's data
    state, why = teacher_state(preset, root, identity if owner == preset
                               else load_data(owner, data_root).identity())
    train_teacher(preset, data, root, device, force=state == "stale")
    log(f"[{preset.name}] teacher {'loaded' if state == 'current' else 'trained'} "
        f"({time.perf_counter() - start:.1f} s)" + (f"; it was stale: {why}" if why else ""))
    todo = pending_runs(preset, runs, root, epochs, identity, log)
    tasks = [(preset, name, seed, None if root is None else str(root),
              _device_for(device, k), None if data_root is None else str(data_root), epochs,
              tensorboard) for k, (name, seed) in enumerate(todo)]
    failures = _run_tasks(tasks, jobs, threads, log, progress, preset.name)
    if failures:
        names = ", ".join(f"{n} seed {s}" for n, s in failures)
        log(f"[{preset.name}] {len(failures)} run(s) failed: {names}")
    return Planned([result_path(preset, name, seed, root) for name, seed in runs], failures)


class Planned(list):
    """The results paths of a reproduction's planned runs (a list), with ``failed``: the
    (experiment, seed) of the runs that failed this time (the command then exits 1)."""

    def __init__(self, paths, failed=()):
        super().__init__(paths)
        self.failed = list(failed)


def preset_device(preset: Preset, device: str | None) -> str:
    """The device a reproduction of ``preset`` trains on: ``device``, else the preset's kind
    (:attr:`tkd.experiments.Preset.device`); ``ValueError`` before any work when its kind is
    not the preset's (the records would break the place rule and be refused) or it is absent."""
    chosen = pick_device(device or preset.device)
    if chosen.type != preset.device:
        others = [p.name for p in PRESETS.values() if p.device == chosen.type]
        raise ValueError(f"every student of preset {preset.name!r} comes from {preset.device}, "
                         f"not {chosen.type}: pass --device {preset.device}"
                         + (f", or use a preset of {chosen.type} runs ({', '.join(others)})"
                            if others else ""))
    return device or preset.device


def check_output(preset: Preset, runs, root=None) -> None:
    """Refuse, before any work, a results location that cannot take every run of ``runs``
    and the teacher: a path on the way that is a file, or a folder that cannot be written
    (``OSError`` naming it). Creates the folders."""
    folders = {teacher_path(preset, root).parent,
               *(result_path(preset, name, seed, root).parent for name, seed in runs)}
    for folder in sorted(folders):
        check_writable_folder(folder)


def check_records(preset: Preset, runs, root=None) -> None:
    """Read every record that ``runs`` and the teacher would reuse and refuse the lot
    (:class:`tkd.records.RecordError` listing each file and its fault) if one is malformed,
    cut short or misplaced, before any work."""
    paths = [teacher_path(preset, root).with_name("1.json"),
             *(result_path(preset, name, seed, root) for name, seed in runs)]
    faults = []
    for path in paths:
        if path.is_file():
            try:
                read_record(path)
            except RecordError as error:
                faults.append(str(error))
    if faults:
        raise RecordError("\n".join(faults))


def teacher_state(preset: Preset, root=None,
                  data_identity: dict | None = None) -> tuple[str, str | None]:
    """``("missing" | "current" | "stale", why stale)`` of the preset's saved teacher, judged by
    :func:`tkd.staleness.stale_reason` against the recipe and split of the preset that owns
    the teacher (``teacher_preset``), the sha256 of its ``model.pt``, the data and the code."""
    model = teacher_path(preset, root)
    if not model.is_file():
        return "missing", None
    record_path = model.with_name("1.json")
    if not record_path.is_file():
        return "stale", "it has no record (teacher/1.json)"
    reason = stale_reason(read_record(record_path), preset, "teacher", 1, file_sha256(model),
                          data_identity=data_identity, root=root)
    return ("current", None) if reason is None else ("stale", reason)


def pending_runs(preset: Preset, runs, root, epochs, data_identity: dict | None, log,
                 new_teacher: bool = False) -> list[tuple[str, int]]:
    """The runs of ``runs`` without a current record (:func:`tkd.staleness.stale_reason`);
    stale records' checkpoints are cleared, a stale ``.failed.json`` is removed (the run is
    retried). ``new_teacher``: the teacher is about to be (re)trained, so every run that uses
    it is pending. Shared by :func:`reproduce` and :func:`tkd.cluster.submit_grid`."""
    saved = teacher_path(preset, root)
    sha = file_sha256(saved) if saved.is_file() else None
    todo = []
    for name, seed in runs:
        path = result_path(preset, name, seed, root)
        uses_teacher = get_experiment(name).objective().needs_teacher
        check = (preset, name, seed, sha if uses_teacher else None, epochs, data_identity,
                 root, uses_teacher and new_teacher)
        failed = failed_path(path)
        if failed.is_file() and not path.is_file():
            old = load_record(failed)  # retried with other settings, teacher, data or code
            if _reason(old, *check) is None:
                log(f"[{preset.name}] {name} seed {seed}: diverged before ({old['error'][:80]}"
                    f"...), not retried; delete {failed.name} to retry")
                continue
            failed.unlink()
        if path.is_file():
            reason = _reason(read_record(path), *check)
            if reason is None:
                log(f"[{preset.name}] {name} seed {seed}: up to date, skipped")
                continue
            log(f"[{preset.name}] {name} seed {seed}: stale, {reason}; rerunning")
            shutil.rmtree(path.with_name(f"{seed}.run"), ignore_errors=True)
        todo.append((name, seed))
    return todo


def _reason(record, preset, name, seed, sha, epochs, data_identity, root,
            retraining: bool) -> str | None:
    if retraining:
        return "its teacher is being retrained"
    return stale_reason(record, preset, name, seed, sha, epochs, data_identity, root)


def _device_for(device: str | None, k: int) -> str | None:
    """Run ``k``'s device: round-robin over the visible GPUs unless one is named."""
    if device not in (None, "cuda") or not torch.cuda.is_available():
        return device
    return f"cuda:{k % torch.cuda.device_count()}"


_CACHE: dict = {}  # per process: (preset, root, device, data_root, teacher file's sha256)
#                    -> (data, teacher, logits)


def run_one(preset: Preset, experiment: str, seed: int, root: str | None, device: str | None,
            data_root: str | None, epochs: int | None = None,
            tensorboard: str | None = None) -> dict:
    """One run with the preset's saved teacher; data, teacher and its logits are loaded once
    per process. ``preset`` is passed whole, so a customised preset's epochs and seeds reach
    the run. Returns the record (also written to disk)."""
    saved = teacher_path(preset, root)  # a retrained teacher must not be served from the cache
    key = (preset, root, device, data_root, file_sha256(saved) if saved.is_file() else None)
    if key not in _CACHE:
        data = load_data(preset, data_root)
        teacher = train_teacher(preset, data, root, device)
        _CACHE.clear()
        _CACHE[key] = (data, teacher, teacher_logits(teacher, data, device))
    data, teacher, logits = _CACHE[key]
    return run_experiment(preset, experiment, seed, data, teacher, logits, root, device, epochs,
                          tensorboard=tensorboard)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _run_tasks(tasks: list[tuple], jobs: int, threads: int, log, progress: bool,
               name: str) -> list[tuple[str, int]]:
    """Run ``tasks`` (arguments of :func:`run_one`) in this process or in ``jobs`` workers;
    returns the (experiment, seed) of the runs that failed."""
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _bar(len(tasks), progress, name)
    failures = []

    def done(task, record=None, error=None) -> None:
        _, experiment, seed = task[:3]
        if error is None:
            line = (f"[{name}] {experiment} seed {seed}: test acc "
                    f"{record['final']['test_acc']:.4f} ({record['wall_seconds']:.1f} s)")
        else:
            failures.append((experiment, seed))
            line = f"[{name}] {experiment} seed {seed}: FAILED: {type(error).__name__}: {error}"
        if bar is not None:
            bar.write(line)
            bar.update(1)
        else:
            log(line)

    try:
        if jobs == 1:
            torch.set_num_threads(threads)
            for task in tasks:
                try:
                    done(task, run_one(*task))
                except Exception as error:  # noqa: BLE001 - reported, the grid goes on
                    done(task, error=error)
        else:
            _run_pool(tasks, jobs, threads, done)
    finally:
        if bar is not None:
            bar.close()
    return failures


def _run_pool(tasks: list[tuple], jobs: int, threads: int, done) -> None:
    """Feed ``tasks`` to ``jobs`` spawned workers; Ctrl-C cancels what has not started and
    lets the running ones stop at their interrupt (their checkpoints stay)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        running = {pool.submit(run_one, *task): task for task in tasks}
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = running.pop(future)
                    error = future.exception()
                    done(task, None if error else future.result(), error)
        except KeyboardInterrupt:  # Ctrl-C reaches the workers too; a `kill -INT` may not
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            print("interrupted: every started run keeps its checkpoints; run the same "
                  "command again to resume")
            raise


def _bar(total: int, enabled: bool, name: str):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{name} runs", unit="run", smoothing=0)
