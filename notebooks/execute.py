"""Execute the notebooks in place, with their outputs, as readers see them on GitHub.

    python notebooks/execute.py                  # every notebook, then every solution notebook
    python notebooks/execute.py 03 05_logit_embeddings.ipynb 03_solutions
    TKD_PRESET=fashion python notebooks/execute.py 00
    python notebooks/execute.py --sync-setup     # only copy setup_cell.py into every notebook
    python notebooks/execute.py --check-prose 03 # list prose numbers no output of 03 prints

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient) whose working
directory is its folder (``notebooks/``, or ``notebooks/solutions/`` for the solution
notebooks, which start by running their lesson notebook: ``tkd.notebooks.run_notebook``),
so results and figures go to the project's ``results/`` and ``figures/`` (runs already
there are skipped). The cell tagged ``parameters`` keeps its ``PRESET = "auto"``, which
``tkd.notebooks.choose_preset`` resolves to ``$TKD_PRESET``: here "quick" unless the
environment says otherwise. Torch runs on one CPU thread so that the
numbers of the cells tagged ``compare`` repeat exactly (``tests/test_notebooks.py`` checks
them). A notebook with a failing cell is not written; the script then exits with status 1.

The first code cell of every notebook, solution notebooks included, is ``setup_cell.py``,
word for word: edit that file and run ``--sync-setup`` (:func:`sync_setup_cells`), never the
cells. This file imports tkd only for ``--check-prose``
(:func:`tkd.notebooks.unsourced_numbers`, the check of ``tests/test_prose_numbers.py``).

A new solution notebook: ``notebooks/solutions/NN_solutions.ipynb`` with a title, the setup
cell, a cell tagged ``parameters`` holding ``PRESET = "auto"``, then
``run_notebook("NN_name.ipynb", PRESET=PRESET)`` and ``choose_preset(PRESET)`` (the banner)
from ``tkd.notebooks``; then per exercise its question (Markdown) and a solution
cell that ends by printing "Answer: ..." (``tests/test_notebooks.py`` checks all of this).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat

FOLDER = Path(__file__).resolve().parent
SOLUTIONS = FOLDER / "solutions"
SETUP_CELL = FOLDER / "setup_cell.py"
TIMEOUT = 900  # seconds per cell


def kernel_env() -> dict:
    """Environment settings that make a run repeatable: torch on one CPU thread, and the
    preset "auto" stands for: ``$TKD_PRESET`` if set, else "auto" (Fashion-MNIST where its
    files are, as the committed notebooks are executed; the digits elsewhere)."""
    preset = {"TKD_PRESET": os.environ["TKD_PRESET"]} if os.environ.get("TKD_PRESET") else {}
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **preset}


def setup_source() -> str:
    """The source of every notebook's first code cell: ``setup_cell.py`` without its final
    newline."""
    return SETUP_CELL.read_text().rstrip("\n")


def first_code_cell(nb):
    """The notebook's first code cell (``ValueError`` if it has none)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            return cell
    raise ValueError("the notebook has no code cell")


def every_notebook() -> list[Path]:
    """The lesson notebooks in name order, then the solution notebooks in name order."""
    return sorted(FOLDER.glob("*.ipynb")) + sorted(SOLUTIONS.glob("*.ipynb"))


def sync_setup_cells(paths: list[Path] | None = None) -> list[Path]:
    """Make the first code cell of each notebook (default: all, solutions included) exactly
    ``setup_cell.py``.
    Only that cell changes: its source, and its outputs are cleared (in a checkout the cell
    prints nothing); its execution count stays. Returns the notebooks rewritten."""
    source, changed = setup_source(), []
    for path in paths if paths is not None else every_notebook():
        nb = nbformat.read(path, as_version=4)
        cell = first_code_cell(nb)
        if cell.source == source and not cell.outputs:
            continue
        cell.source, cell.outputs = source, []
        nbformat.write(nb, path)
        changed.append(Path(path))
    return changed


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
    """Notebook paths from names, stems or prefixes (``03`` is ``03_*``, ``03b`` is ``03b_*``,
    ``03_solutions`` the solution notebook); all notebooks if none given."""
    every = every_notebook()
    if not names:
        return every
    paths = []
    for name in names:
        lessons = [p for p in every if p.parent == FOLDER]  # a prefix names a lesson
        found = [p for p in every if p.name == name or p.stem == name]
        found = found or [p for p in lessons if p.name.startswith(f"{name}_")] \
            or [p for p in lessons if p.name.startswith(name)]
        if len(found) != 1:
            raise SystemExit(f"{name!r} matches {len(found)} notebooks in {FOLDER}")
        paths.append(found[0])
    return paths


def main(argv: list[str]) -> int:
    from nbclient.exceptions import CellExecutionError

    if "--sync-setup" in argv:
        names = [a for a in argv if a != "--sync-setup"]
        for path in sync_setup_cells(resolve(names)):
            print(f"{path.name}: setup cell replaced by {SETUP_CELL.name}")
        return 0
    if "--check-prose" in argv:
        from tkd.notebooks import prose_check

        found = 0
        for path in resolve([a for a in argv if a != "--check-prose"]):
            for index, number, context in prose_check(path):
                print(f"{path.name} cell {index}: {number!r} printed by no output: {context}")
                found += 1
        return 1 if found else 0
    failed = []
    for path in resolve(argv):
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        try:
            execute(nb, path.parent)
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
