"""tkd.notebooks: which preset "auto" means, TKD_PRESET, the banner, the saved students, the
setup the setup cell calls, and how a solution notebook runs its lesson."""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch

from tkd import data as tkd_data
from tkd import experiments as ex
from tkd import notebooks
from tkd import records as rc
from tkd import runs as rn
from tkd.data import IDX_FILES, load_dataset


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere: an empty TKD_DATA, no Debian folder, no TKD_PRESET."""
    monkeypatch.setenv("TKD_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(tkd_data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.delenv("TKD_PRESET", raising=False)
    monkeypatch.setattr(notebooks, "looks_online", lambda: False)
    return tmp_path / "data"


def _write_fashion(folder):
    """Four gzip files of the IDX layout (their content is never read by the search)."""
    folder.mkdir(parents=True)
    for stem in (s for pair in IDX_FILES.values() for s in pair):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(b"\x00"))


def test_auto_is_quick_without_fashion_mnist(no_fashion, capsys):
    assert notebooks.choose_preset() == "quick"
    out = capsys.readouterr().out
    assert "Preset quick" in out and "359 test images, one image = 0.28 points" in out
    assert "differ from the Fashion-MNIST verdict" in out


def test_auto_is_fashion_when_tkd_data_holds_it(no_fashion, capsys):
    _write_fashion(no_fashion / "fashion-mnist")
    assert notebooks.choose_preset("auto") == "fashion"
    assert str(no_fashion / "fashion-mnist") in capsys.readouterr().out


def test_a_torchvision_download_counts(no_fashion):
    _write_fashion(no_fashion / "fashion-mnist" / "FashionMNIST" / "raw")
    assert notebooks.fashion_source() == no_fashion / "fashion-mnist" / "FashionMNIST" / "raw"


def test_download_is_tried_only_when_online(no_fashion, monkeypatch):
    tried = []

    def fake_load(name, download):
        tried.append((name, download))
        _write_fashion(no_fashion / "fashion-mnist")

    monkeypatch.setattr(notebooks, "load_dataset", fake_load)
    assert notebooks.choose_preset(show=False) == "quick" and not tried  # offline: no attempt
    monkeypatch.setattr(notebooks, "looks_online", lambda: True)
    assert notebooks.choose_preset(show=False) == "fashion"
    assert tried == [("fashion-mnist", True)]


def test_tkd_preset_overrides_auto_but_not_an_explicit_choice(no_fashion, monkeypatch):
    monkeypatch.setenv("TKD_PRESET", "fashion")
    assert notebooks.choose_preset(show=False) == "fashion"
    assert notebooks.choose_preset("quick", show=False) == "quick"


def test_unknown_preset_is_refused(no_fashion):
    with pytest.raises(ValueError, match="unknown preset"):
        notebooks.choose_preset("nope", show=False)


def test_debian_package_is_found_when_installed():
    if not (tkd_data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    assert notebooks.fashion_source(download=False) is not None


def test_quick_note_counts_the_digits_test_split():
    assert len(load_dataset("digits").test) == notebooks.QUICK_TEST_IMAGES


def test_banner_is_markdown_in_a_kernel(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    monkeypatch.setattr("IPython.display.display", shown.append)
    notebooks._show("**x**")
    assert shown and shown[0].data == "**x**"


SHORT = dataclasses.replace(ex.PRESETS["quick"], name="short", epochs=1, teacher_epochs=1,
                            subset=100)


def test_saved_student_loads_a_current_one_trains_a_small_one_and_refuses_a_large_one(
        tmp_path, monkeypatch):
    monkeypatch.setitem(ex.PRESETS, "short", SHORT)
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path))
    data = ex.load_data(SHORT)
    messages = []
    trained = notebooks.saved_student(SHORT, "ce", 1, data, None, log=messages.append)
    assert not trained.training and "never saved" in messages[0]
    assert not list(tmp_path.rglob("*.pt"))  # trained in memory, nothing written
    monkeypatch.setattr(notebooks, "SMALL_TRAIN_SET", len(data.train) - 1)
    with pytest.raises(ValueError, match=r"never saved; run `python -m tkd reproduce "
                                         r"--preset short --experiments ce --seeds 1`"):
        notebooks.saved_student(SHORT, "ce", 1, data, None)
    rn.run_experiment(SHORT, "ce", 1, data)  # saves 1.pt with its record
    messages.clear()
    saved = notebooks.saved_student(SHORT, "ce", 1, data, None, log=messages.append)
    assert messages == ["ce: loaded 1.pt"] and not saved.training
    torch.testing.assert_close(saved.state_dict(), rn.load_student(SHORT, "ce", 1).state_dict())
    monkeypatch.setattr(notebooks, "SMALL_TRAIN_SET", len(data.train))
    data.train = data.train.subset(50)  # not the data the saved student was trained on
    notebooks.saved_student(SHORT, "ce", 1, data, None, log=messages.append)
    assert "other data" in messages[1]
    assert len(list(tmp_path.rglob("*.pt"))) == 1  # still only the saved one: nothing written


# ------------------------------------------------ the setup cell and the solution notebooks ----

def _git_repo(folder):
    """A one-commit git repository holding ``notebooks/`` and ``results/``; its file:// URL."""
    (folder / "notebooks").mkdir(parents=True)
    (folder / "notebooks" / "00_x.ipynb").write_text("{}")
    (folder / "results").mkdir()
    (folder / "results" / "keep").write_text("")
    for args in (["init", "-q"], ["add", "."],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)
    return folder.as_uri()


