"""A committed notebook's outputs come from the committed records: the fingerprints of what it
read when it was executed (``metadata.tkd.inputs``, written by ``notebooks/execute.py``) are
those of the files as they are (``notebooks/freshness.py``). When records land, run
``python notebooks/execute.py --stale``: it re-executes only the notebooks whose inputs
changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.helpers import notebook_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))


freshness = notebook_tool("freshness")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_come_from_the_committed_records(path):
    nb = nbformat.read(path, as_version=4)
    inputs = freshness.recorded_inputs(nb)
    assert inputs, f"{path.name} records no inputs: run `python notebooks/execute.py {path.stem}`"
    changed = freshness.stale_inputs(nb)
    assert not changed, (f"{path.name} was executed on other records; run `python "
                         f"notebooks/execute.py --stale`. Changed: " + "; ".join(changed[:5]))


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_have_no_outputs_to_go_stale(path):
    nb = nbformat.read(path, as_version=4)
    assert not freshness.stale_notebooks([path])
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def _project(tmp_path: Path) -> Path:
    """A small project: two records of one experiment, a teacher, code and a figure."""
    root = tmp_path / "project"
    for seed in (1, 2):
        path = root / "results" / "fashion" / "kd-t4" / f"{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seed": seed, "test_acc": 0.9}))
    (root / "results" / "fashion" / "teacher").mkdir(parents=True)
    (root / "results" / "fashion" / "teacher" / "model.pt").write_bytes(b"weights")
    (root / "tkd").mkdir()
    (root / "tkd" / "x.py").write_text("x = 1\n")
    (root / "figures").mkdir()
    (root / "figures" / "a.png").write_bytes(b"png")
    return root


def _noted(root: Path) -> dict:
    """What a kernel notes when it globs kd-t4's records, reads them, the teacher, some code,
    and a file outside the project."""
    folder = root / "results" / "fashion" / "kd-t4"
    return {"read": [str(folder / "1.json"), str(folder / "2.json"),
                     str(root / "results" / "fashion" / "teacher" / "model.pt"),
                     str(root / "tkd" / "x.py"), str(root / "figures" / "a.png"),
                     "/usr/lib/python3/os.py"],
            "listed": [str(folder), str(root)]}


def test_inputs_are_the_data_read_not_code_nor_figures(tmp_path):
    root = _project(tmp_path)
    inputs = freshness.inputs_of(_noted(root), root)
    assert set(inputs) == {"results/fashion/kd-t4", "results/fashion/kd-t4/1.json",
                           "results/fashion/kd-t4/2.json",
                           "results/fashion/teacher/model.pt"}  # not the project's root
    assert inputs["results/fashion/kd-t4/1.json"].startswith("sha256:")
    assert inputs["results/fashion/kd-t4"].startswith("listing:")


@pytest.mark.parametrize("plant", ["changed", "landed", "left", "teacher"])
def test_a_planted_stale_notebook_is_caught(tmp_path, plant):
    """A notebook executed on the records as they were; then one record changes, a new seed
    lands in a folder it globbed, a record leaves, or the teacher's weights change: stale."""
    root = _project(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", text="kd-t4: 90.00 %\n")])])
    noted = _noted(root)
    noted["listed"].append(str(root / "results" / "fashion"))  # it also listed the experiments
    nb.metadata["tkd"] = {"inputs": freshness.inputs_of(noted, root)}
    assert "results/fashion" in nb.metadata["tkd"]["inputs"]
    assert freshness.stale_inputs(nb, root) == []
    # what a working tree has and a clone does not is no record: a run in progress (a .run
    # folder), the weights of a seed git ignores, an empty experiment folder; nothing is stale
    (root / "results" / "fashion" / "kd-t4" / "3.run").mkdir()
    (root / "results" / "fashion" / "kd-t4" / "2.pt").write_bytes(b"weights")
    (root / "results" / "fashion" / "kd-t8").mkdir()
    assert freshness.stale_inputs(nb, root) == []
    folder = root / "results" / "fashion" / "kd-t4"
    if plant == "changed":
        (folder / "2.json").write_text(json.dumps({"seed": 2, "test_acc": 0.91}))
    elif plant == "landed":
        (folder / "3.json").write_text(json.dumps({"seed": 3, "test_acc": 0.9}))
    elif plant == "left":
        (folder / "2.json").unlink()
    else:
        (root / "results" / "fashion" / "teacher" / "model.pt").write_bytes(b"other weights")
    changed = freshness.stale_inputs(nb, root)
    assert changed, plant
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert list(freshness.stale_notebooks([path], root)) == [path]


def test_a_planted_stale_committed_notebook_is_caught(tmp_path):
    """The same on a real notebook: 00 on a copy of the committed records passes; a copy with
    one more seed of a record it reads does not."""
    path = ROOT / "notebooks" / "00_quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    inputs = freshness.recorded_inputs(nb)
    assert inputs
    records = sorted(n for n in inputs if n.endswith(".json") and n.rsplit("/", 1)[0] in inputs)
    assert records, "00 reads records from folders it lists"
    for name in inputs:
        source = ROOT / name
        if source.is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp_path / name)
        elif source.is_dir():  # the folder's tree, names only
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            for entry in source.rglob("*"):
                copy = tmp_path / name / entry.relative_to(source)
                if entry.is_dir():
                    copy.mkdir(parents=True, exist_ok=True)
                elif not copy.exists():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    copy.touch()
    for name in inputs:  # the listings' entries as placeholders, the read files as they are
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, tmp_path / name)
    assert freshness.stale_inputs(nb, tmp_path) == []
    record = tmp_path / records[0]
    record.with_name("99.json").write_text(record.read_text())
    changed = freshness.stale_inputs(nb, tmp_path)
    assert changed and all(records[0].rsplit("/", 1)[0] in c for c in changed)


def test_execute_wraps_and_unwraps(tmp_path):
    """execute.py's recorder and collector: a kernel that reads a record and globs its folder
    records both; the two hidden cells are gone afterwards."""
    root = _project(tmp_path)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from pathlib import Path\n"
        f"folder = Path({str(root / 'results' / 'fashion' / 'kd-t4')!r})\n"
        "print(len(sorted(folder.glob('*.json'))), (folder / '1.json').read_text()[:9])\n"
        f"open({str(root / 'figures' / 'b.png')!r}, 'wb').write(b'x')")])
    freshness.wrap(nb)
    notebook_tool("execute").execute(nb, tmp_path, timeout=120)
    inputs = freshness.unwrap(nb, root)
    assert len(nb.cells) == 1 and "2 {" in nb.cells[0].outputs[0]["text"]
    assert set(inputs) == {"results/fashion/kd-t4", "results/fashion/kd-t4/1.json"}
    assert nb.metadata["tkd"]["inputs"] == inputs
