"""pyproject.toml and environment.yml name the same runtime dependencies."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda name where they differ
CONDA_EXTRAS = ("notebooks", "lab", "tensorboard")  # extras the conda environment installs


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in CONDA_EXTRAS for r in project["optional-dependencies"][extra]
                      if not r.startswith("tkd["))]
    wanted = {CONDA_NAMES.get(n, n): s for n, s in map(split, requirements)}  # extras last
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split(d) for d in env["dependencies"] if isinstance(d, str))
    conda.pop("pip", None)
    python = conda.pop("python")
    assert python == ">=" + project["requires-python"].lstrip(">=")
    assert conda == wanted


def test_torch_is_not_pinned_to_a_cpu_build():
    text = (ROOT / "pyproject.toml").read_text()
    assert "+cpu" not in text and "download.pytorch.org" not in text


def test_core_fits_colab_and_lab_is_an_extra():
    """The core is what ``tkd.losses``, ``tkd.train`` and the command line need. The notebooks'
    imports are the ``notebooks`` extra, which accepts Colab's ipywidgets 7.7 as is (pip keeps
    an installed version that satisfies a requirement); JupyterLab comes with ``tkd[lab]``,
    which holds ``notebooks`` and which ``dev`` (``make install``) includes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = dict(map(split, project["dependencies"]))
    assert not {"ipywidgets", "seaborn", "umap-learn", "jupyterlab"} & set(core)
    extras = project["optional-dependencies"]
    assert dict(map(split, extras["notebooks"])) == {
        "seaborn": ">=0.13", "umap-learn": ">=0.5.5", "ipywidgets": ">=7.7"}
    assert extras["lab"] == ["tkd[notebooks]", "jupyterlab>=4.0", "ipywidgets>=8.0"]
    assert "tkd[lab]" in extras["dev"]
    setup_cell = (ROOT / "notebooks" / "setup_cell.py").read_text()
    assert "tkd[notebooks] @ " in setup_cell  # Colab installs the notebooks' extra


def test_the_core_imports_without_the_notebook_extras():
    """``tkd.losses``, ``tkd.train`` and the command line import in a process where umap,
    seaborn and ipywidgets cannot be imported, and load none of them."""
    code = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("umap", "seaborn", "ipywidgets"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
import tkd.losses, tkd.train, tkd.cli
print(sorted(m for m in ("umap", "seaborn", "ipywidgets") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