def test_setup_is_silent_where_records_are_in_reach(tmp_path, monkeypatch, capsys):
    (tmp_path / "results").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.delenv("TKD_RESULTS", raising=False)
    assert notebooks.setup("file:///nowhere") == [] and capsys.readouterr().out == ""
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path / "results"))
    assert notebooks.setup("file:///nowhere", installed_from="x.whl") == [
        "installed tkd from x.whl"]
    assert capsys.readouterr().out == "setup: installed tkd from x.whl\n"


def test_setup_clones_the_repository_and_works_in_its_notebooks(tmp_path, monkeypatch, capsys):
    repo = _git_repo(tmp_path / "src")
    away = tmp_path / "content"  # as /content on Colab: no results/ at or above it
    away.mkdir()
    monkeypatch.chdir(away)
    monkeypatch.delenv("TKD_RESULTS", raising=False)
    monkeypatch.setenv("TKD_HOME", str(tmp_path / "home"))
    if notebooks.records_in_reach():
        pytest.skip("a results/ folder above the temporary folder")
    done = notebooks.setup(repo)
    assert done == [f"working in {tmp_path / 'home' / 'notebooks'} (a clone of {repo})"]
    assert Path.cwd() == tmp_path / "home" / "notebooks"
    assert (tmp_path / "home" / "results" / "keep").is_file()
    assert capsys.readouterr().out.startswith("setup: working in")
    assert notebooks.setup(repo) == []  # now in the clone: nothing to do


def test_setup_cell_is_short_and_calls_setup():
    cell = (Path(__file__).resolve().parents[1] / "notebooks" / "setup_cell.py").read_text()
    assert len(cell.splitlines()) <= 14
    assert "setup(REPO, installed_from=tkd_source)" in cell


def test_run_notebook_runs_the_lesson_hidden_with_the_callers_parameters(tmp_path):
    """A solution notebook in ``solutions/`` runs its lesson notebook (one folder up): the
    lesson's variables are there, its outputs are not, and the caller's parameters win."""
    from nbclient import NotebookClient

    lesson = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("raise RuntimeError('the setup cell is skipped')"),
        nbformat.v4.new_code_cell("A = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("B = 2 * A\nprint('lesson output')")])
    (tmp_path / "solutions").mkdir()
    nbformat.write(lesson, tmp_path / "99_lesson.ipynb")
    solutions = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from tkd.notebooks import run_notebook\n"
        "path = run_notebook('99_lesson.ipynb', A=5)\nprint(B, path.name)")])
    NotebookClient(solutions, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "solutions")}}).execute()
    out = "".join(o.get("text", "") for o in solutions.cells[0].outputs)
    assert out == "10 99_lesson.ipynb\n"
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from tkd.notebooks import run_notebook\nrun_notebook('99_lesson.ipynb', "
        "skip_setup=False)")])
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="code cell 0 failed"):
        NotebookClient(bad, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path / "solutions")}}).execute()


