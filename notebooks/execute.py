"""Execute the notebooks in place, with their outputs, as readers see them on GitHub.

    python notebooks/execute.py                  # every notebooks/*.ipynb, in name order
    python notebooks/execute.py 03 05_logit_embeddings.ipynb

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient) whose working
directory is ``notebooks/``, so results and figures go to the project's ``results/`` and
``figures/`` (runs already there are skipped). The cell tagged ``parameters`` keeps its default
``PRESET = "quick"``. Torch runs on one CPU thread so that the numbers of the cells tagged
``compare`` repeat exactly (``tests/test_notebooks.py`` checks them). A notebook with a failing
cell is not written; the script then exits with status 1. This file does not import tkd.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat

FOLDER = Path(__file__).resolve().parent
TIMEOUT = 900  # seconds per cell


def kernel_env() -> dict:
    """Environment settings that make a run repeatable: torch on one CPU thread."""
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def execute(nb, cwd: Path, kernel_name: str = "python3", timeout: int = TIMEOUT):
    """Run ``nb`` (a nbformat notebook, changed in place) with ``cwd`` as working directory;
    raises ``nbclient.exceptions.CellExecutionError`` at the first failing cell."""
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in kernel_env()}
    os.environ.update(kernel_env())  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name=kernel_name, record_timing=False,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def resolve(names: list[str]) -> list[Path]:
    """Notebook paths from names, stems or prefixes (``03``); all notebooks if none given."""
    every = sorted(FOLDER.glob("*.ipynb"))
    if not names:
        return every
    paths = []
    for name in names:
        found = [p for p in every if p.name == name or p.stem == name or p.name.startswith(name)]
        if len(found) != 1:
            raise SystemExit(f"{name!r} matches {len(found)} notebooks in {FOLDER}")
        paths.append(found[0])
    return paths


def main(argv: list[str]) -> int:
    from nbclient.exceptions import CellExecutionError

    failed = []
    for path in resolve(argv):
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        try:
            execute(nb, FOLDER)
        except CellExecutionError as error:
            print(f"{path.name}: FAILED, not written\n{error}", file=sys.stderr)
            failed.append(path.name)
            continue
        nbformat.write(nb, path)
        size = path.stat().st_size / 1e6
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s, {size:.2f} MB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
