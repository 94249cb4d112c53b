"""Every notebook runs top to bottom under the presets "quick" and "fashion"; committed
notebooks are clean and share one setup cell and one parameter convention; their exercises show
the question and a hint only, the answers live in the solution notebooks
(``notebooks/solutions/NN_solutions.ipynb``, run like the others after their lessons).

The notebooks run in name order in one kernel each, sharing a temporary results folder per
preset (``TKD_RESULTS``/``TKD_FIGURES``), so the committed ``results/`` and ``figures/`` are
never touched and later notebooks reuse the teacher and runs of earlier ones, as a user's
would. The preset reaches the notebooks as CI gives it: ``TKD_PRESET``, which
``tkd.notebooks.choose_preset`` puts in place of the parameters cell's ``PRESET = "auto"``.
"quick" starts from an empty folder; "fashion" (Debian's dataset-fashion-mnist) starts from a
copy of the committed ``results/fashion`` (its teacher takes hours on a CPU).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.helpers import notebook_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
SETUP_CELL = ROOT / "notebooks" / "setup_cell.py"
FASHION_FILES = Path("/usr/share/datasets/fashion-mnist")
TIMEOUT = 600  # seconds per cell
MAX_BYTES = 2_000_000  # committed with outputs, each notebook stays readable on GitHub


def _parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "each notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


def test_there_are_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    for expected in ("00_quickstart", "01_teacher", "02_baselines", "03_triplet_kd",
                     "04_margin_temperature"):
        assert expected in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_valid_and_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{path.name} holds an error output"
            assert output.get("name") != "stderr" or "Traceback" not in output.get("text", "")
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == SETUP_CELL.read_text().rstrip("\n"), (
        f"{path.name}: the first code cell is not notebooks/setup_cell.py; run "
        "`python notebooks/execute.py --sync-setup`")
    assert 'PRESET = "auto"' in nb.cells[_parameters_cell(nb)].source
    assert any("choose_preset(PRESET)" in c.source for c in code), (
        f"{path.name} must resolve PRESET with tkd.notebooks.choose_preset(PRESET)")
    assert all(c.get("execution_count") for c in code), f"{path.name} is not committed executed"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("What you will learn", "Prerequisites", "How long it takes", "Exercises"):
        assert heading in text, f"{path.name} lacks '{heading}'"


EXERCISE = re.compile(r"^\*\*(\d+)\.", re.M)  # an exercise's title: "**2. The gap ...**"


def _exercise_cells(nb) -> list[int]:
    """Indices of the cells between the "## Exercises" heading and the next "## " heading."""
    inside, cells = False, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and re.search(r"^## ", cell.source, re.M):
            heads = re.findall(r"^## (.*)", cell.source, re.M)
            inside = heads[-1].strip().startswith("Exercises")
            if inside:
                cells.append(i)
                continue
        if inside:
            cells.append(i)
    return cells


def _exercise_numbers(nb, cells=None) -> list[int]:
    cells = range(len(nb.cells)) if cells is None else cells
    return [int(n) for i in cells if nb.cells[i].cell_type == "markdown"
            for n in EXERCISE.findall(nb.cells[i].source.split("## Exercises")[-1])]


def _solutions_of(path: Path) -> Path:
    return ROOT / "notebooks" / "solutions" / f"{path.name.split('_')[0]}_solutions.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_show_the_question_and_a_hint_never_the_answer(path):
    """Under "## Exercises" only Markdown (each question, its hint folded); no code cell there,
    no solution anywhere in the notebook: the answers are in its solution notebook, which
    answers the same exercises."""
    nb = nbformat.read(path, as_version=4)
    cells = _exercise_cells(nb)
    numbers = _exercise_numbers(nb, cells)
    assert numbers, f"{path.name} has no exercises under '## Exercises'"
    assert all(nb.cells[i].cell_type == "markdown" for i in cells), (
        f"{path.name}: a code cell among the exercises (a solution belongs in "
        f"notebooks/solutions/)")
    for cell in nb.cells:
        assert not re.search(r"^#\s*Solution|<summary>\s*Solution", cell.source, re.M | re.I), (
            f"{path.name} shows a solution: {cell.source[:80]!r}")
    for i in cells:
        if EXERCISE.search(nb.cells[i].source):
            assert "<summary>Hint" in nb.cells[i].source, f"{path.name}: exercise without a hint"
    solutions = _solutions_of(path)
    assert solutions.is_file(), f"{path.name}: no {solutions.relative_to(ROOT)}"
    assert _exercise_numbers(nbformat.read(solutions, as_version=4)) == numbers


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_runs_its_lesson_and_answers_each_exercise(path):
    """A solution notebook: committed *without outputs* (its answers read only after a
    deliberate run: ``python notebooks/execute.py 03_solutions --handout DIR``), the setup cell
    first, a parameters cell, its lesson run by ``tkd.notebooks.run_notebook`` with the
    caller's PRESET, and under each exercise a solution cell; executed (the slow test below, and
    execute.py), each exercise prints "Answer: ..." (a sentence to check)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == SETUP_CELL.read_text().rstrip("\n")
    assert 'PRESET = "auto"' in nb.cells[_parameters_cell(nb)].source
    lessons = [p for p in NOTEBOOKS if _solutions_of(p) == path]
    assert len(lessons) == 1, f"{path.name}: no lesson notebook"
    assert any(f'run_notebook("{lessons[0].name}", PRESET=PRESET)' in c.source for c in code)
    assert any("choose_preset(PRESET)" in c.source for c in code)
    assert "widgets" not in nb.metadata, f"{path.name} keeps its widgets' state (their outputs)"
    assert not any(c.outputs or c.execution_count for c in code), (
        f"{path.name} is committed with outputs: its answers would read on GitHub; "
        "`python notebooks/execute.py` writes it without them")
    assert path.stat().st_size < MAX_BYTES
    starts = [i for i, c in enumerate(nb.cells)
              if c.cell_type == "markdown" and EXERCISE.search(c.source)]
    assert starts, f"{path.name} answers no exercise"
    for first, end in zip(starts, [*starts[1:], len(nb.cells)]):
        said = "".join(c.source for c in nb.cells[first:end] if c.cell_type == "code")
        assert "Answer:" in said, f"{path.name}: exercise at cell {first} prints no 'Answer:'"


