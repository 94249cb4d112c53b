"""Aggregate training throughput of a grid of runs (``tkd.grid.reproduce``) against the number of
worker processes, on the CPU and on CUDA, with the training step eager or captured as a CUDA
graph.

The preset's teacher is trained once into a shared folder (``--teacher-epochs``, default 1: the
students' arithmetic does not depend on how good it is); for every setting (device x mode x
jobs) its ``teacher/`` folder is copied into a fresh results root, and only the grid itself is
timed: one subprocess per setting calls ``reproduce(..., jobs=J)`` (which loads data, teacher
and teacher logits in every worker, trains, evaluates and writes every run's checkpoints,
model and record). Aggregate images/s = sum over runs of (training images x epochs) / wall
time of that call. ``mode`` eager sets ``TKD_CUDA_GRAPH=0`` in the setting's environment
(inherited by its workers); graph sets ``TKD_CUDA_GRAPH=1``. The CPU has no graphs: its mode
is eager.

    python bench/grid.py --preset quick --epochs 2 --jobs 1 2                    # CPU, seconds
    python bench/grid.py --device cuda --preset fashion --epochs 1 --jobs 1 2 4  # GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tkd.files import atomic_write_json
from tkd.files import portable_path as portable


def make_preset(name: str, teacher_epochs: int | None):
    """The named preset, with its teacher's epochs replaced when ``teacher_epochs`` is set."""
    from tkd.experiments import get_preset

    preset = get_preset(name)
    if teacher_epochs:
        preset = dataclasses.replace(preset, teacher_epochs=teacher_epochs)
    return preset


def align_teacher_record(preset, root) -> None:
    """The shared teacher's record names the ``cuda_graph`` setting it was trained under, and
    ``reproduce`` would take a different one (this setting's ``TKD_CUDA_GRAPH``) for a changed
    recipe and retrain it inside the timed grid. Write this setting's value into the copy (how
    the step was executed does not change the weights)."""
    from tkd.experiments import teacher_config
    from tkd.records import load_record, save_record, teacher_path

    path = teacher_path(preset, root).with_name("1.json")
    record = load_record(path)
    if "cuda_graph" in record["config"]["train"]:
        record["config"]["train"]["cuda_graph"] = teacher_config(preset).cuda_graph
        save_record(path, record)


def run_setting(args) -> dict:
    """One timed grid (this process is the setting's subprocess); returns what it measured."""
    from tkd.experiments import load_data
    from tkd.grid import reproduce
    from tkd.records import load_record
    from tkd.train import TrainConfig

    preset = make_preset(args.preset, args.teacher_epochs)
    align_teacher_record(preset, args.root)
    lines = []

    def log(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr)

    start = time.perf_counter()
    paths = reproduce(preset, args.experiments, args.seeds, args.root, args.device,
                      args.data_root, args.epochs, args.threads, log=log, jobs=args.jobs,
                      progress=False)
    wall = time.perf_counter() - start
    train_images = len(load_data(preset, args.data_root).train)
    records = [load_record(p) for p in paths if p.is_file()]
    epochs = [len(r["history"]["epoch"]) for r in records]
    in_epoch = [sum(r["history"]["images_per_second"]) / len(r["history"]["images_per_second"])
                for r in records]
    return {"wall_seconds": wall, "runs": len(records), "planned_runs": len(paths),
            "train_images": train_images, "images_trained": train_images * sum(epochs),
            "aggregate_images_per_second": train_images * sum(epochs) / wall,
            "mean_run_epoch_images_per_second": sum(in_epoch) / max(len(in_epoch), 1),
            "mean_run_wall_seconds": sum(r["wall_seconds"] for r in records)
            / max(len(records), 1),
            "cuda_graph_default": TrainConfig().cuda_graph,
            "teacher_retrained": any(" teacher trained" in line for line in lines)}


def train_shared_teacher(args, root: Path, device: str) -> float:
    """Train (or reuse) the preset's teacher under ``root``; returns the seconds it took."""
    from tkd.experiments import load_data
    from tkd.runs import train_teacher

    preset = make_preset(args.preset, args.teacher_epochs)
    start = time.perf_counter()
    train_teacher(preset, load_data(preset, args.data_root), root, device)
    return time.perf_counter() - start


def settings(devices: list[str], modes: list[str], jobs: list[int]) -> list[tuple[str, str, int]]:
    """(device, mode, jobs) to time; a CPU has only the eager mode."""
    out = []
    for device in devices:
        for mode in (modes if device.startswith("cuda") else ["eager"]):
            out += [(device, mode, j) for j in jobs]
    return out


def add_speedups(rows: list[dict]) -> None:
    """``speedup``: aggregate images/s over that of the fewest jobs of the same device and mode."""
    for row in rows:
        same = [r for r in rows if (r["device"], r["mode"]) == (row["device"], row["mode"])]
        base = min(same, key=lambda r: r["jobs"])
        row["speedup"] = row["aggregate_images_per_second"] / base["aggregate_images_per_second"]


