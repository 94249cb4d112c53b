"""The notebooks as on Colab: a kernel with Colab's widget and notebook versions and no
JupyterLab, whose working folder (like /content) is outside any checkout and which cannot import
tkd. The notebooks' setup cell must install tkd there without upgrading ipywidgets, clone the
repository for its committed records and work in its ``notebooks/`` folder, so that notebooks
00-06 run unedited (preset "quick", as ``TKD_PRESET`` asks).

The repository is a temporary ``git clone`` of this one (committed files only, as CI sees
them), reached as ``TKD_REPO=file://...``; tkd is installed from a wheel built from that clone
(``TKD_SOURCE``). The fresh virtual environment gets Colab's pins from PyPI (skipped when PyPI
cannot be reached); every other package (torch, pandas, pip, ...) comes from the test
interpreter's site-packages through a folder of symbolic links that leaves out tkd, the pinned
packages and JupyterLab. The same environment then runs ``tests/test_widgets.py``: the widgets
under ipywidgets 7.7.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [p.name for p in sorted((ROOT / "notebooks").glob("*.ipynb"))] + [
    f"solutions/{p.name}" for p in sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))]
TIMEOUT = 600  # seconds per cell
# Colab's versions (2024-25 runtimes) of what decides how notebooks and widgets behave.
COLAB_PINS = ["ipywidgets==7.7.1", "notebook==6.5.5", "ipykernel==6.17.1", "matplotlib==3.8.4"]
LEFT_OUT = {"ipywidgets", "widgetsnbextension", "notebook", "ipykernel", "ipykernel_launcher",
            "matplotlib", "mpl_toolkits", "pylab", "jupyter_lsp"}  # and tkd, jupyterlab*

pytestmark = pytest.mark.slow


def _left_out(name: str) -> bool:
    """Whether a site-packages entry stays out of the view: tkd (and the editable install's
    files), the packages pinned to Colab's versions, JupyterLab."""
    stem = name.lower().split("-")[0].removesuffix(".py")
    return (stem in LEFT_OUT or stem.startswith(("tkd", "_tkd", "__editable__", "__pycache__",
                                                  "jupyterlab"))
            or name.endswith(".pth"))


def _git(*args: str, cwd: Path | None = None) -> None:
    subprocess.run(["git", *args], check=True, cwd=cwd, capture_output=True)


def _build_wheel(source: Path, out: Path) -> Path:
    """A wheel of tkd from ``source`` (offline: the build uses this interpreter's setuptools)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(out), str(source)],
                   check=True, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    (wheel,) = out.glob("tkd-*.whl")
    return wheel


def _colab_venv(folder: Path) -> Path:
    """A venv with Colab's pins and a view of this interpreter's other packages; its python."""
    env = folder / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    view = folder / "deps"
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not _left_out(entry.name):
            (view / entry.name).symlink_to(entry)
    (site / "_deps.pth").write_text(f"{view}\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *COLAB_PINS],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not install Colab's versions from PyPI: {done.stderr[-500:]}")
    return python


def _versions(python: Path) -> dict:
    """Installed versions in the venv; None for a package it cannot import."""
    code = ("import importlib.metadata as m, json\n"
            "def v(n):\n"
            "    try: return m.version(n)\n"
            "    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({n: v(n) for n in ('ipywidgets', 'notebook', 'ipykernel', "
            "'matplotlib', 'jupyterlab', 'tkd')}))")
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True,
                         cwd=python.parents[2])
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """The Colab-like machine: its venv's kernel, the environment the notebooks get, and a
    working folder outside the repository. Yields a dict of paths."""
    tmp = tmp_path_factory.mktemp("colab")
    repo = tmp / "repo"
    _git("clone", "-q", "--no-hardlinks", str(ROOT), str(repo))  # HEAD: committed files only
    wheel = _build_wheel(repo, tmp / "dist")
    python = _colab_venv(tmp)
    assert _versions(python)["tkd"] is None, "the fresh venv must not see tkd before the setup"
    spec = tmp / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like", "language": "python"}))
    content = tmp / "content"  # the working folder, as /content on Colab
    content.mkdir()
    env = {"JUPYTER_PATH": str(tmp / "jupyter"), "TKD_REPO": repo.as_uri(),
           "TKD_HOME": str(tmp / "home"), "TKD_SOURCE": str(wheel), "TKD_PRESET": "quick",
           "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    saved = {k: os.environ.get(k) for k in (*env, "PYTHONPATH", "TKD_RESULTS", "TKD_FIGURES")}
    for key in ("PYTHONPATH", "TKD_RESULTS", "TKD_FIGURES"):
        os.environ.pop(key, None)
    os.environ.update(env)
    yield {"python": python, "content": content, "home": tmp / "home", "repo": repo}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _run(nb, cwd: Path):
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=TIMEOUT, kernel_name="colab", record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_setup_cell_installs_tkd_and_clones_the_records(colab):
    setup = (colab["repo"] / "notebooks" / "setup_cell.py").read_text()
    probe = nbformat.v4.new_code_cell(
        "import os, importlib.util, ipywidgets, tkd\n"
        "print(os.getcwd()); print(tkd.__file__); print(ipywidgets.__version__)\n"
        "print(importlib.util.find_spec('jupyterlab'))")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(setup), probe,
        nbformat.v4.new_code_cell(setup)])  # a second run: nothing to do
    _run(nb, colab["content"])
    said = _text(nb.cells[0])
    assert said.startswith("setup: working in") and "installed tkd from" in said, said
    cwd, where, widgets, lab = _text(probe).split()
    assert Path(cwd) == colab["home"] / "notebooks"
    assert Path(where).is_relative_to(colab["python"].parents[1]), where
    assert widgets == "7.7.1" and lab == "None"
    assert _text(nb.cells[2]) == ""  # in the clone, with tkd installed: silent
    assert (colab["home"] / "results" / "quick" / "teacher" / "model.pt").is_file()
    versions = _versions(colab["python"])
    assert versions["ipywidgets"] == "7.7.1", "installing tkd changed Colab's ipywidgets"
    assert versions["jupyterlab"] is None and versions["tkd"] == "0.1.0"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_as_on_colab(name, colab):
    """Each committed notebook, unedited, started in the working folder (/content on Colab)."""
    nb = nbformat.read(colab["repo"] / "notebooks" / name, as_version=4)
    _run(nb, colab["content"])
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]
    assert _versions(colab["python"])["ipywidgets"] == "7.7.1"


def test_widgets_under_ipywidgets_7(colab):
    """tests/test_widgets.py in the Colab-like venv (ipywidgets 7.7.1), on the clone."""
    done = subprocess.run([str(colab["python"]), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_widgets.py"], cwd=colab["repo"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