def test_the_lab_plan_fits_its_reading_model_and_120_minutes():
    """The lab track (notebooks/lab.py, LAB_TRACK) is 120 minutes through 00-03; every slot's
    minutes hold what the reading model gives its sections (words, figures, tables, cells,
    their measured run time, discussion); notebook 00 shows the plan and 00-03 their time
    note exactly as lab.py writes them (``python notebooks/execute.py --sync-plan``)."""
    lab = notebook_tool("lab")
    rows = lab.plan()
    assert rows[0]["from"] == 0 and rows[-1]["to"] == 120
    assert {r["notebook"] for r in rows} - {"—"} == {"00", "01", "02", "03"}
    for row in rows:
        assert row["model (min)"] <= row["minutes"], (
            f"slot {row['from']}–{row['to']} ({row['notebook']}: {row['sections']}) needs "
            f"{row['model (min)']} min by the reading model; move a section after the lab")
    assert lab.sync(write=False) == [], "run `python notebooks/execute.py --sync-plan`"
    left = lab.going_further()
    assert all(left[n] for n in ("01", "02", "03")), "each lab notebook keeps some for later"


def test_run_all_never_waits_for_the_lesson_run():
    """00 starts the lesson run by default (LIVE = "auto") and no cell waits for it; a marker
    says where to stop and come back."""
    nb = nbformat.read(ROOT / "notebooks" / "00_quickstart.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'LIVE = "auto"' in nb.cells[_parameters_cell(nb)].source
    assert ".wait()" not in code and "resolve_live(LIVE)" in code
    marks = [i for i, c in enumerate(nb.cells) if "Stop here" in c.source]
    turn = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Your turn"))
    assert marks == [turn - 1]


@pytest.fixture(scope="module", params=["quick", "fashion"])
def sandbox(request, tmp_path_factory):
    """Per preset: temporary results/figures roots, ``TKD_PRESET`` and a single-thread torch
    for the kernels; yields ``(root, preset)``."""
    preset = request.param
    if preset == "fashion" and not (FASHION_FILES / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    root = tmp_path_factory.mktemp(f"notebooks-{preset}")
    if preset == "fashion":
        shutil.copytree(ROOT / "results" / "fashion", root / "results" / "fashion",
                        ignore=shutil.ignore_patterns("*.run"))
    keys = ("TKD_RESULTS", "TKD_FIGURES", "TKD_PRESET", "OMP_NUM_THREADS", "MPLBACKEND",
            "TKD_LIVE")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(TKD_RESULTS=str(root / "results"), TKD_FIGURES=str(root / "figures"),
                      TKD_PRESET=preset, OMP_NUM_THREADS="1", MPLBACKEND="Agg", TKD_LIVE="0")
    yield root, preset
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _banner(nb) -> str:
    """The Markdown that choose_preset displayed (the preset banner), or ""."""
    return "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells
                   for o in c.get("outputs", []) if o.output_type == "display_data")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, sandbox):
    from nbclient import NotebookClient

    root, preset = sandbox
    if path in SOLUTIONS and preset == "fashion":
        pytest.skip("a solution notebook reruns its lesson first (run_notebook), whose fashion "
                    "run is tested above: slow work once, so solutions run under quick only")
    nb = nbformat.read(path, as_version=4)
    # The kernel starts in the sandbox, so a notebook that derives paths from the working
    # directory (tkd.records.project_root) cannot touch the committed folders either.
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(root)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert f"Preset `{preset}`" in _banner(nb), f"{path.name} did not run under {preset}"
    if path in SOLUTIONS:
        missing = _execute_module().unanswered(nb)
        assert not missing, f"{path.name}: the exercises at cells {missing} print no 'Answer:'"
    assert (root / "results" / preset / "teacher" / "model.pt").is_file()