def print_table(rows: list[dict]) -> None:
    header = (f"{'device':7s} {'mode':6s} {'jobs':>4s} {'runs':>5s} {'wall s':>8s} "
              f"{'agg img/s':>10s} {'speed-up':>8s} {'per-run epoch img/s':>20s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        failed = r["planned_runs"] - r["runs"]
        flag = f"  ({failed} failed)" if failed else ""
        if r["teacher_retrained"]:
            flag += "  (the teacher was retrained inside the timed grid)"
        if r["device"].startswith("cuda") and r["cuda_graph_default"] != (r["mode"] == "graph"):
            flag += "  (TKD_CUDA_GRAPH not honoured: mode not applied)"
        print(f"{r['device']:7s} {r['mode']:6s} {r['jobs']:4d} {r['runs']:5d} "
              f"{r['wall_seconds']:8.1f} {r['aggregate_images_per_second']:10.0f} "
              f"{r['speedup']:7.2f}x {r['mean_run_epoch_images_per_second']:20.0f}{flag}")


def parse_args() -> argparse.Namespace:
    """The command line: what to run and in which settings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quick", help="quick (digits) or fashion")
    parser.add_argument("--experiments", nargs="+", default=["triplet", "ce"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=2, help="student epochs per run")
    parser.add_argument("--teacher-epochs", type=int, default=1,
                        help="the shared teacher's epochs (0: the preset's)")
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--device", nargs="+", default=None,
                        help="cpu and/or cuda (default: cuda if available, else cpu)")
    parser.add_argument("--mode", nargs="+", choices=["graph", "eager"],
                        default=["graph", "eager"], help="on CUDA: captured step or eager")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per worker (default: the preset's, else cores/jobs)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--work", default=None, help="folder for the results roots "
                        "(default: a temporary one, removed afterwards)")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--setting", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--one-jobs", type=int, dest="one_jobs", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_settings(args, devices: list[str], work: Path, shared: Path) -> list[dict]:
    """Each (device, mode, jobs) setting in its own process and results root, starting from
    the shared teacher; one row of timings per setting."""
    common = ["--preset", args.preset, "--epochs", str(args.epochs),
              "--teacher-epochs", str(args.teacher_epochs),
              "--experiments", *args.experiments, "--seeds", *map(str, args.seeds)]
    common += ["--threads", str(args.threads)] if args.threads else []
    common += ["--data-root", args.data_root] if args.data_root else []
    rows = []
    for device, mode, jobs in settings(devices, args.mode, args.jobs):
        root = work / f"{device.replace(':', '')}-{mode}-j{jobs}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(shared / args.preset / "teacher", root / args.preset / "teacher")
        env = {**os.environ, "TKD_CUDA_GRAPH": "1" if mode == "graph" else "0"}
        out = subprocess.run([sys.executable, __file__, "--setting", "--root", str(root),
                              "--device", device, "--one-jobs", str(jobs), *common],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            sys.exit(f"{device} {mode} jobs={jobs} failed:\n{out.stderr[-4000:]}")
        row = {"device": device, "mode": mode, "jobs": jobs,
               **json.loads(out.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{device} {mode} jobs={jobs}: {row['runs']} runs in "
              f"{row['wall_seconds']:.1f} s", flush=True)
    return rows


def main() -> None:
    args = parse_args()
    if args.setting:
        args.device, args.jobs = args.device[0], args.one_jobs
        print(json.dumps(run_setting(args)))
        return

    import torch

    devices = args.device or ["cuda" if torch.cuda.is_available() else "cpu"]
    work = Path(args.work or tempfile.mkdtemp(prefix="tkd-grid-bench-"))
    shared = work / "shared"
    teacher_seconds = train_shared_teacher(args, shared, devices[0])
    print(f"teacher ({args.preset}, {args.teacher_epochs or 'preset'} epoch(s)) trained once on "
          f"{devices[0]} in {teacher_seconds:.1f} s (not timed below)", flush=True)
    try:
        rows = run_settings(args, devices, work, shared)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    add_speedups(rows)
    print(f"grid: preset {args.preset}, {' '.join(args.experiments)} x seeds "
          f"{' '.join(map(str, args.seeds))}, {args.epochs} epoch(s) of {rows[0]['train_images']} "
          f"images per run; torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + (f", {torch.cuda.get_device_name()}" if any(d.startswith("cuda") for d in devices)
             else ""))
    print_table(rows)
    if args.out:
        payload = {"args": {k: portable(v) if k in ("out", "work") else v
                            for k, v in vars(args).items()
                            if k not in ("setting", "root", "one_jobs")},
                   "torch": torch.__version__, "cpu_cores": os.cpu_count(),
                   "teacher_seconds": teacher_seconds, "settings": rows}
        atomic_write_json(args.out, payload)
        print(f"wrote {portable(args.out)}")


if __name__ == "__main__":
    main()