def test_resolve_live_starts_the_lesson_run_unless_told_not_to(monkeypatch):
    """Notebook 00's LIVE = "auto": True in a student's kernel; False where TKD_LIVE=0 (the
    executed copies, the tests), so that Run All never trains there."""
    monkeypatch.delenv("TKD_LIVE", raising=False)
    assert notebooks.resolve_live() is True and notebooks.resolve_live(False) is False
    monkeypatch.setenv("TKD_LIVE", "0")
    assert notebooks.resolve_live("auto") is False and notebooks.resolve_live(True) is True


def test_lab_verdict_names_only_the_ordering_and_the_lab_methods():
    """The lab-track verdict: the paper's ordering and the methods 00-03 meet, never RKD, PKT,
    DKD, DIST or the standardized runs; one seed gives no interval."""
    import pandas as pd

    rows = [{"experiment": e, "seed": s, "test_acc": acc + 0.001 * s, "val_acc": acc}
            for e, acc in {"triplet": 0.89, "kd-t4": 0.90, "ce-wd0.007": 0.88,
                           "logit-mse-lr0.003": 0.885, "triplet-batch-semihard": 0.91,
                           "rkd": 0.90, "dkd-b4": 0.915}.items()
            for s in ((1, 2, 3) if e != "ce-wd0.007" else (1,))]
    text = notebooks.lab_verdict(pd.DataFrame(rows), "fashion")
    assert "`triplet` > `kd-t4`: **refuted**" in text
    assert "`triplet` > `ce-wd0.007`: not shown yet (1 common seed" in text
    assert "`triplet-batch-semihard` > `kd-t4`: **holds**" in text
    assert not any(n in text for n in ("rkd", "dkd", "pkt", "dist", "-ls"))


def test_start_lesson_run_copies_the_teacher_and_starts_the_cli_in_the_background(
        tmp_path, monkeypatch):
    """The command notebook 00 starts with LIVE = True: ``python -m tkd reproduce --preset
    lesson`` into a fresh folder holding a copy of the saved teacher (the process is faked)."""
    if not (tkd_data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    if not rc.teacher_path(ex.get_preset("lesson")).is_file():
        pytest.skip("needs the committed Fashion-MNIST teacher")
    started = []

    class FakeProcess:
        returncode = 0

        def __init__(self, command, stdout, stderr):
            started.append(command)

        def poll(self):
            return 0

        def wait(self):
            return 0

    monkeypatch.setattr(notebooks.subprocess, "Popen", FakeProcess)
    run = notebooks.start_lesson_run(["ce-wd0.007", "kd-t4"], [1], jobs=2, root=tmp_path)
    if isinstance(run, str):
        pytest.skip(run)  # the saved teacher is stale for this checkout's code
    (command,) = started
    assert command[1:6] == ["-m", "tkd", "reproduce", "--preset", "lesson"]
    assert command[command.index("--results") + 1] == str(tmp_path)
    assert command[command.index("--seeds") + 1:command.index("--jobs")] == ["1"]
    teacher = rc.teacher_path(ex.get_preset("lesson"), tmp_path)
    saved = rc.teacher_path(ex.get_preset("lesson"))
    assert teacher.is_file() and teacher.read_bytes() == saved.read_bytes()
    assert run.wait() == 0 and run.done() and "finished (exit status 0)" in run.status()


def test_an_unreachable_repository_says_what_to_do(tmp_path, monkeypatch):
    """Until the project has its public address, the clone fails with one clear message."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TKD_RESULTS", raising=False)
    monkeypatch.setenv("TKD_HOME", str(tmp_path / "clone"))
    with pytest.raises(SystemExit, match="Set TKD_REPO .* uploaded copy"):
        notebooks.setup(str(tmp_path / "no-such-repository"))
