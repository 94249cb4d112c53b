"""Execute the notebooks in place, with their outputs, as readers see them on GitHub.

    python notebooks/execute.py                  # every notebook, then every solution notebook
    python notebooks/execute.py 03 05_logit_embeddings.ipynb 03_solutions
    TKD_PRESET=fashion python notebooks/execute.py 00
    python notebooks/execute.py --sync-setup     # only copy setup_cell.py into every notebook
    python notebooks/execute.py --sync-plan      # only write lab.py's plan and time notes
    python notebooks/execute.py --stale          # only the notebooks whose inputs changed
    python notebooks/execute.py --list-stale     # list them (and what changed), run nothing
    python notebooks/execute.py --check-prose 03 # list prose numbers their outputs contradict
    python notebooks/execute.py 03_solutions --handout answers  # executed answers, apart

Each notebook runs top to bottom in a fresh ``python3`` kernel (nbclient) whose working
directory is its folder (``notebooks/``, or ``notebooks/solutions/`` for the solution
notebooks, which start by running their lesson notebook: ``tkd.notebooks.run_notebook``),
so results and figures go to the project's ``results/`` and ``figures/`` (runs already
there are skipped). The cell tagged ``parameters`` keeps its ``PRESET = "auto"``, which
``tkd.notebooks.choose_preset`` resolves to ``$TKD_PRESET``: here "quick" unless the
environment says otherwise. Torch runs on one CPU thread so that the
numbers of the cells tagged ``compare`` repeat exactly (``tests/test_notebooks.py`` checks
them). A notebook with a failing cell is not written; the script then exits with status 1.

**Freshness.** A lesson notebook is executed between two hidden cells of
``notebooks/freshness.py`` that note which files the kernel read and which folders it listed;
their fingerprints go into the notebook's metadata (``metadata.tkd.inputs``) and the hidden
cells are removed. ``--stale`` re-executes only the notebooks whose recorded inputs differ from
the files as they are now (a record landed, changed or left): run it before committing records,
and ``tests/test_freshness.py`` stays green.

**Solutions.** A solution notebook is executed, checked (every exercise prints "Answer:") and
written back *without* outputs, so that its answers read on GitHub or in a clone only after a
deliberate run; ``--handout DIR`` also writes the executed copies to ``DIR`` for a lecturer to
hand out.

The first code cell of every notebook, solution notebooks included, is ``setup_cell.py``,
word for word: edit that file and run ``--sync-setup`` (:func:`sync_setup_cells`), never the
cells. The checks live beside this file: ``freshness.py`` (the records
each notebook read) and ``prose.py`` (``--check-prose``, the check of
``tests/test_prose_numbers.py``).

A new solution notebook: ``notebooks/solutions/NN_solutions.ipynb`` with a title, the setup
cell, a cell tagged ``parameters`` holding ``PRESET = "auto"``, then
``run_notebook("NN_name.ipynb", PRESET=PRESET)`` and ``choose_preset(PRESET)`` (the banner)
from ``tkd.notebooks``; then per exercise its question (Markdown) and a solution
cell that ends by printing "Answer: ..." (``tests/test_notebooks.py`` checks all of this);
commit it without outputs (this script writes it so).
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
if str(FOLDER) not in sys.path:  # freshness.py and prose.py, beside this file
    sys.path.insert(0, str(FOLDER))


def kernel_env() -> dict:
    """Environment settings that make a run repeatable: torch on one CPU thread, no lesson run
    started by notebook 00 (``TKD_LIVE=0``: ``LIVE = "auto"`` then reads the committed lesson
    records), and the
    preset "auto" stands for: ``$TKD_PRESET`` if set, else "auto" (Fashion-MNIST where its
    files are, as the committed notebooks are executed; the digits elsewhere)."""
    preset = {"TKD_PRESET": os.environ["TKD_PRESET"]} if os.environ.get("TKD_PRESET") else {}
    return {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TKD_LIVE": "0", **preset}


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


def strip_outputs(nb):
    """``nb`` without outputs, execution counts or saved widget state (changed in place): how
    the solution notebooks are committed, so that their answers read only after a deliberate
    run."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)  # the widgets' saved state holds their outputs too
    return nb


