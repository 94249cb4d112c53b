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
CONDA_EXTRAS = ("tensorboard",)  # optional extras the conda environment installs as well


def split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", requirement).groups()
    return name.lower(), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in CONDA_EXTRAS for r in project["optional-dependencies"][extra])]
    wanted = {CONDA_NAMES.get(n, n): s for n, s in map(split, requirements)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split(d) for d in env["dependencies"] if isinstance(d, str))
    conda.pop("pip", None)
    python = conda.pop("python")
    assert python == ">=" + project["requires-python"].lstrip(">=")
    assert conda == wanted


def test_torch_is_not_pinned_to_a_cpu_build():
    text = (ROOT / "pyproject.toml").read_text()
    assert "+cpu" not in text and "download.pytorch.org" not in text