# ----------------------------------------------- committed numbers == a fresh execution ----

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
PATH = re.compile(r"\S*/\S*")  # file paths hold digits that differ from machine to machine


def _compared_numbers(nb) -> list[list[float]]:
    """The numbers printed by each cell tagged ``compare`` (stream and text/plain outputs)."""
    cells = []
    for cell in nb.cells:
        if "compare" not in cell.metadata.get("tags", []):
            continue
        text = ""
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text += output.text
            elif "data" in output:
                text += output.data.get("text/plain", "")
        cells.append([float(n) for n in NUMBER.findall(PATH.sub(" ", text))])
    return cells


def _execute_module():
    spec = importlib.util.spec_from_file_location("execute", ROOT / "notebooks" / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("name", ["02_baselines", "03_triplet_kd"])
def test_committed_numbers_match_a_fresh_execution(name, tmp_path, monkeypatch):
    """The worked examples are deterministic (saved checkpoints, fixed seeds, CPU, one thread):
    re-executing the notebook, under the preset it was committed with, on a copy of that
    preset's committed records prints the same numbers."""
    committed = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    expected = _compared_numbers(committed)
    assert expected and all(expected), f"{name} has no numbers in cells tagged 'compare'"
    preset = "fashion" if "Preset `fashion`" in _banner(committed) else "quick"
    if preset == "fashion" and not (FASHION_FILES / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)")
    shutil.copytree(ROOT / "results" / preset, tmp_path / "results" / preset,
                    ignore=shutil.ignore_patterns("*.run"))
    monkeypatch.setenv("TKD_PRESET", preset)
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TKD_FIGURES", str(tmp_path / "figures"))
    fresh = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    _execute_module().execute(fresh, tmp_path, timeout=TIMEOUT)
    got = _compared_numbers(fresh)
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(expected, got)):
        assert len(a) == len(b), f"compare cell {i}: {len(a)} numbers committed, {len(b)} now"
        bad = [(x, y) for x, y in zip(a, b) if not math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-12)]
        assert not bad, f"compare cell {i}: committed vs fresh {bad[:5]}"


def test_sync_setup_cells_replaces_only_the_first_code_cell(tmp_path):
    """execute.sync_setup_cells: the first code cell becomes setup_cell.py word for word
    (outputs cleared, execution count kept); every other cell is left as it was."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("old setup", execution_count=1,
                                  outputs=[nbformat.v4.new_output("stream", text="x\n")]),
        nbformat.v4.new_code_cell("print(1)", execution_count=2)])
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    execute = _execute_module()
    assert execute.sync_setup_cells([path]) == [path]
    synced = nbformat.read(path, as_version=4)
    assert synced.cells[1].source == SETUP_CELL.read_text().rstrip("\n")
    assert synced.cells[1].outputs == [] and synced.cells[1].execution_count == 1
    assert [c.source for c in synced.cells[::2]] == ["# title", "print(1)"]
    assert execute.sync_setup_cells([path]) == []  # already in step: not rewritten