def unanswered(nb) -> list[int]:
    """Cells of an executed solution notebook that open an exercise ("**N. ...") whose
    solution printed no "Answer:" (or printed an error)."""
    import re

    starts = [i for i, c in enumerate(nb.cells)
              if c.cell_type == "markdown" and re.search(r"^\*\*\d+\.", c.source, re.M)]
    missing = []
    for first, end in zip(starts, [*starts[1:], len(nb.cells)]):
        said = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                       for c in nb.cells[first:end] for o in c.get("outputs", [])
                       if o.get("output_type") != "error")
        if "Answer:" not in said:
            missing.append(first)
    return missing


def run_one(path: Path, handout: Path | None = None) -> str:
    """Execute the notebook at ``path`` and write it back. A lesson notebook is written with
    its outputs and the fingerprints of the records it read (``freshness.wrap``/``unwrap``);
    a solution notebook is checked (every exercise prints "Answer:") and written *without*
    outputs, an executed copy going to ``handout`` if given. Returns one line for the log;
    raises ``CellExecutionError`` or ``RuntimeError``, and then nothing is written."""
    import freshness

    start = time.perf_counter()
    nb = nbformat.read(path, as_version=4)
    solution = path.parent == SOLUTIONS
    if not solution:
        freshness.wrap(nb)
    execute(nb, path.parent)
    if solution:
        missing = unanswered(nb)
        if missing:
            raise RuntimeError(f"{path.name}: the exercises at cells {missing} print no Answer:")
        if handout is not None:
            handout.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, handout / path.name)
        nbformat.write(strip_outputs(nb), path)
        return (f"{path.name}: executed in {time.perf_counter() - start:.0f} s, every exercise "
                "answered; written without outputs"
                + (f" (executed copy in {handout / path.name})" if handout else ""))
    inputs = freshness.unwrap(nb)
    nbformat.write(nb, path)
    size = path.stat().st_size / 1e6
    return (f"{path.name}: executed in {time.perf_counter() - start:.0f} s, {size:.2f} MB, "
            f"{len(inputs)} inputs fingerprinted")


def _option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """``argv`` without ``name VALUE``, and VALUE (None when absent)."""
    if name not in argv:
        return argv, None
    i = argv.index(name)
    return argv[:i] + argv[i + 2:], argv[i + 1]


def main(argv: list[str]) -> int:
    from nbclient.exceptions import CellExecutionError

    if "--sync-setup" in argv:
        names = [a for a in argv if a != "--sync-setup"]
        for path in sync_setup_cells(resolve(names)):
            print(f"{path.name}: setup cell replaced by {SETUP_CELL.name}")
        return 0
    if "--sync-plan" in argv:
        import lab

        for _ in range(3):  # the plan counts the time notes it writes: until nothing changes
            changed = lab.sync()
            for path in changed:
                print(f"{path.name}: lab plan and time note rewritten (notebooks/lab.py)")
            if not changed:
                break
        return 0
    if "--check-prose" in argv:
        import prose

        found = 0
        for path in resolve([a for a in argv if a != "--check-prose"]):
            for index, number, why in prose.prose_check(path):
                print(f"{path.name} cell {index}: {number!r}: {why}")
                found += 1
        return 1 if found else 0
    argv, handout = _option(argv, "--handout")
    if "--stale" in argv or "--list-stale" in argv:
        import freshness

        names = [a for a in argv if a not in ("--stale", "--list-stale")]
        stale = freshness.stale_notebooks(resolve(names))
        for path, changed in stale.items():
            print(f"{path.name}: stale, {len(changed)} inputs changed, e.g. {changed[0]}")
        if not stale:
            print("every executed notebook's outputs come from the files as they are")
        if "--list-stale" in argv:
            return 1 if stale else 0
        paths = list(stale)
    else:
        paths = resolve(argv)
    failed = []
    for path in paths:
        try:
            print(run_one(path, Path(handout) if handout else None), flush=True)
        except (CellExecutionError, RuntimeError) as error:
            print(f"{path.name}: FAILED, not written\n{error}", file=sys.stderr)
            failed.append(path.name)
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
