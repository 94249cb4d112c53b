"""Time the lab track as a student runs it, and write ``notebooks/lab_timing.json``.

    python notebooks/time_lab.py            # on this machine; about half an hour on 2 CPU cores

As in the lab: the lesson run (``tkd.experiments.LESSON``, seed 1, two jobs) starts first, in
the background (:func:`tkd.notebooks.start_lesson_run`, into a temporary folder); meanwhile
notebooks 00, 01, 02 and 03 run top to bottom, one after the other, each in a fresh kernel
with torch's default threads (as a student's kernel has; their outputs are thrown away, the
committed notebooks are not touched). Then it waits for the lesson run. The file records the
seconds each notebook's cells took, the lesson run's seconds, the machine (cores, torch's
threads, CUDA device) and its load average before and after: other work on the machine slows
both, and the file says so. ``notebooks/lab.py`` times the plan with it (the seconds the cells
ran are part of its reading model).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parent
TRACK = ["00_quickstart", "01_teacher", "02_baselines", "03_triplet_kd"]


def main() -> int:
    import torch
    from lab import LAB_TIMING

    from tkd import experiments as ex
    from tkd.notebooks import start_lesson_run

    os.environ["TKD_LIVE"] = "0"  # the notebooks' kernels: 00 must not start a second run
    load_before = os.getloadavg()
    started = time.perf_counter()
    run = start_lesson_run(ex.LESSON, [1], jobs=2)
    if isinstance(run, str):
        print(run, file=sys.stderr)
        return 1
    seconds = {}
    for name in TRACK:
        nb = nbformat.read(FOLDER / f"{name}.ipynb", as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=1800, kernel_name="python3",
                       resources={"metadata": {"path": str(FOLDER)}}).execute()
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]:.0f} s; {run.status()}", flush=True)
    notebooks_done = time.perf_counter() - started
    status = run.wait()
    timing = {
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
                   + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "torch threads": torch.get_num_threads(),
        "load average before (1, 5, 15 min)": [round(x, 2) for x in load_before],
        "load average after (1, 5, 15 min)": [round(x, 2) for x in os.getloadavg()],
        "notebook seconds": seconds,
        "all four notebooks, seconds": round(notebooks_done, 1),
        "lesson run": {"experiments": ex.LESSON, "seeds": [1], "jobs": 2,
                       "seconds": round(run.seconds, 1), "exit status": status},
    }
    LAB_TIMING.write_text(json.dumps(timing, indent=1) + "\n")
    print(json.dumps(timing, indent=1))
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
