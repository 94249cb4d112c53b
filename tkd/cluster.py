"""A reproduction on a cluster, through submitit: one teacher job, then the runs as one job array.

:func:`submit_grid` submits (a) a job that trains the preset's teacher (skipped when it is
already saved) and (b) every (experiment, seed) run as ONE job array that starts after the
teacher job succeeded (slurm: ``--dependency=afterok:<teacher>``; submitit's local executor
knows no dependencies, so there the teacher job is awaited before the array is submitted).
Each array task is :func:`run_one`, which writes exactly the record (and student) a local
:func:`tkd.grid.reproduce` writes, under ``<results>/<preset>/<experiment>/<seed>.json``.

``submitit`` is an optional extra: ``pip install 'tkd[cluster]'``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import torch

from tkd.experiments import Preset, load_data
from tkd.grid import pending_runs, teacher_state
from tkd.records import results_root
from tkd.runs import run_experiment, teacher_accuracy, teacher_logits, train_teacher

EXECUTORS = {"slurm": "slurm", "submitit-local": "local", "local": "local"}
MISSING = "submitit is not installed: pip install 'tkd[cluster]' (or pip install submitit)"


def _submitit():
    """The ``submitit`` module, or a ModuleNotFoundError that says how to install it."""
    try:
        import submitit
    except ImportError as error:
        raise ModuleNotFoundError(MISSING, name="submitit") from error
    return submitit


def _set_threads(preset: Preset) -> None:
    if preset.threads:
        torch.set_num_threads(preset.threads)


def run_teacher(preset: Preset, root: str | Path | None = None,
                device: str | None = None, data_root: str | Path | None = None,
                force: bool = False) -> float:
    """Job body: train (or load) the preset's teacher with
    :func:`tkd.runs.train_teacher` (``force``: retrain a stale one); returns its final
    test accuracy."""
    _set_threads(preset)
    train_teacher(preset, load_data(preset, data_root), root, device, force=force)
    return teacher_accuracy(preset, root)


def run_one(preset: Preset, experiment: str, seed: int,
            root: str | Path | None = None, device: str | None = None,
            data_root: str | Path | None = None, epochs: int | None = None) -> dict:
    """Job-array body: one (experiment, seed) run with the saved teacher and its logits, written
    by :func:`tkd.runs.run_experiment` as a local run would be; returns its ``final``
    metrics. ``epochs`` overrides the preset's (for tests)."""
    _set_threads(preset)
    data = load_data(preset, data_root)
    teacher = train_teacher(preset, data, root, device)  # loads the saved one
    logits = teacher_logits(teacher, data, device)
    record = run_experiment(preset, experiment, seed, data, teacher, logits, root, device,
                            epochs=epochs)
    return record["final"]


def make_executor(executor: str, folder: str | Path, partition: str | None = None,
                  time_min: int = 60, gpus_per_run: int = 0, cpus_per_run: int = 2,
                  environment: dict[str, str] | None = None):
    """A ``submitit.AutoExecutor`` for ``executor`` ("slurm", or "submitit-local" / "local"
    for submitit's local processes) with one run's resources. ``environment`` is exported in
    each job's shell before Python starts (the portable CPU mode's caps,
    :func:`tkd.portable.portable_environment`, must be set before torch is imported)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    submitit = _submitit()
    job_executor = submitit.AutoExecutor(folder=str(folder), cluster=EXECUTORS[executor])
    job_executor.update_parameters(timeout_min=int(time_min), gpus_per_node=int(gpus_per_run),
                                   cpus_per_task=int(cpus_per_run), slurm_partition=partition)
    if environment:
        setup = [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
        job_executor.update_parameters(slurm_setup=setup, local_setup=setup)
    return job_executor


def submit_grid(preset: Preset, runs: list[tuple[str, int]], *,
                executor: str = "slurm", folder: str | Path | None = None,
                partition: str | None = None, time_min: int = 60, gpus_per_run: int = 0,
                cpus_per_run: int = 2, root: str | Path | None = None,
                device: str | None = None, data_root: str | Path | None = None,
                epochs: int | None = None, environment: dict[str, str] | None = None,
                log=print) -> dict:
    """Submit the teacher job, then ``runs`` (``(experiment, seed)`` pairs, e.g. from
    :func:`tkd.experiments.plan`) as one job array after it. The teacher job runs only when
    the teacher is missing or stale, and only the runs without a current record are
    submitted: the same checks as a local reproduction (:func:`tkd.grid.teacher_state`,
    :func:`tkd.grid.pending_runs`). ``folder`` (default ``<results>/<preset>/_submitit``)
    gets submitit's logs and pickles; ``environment`` is set in every job (see
    :func:`make_executor`).

    Returns ``{"folder", "teacher_job_id" (None if the teacher was saved already),
    "run_job_ids", "runs", "jobs"}``; ``jobs`` holds the array's submitit jobs (see :func:`wait`).
    """
    folder = Path(folder or results_root(root) / preset.name / "_submitit")
    job_executor = make_executor(executor, folder, partition, time_min, gpus_per_run,
                                 cpus_per_run, environment)
    identity = load_data(preset, data_root).identity()
    state, why = teacher_state(preset, root, identity)
    todo = pending_runs(preset, runs, root, epochs, identity, log, new_teacher=state != "current")
    teacher_job = None
    if state != "current":
        job_executor.update_parameters(name=f"tkd-{preset.name}-teacher")
        teacher_job = job_executor.submit(run_teacher, preset, root, device, data_root,
                                          state == "stale")
        log(f"[{preset.name}] teacher job {teacher_job.job_id} submitted ({state}"
            + (f": {why})" if why else ")"))
        if EXECUTORS[executor] == "slurm":
            job_executor.update_parameters(
                slurm_additional_parameters={"dependency": f"afterok:{teacher_job.job_id}"})
        else:  # submitit's local executor has no dependencies: wait for the teacher here
            log(f"[{preset.name}] teacher test acc {teacher_job.result():.4f}")
    jobs = []
    if todo:
        job_executor.update_parameters(name=f"tkd-{preset.name}-runs")
        n = len(todo)
        jobs = job_executor.map_array(run_one, [preset] * n, [e for e, _ in todo],
                                      [s for _, s in todo], [root] * n, [device] * n,
                                      [data_root] * n, [epochs] * n)
    log(f"[{preset.name}] {len(todo)} runs submitted as one job array "
        f"({len(runs) - len(todo)} already done): {', '.join(j.job_id for j in jobs) or '-'}")
    log(f"[{preset.name}] logs: {folder}/<job id>_0_log.out/.err; records: "
        f"{results_root(root) / preset.name}/<experiment>/<seed>.json")
    return {"folder": folder, "teacher_job_id": teacher_job.job_id if teacher_job else None,
            "run_job_ids": [j.job_id for j in jobs], "runs": todo, "jobs": jobs}


def wait(submitted: dict) -> list[dict]:
    """Block until every run of :func:`submit_grid` has finished; returns their ``final``
    metrics in the order of ``submitted["runs"]`` (a failed job raises its error)."""
    return [job.result() for job in submitted["jobs"]]
