"""pyproject.toml and environment.yml name the same runtime dependencies."""

import re
from pathlib import Path

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda name where they differ
CONDA_EXTRAS = ("lab", "tensorboard")  # extras the conda environment installs as well


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in CONDA_EXTRAS for r in project["optional-dependencies"][extra])]
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
    """Colab has ipywidgets 7.7 and no JupyterLab: the core must accept that environment as is
    (pip keeps an installed version that satisfies a requirement), JupyterLab comes with
    ``tkd[lab]``, which ``dev`` includes."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = dict(map(split, project["dependencies"]))
    assert core["ipywidgets"] == ">=7.7" and "jupyterlab" not in core
    extras = project["optional-dependencies"]
    assert dict(map(split, extras["lab"])) == {"jupyterlab": ">=4.0", "ipywidgets": ">=8.0"}
    assert "tkd[lab]" in extras["dev"]
