"""The notebooks' install cell, as on Colab: a kernel that cannot import tkd installs it from
``TKD_SOURCE`` (here a wheel built from this checkout) and notebook 00 then runs unedited.

Offline and fast: the fresh virtual environment gets no packages of its own except tkd. Its
dependencies (torch, pandas, ipykernel, pip, ...) come from the test interpreter's
site-packages through a folder of symbolic links with every tkd entry left out (the editable
install's finder and ``.pth`` files, ``tkd*.dist-info``), so the kernel sees tkd only once the
install cell has put the wheel into the new environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_quickstart.ipynb"
TIMEOUT = 600  # seconds per cell

pytestmark = pytest.mark.slow


def _is_tkd(name: str) -> bool:
    lowered = name.lower()
    return (lowered.startswith(("tkd", "__editable__", "_tkd", "__pycache__"))
            or lowered.endswith(".pth"))


def _build_wheel(folder: Path) -> Path:
    """A wheel of this checkout, built from a copy (the source tree gets no build files)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "tkd", source / "tkd", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(folder / "dist"), str(source)],
                   check=True, env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    (wheel,) = (folder / "dist").glob("tkd-*.whl")
    return wheel


def _fresh_venv(folder: Path) -> Path:
    """A new venv whose only view of the test interpreter's packages skips tkd; its python."""
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
        if not _is_tkd(entry.name):
            (view / entry.name).symlink_to(entry)
    (site / "_deps.pth").write_text(f"{view}\n")
    return python


def _kernel(folder: Path, python: Path) -> str:
    """A kernelspec for ``python`` in a private JUPYTER_PATH; returns its name."""
    spec = folder / "jupyter" / "kernels" / "tkd-fresh"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    return "tkd-fresh"


def _run(nb, kernel: str, cwd: Path):
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=TIMEOUT, kernel_name=kernel, record_timing=False,
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def test_install_cell_installs_the_wheel_and_notebook_00_runs(tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    wheel = _build_wheel(tmp_path)
    python = _fresh_venv(tmp_path)
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('tkd') is None)"], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                           cwd=tmp_path)
    assert probe.stdout.strip() == "True", "the fresh venv must not see tkd before the install"

    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("TKD_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # offline: every dependency is already there
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    kernel = _kernel(tmp_path, python)
    work = tmp_path / "colab"  # outside the source tree, as /content is on Colab
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    install = nb.cells[1]
    assert 'TKD_SOURCE = ""' in install.source

    # Nothing given, nothing installed: the cell stops with a message saying what to do.
    alone = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(install.source)])
    with pytest.raises(CellExecutionError, match="TKD_SOURCE"):
        _run(alone, kernel, work)

    # The user sets TKD_SOURCE to the wheel; the rest of the notebook runs unedited.
    install.source = install.source.replace('TKD_SOURCE = ""', f'TKD_SOURCE = "{wheel}"')
    nb.cells.append(nbformat.v4.new_code_cell("import tkd\nprint(tkd.__file__)"))
    _run(nb, kernel, work)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    where = Path(nb.cells[-1].outputs[0].text.strip())
    assert where.is_relative_to(tmp_path / "venv"), where
    assert (tmp_path / "results" / "quick" / "teacher" / "model.pt").is_file()
