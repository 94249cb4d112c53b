# Setup. In a checkout of the repository this cell does nothing. Elsewhere (Colab, a fresh
# machine) it shallow-clones the repository for its committed records and works in its
# notebooks/ folder, installs tkd if this kernel cannot import it, and prints what it did.
# Environment: TKD_REPO (the repository: URL, file:// URL or folder), TKD_HOME (the clone's
# folder), TKD_SOURCE (install tkd from this wheel, git URL or folder instead).
# Written once in notebooks/setup_cell.py; `python notebooks/execute.py --sync-setup` copies it.
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

TKD_REPO = os.environ.get("TKD_REPO") or "https://github.com/tkd-project/tkd"


def _records_in_reach() -> bool:
    """True when TKD_RESULTS is set or a results/ folder is at or above the working folder."""
    here = Path.cwd()
    return bool(os.environ.get("TKD_RESULTS")) or any(
        (folder / "results").is_dir() for folder in (here, *here.parents))


def _checkout() -> Path | None:
    """The folder at or above the working folder holding tkd's source, or None."""
    here = Path.cwd()
    return next((folder for folder in (here, *here.parents)
                 if (folder / "pyproject.toml").is_file() and (folder / "tkd").is_dir()), None)


def _clone() -> Path:
    """A shallow clone of TKD_REPO in TKD_HOME (default /content/tkd on Colab, else ~/tkd)."""
    default = "/content/tkd" if "google.colab" in sys.modules else Path.home() / "tkd"
    home = Path(os.environ.get("TKD_HOME") or default).expanduser()
    if not (home / "notebooks").is_dir():
        subprocess.run(["git", "clone", "-q", "--depth", "1", TKD_REPO, str(home)], check=True)
    return home


_done, _home = [], None
if not _records_in_reach():
    _home = _clone()
    os.chdir(_home / "notebooks")
    _done.append(f"working in {_home / 'notebooks'} (a clone of {TKD_REPO})")
if importlib.util.find_spec("tkd") is None:
    _source = os.environ.get("TKD_SOURCE") or str(_checkout() or _home or _clone())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", _source], check=True)
    importlib.invalidate_caches()
    _done.append(f"installed tkd from {_source}")
if "google.colab" in sys.modules:  # lets ipywidgets draw in Colab
    from google.colab import output

    output.enable_custom_widget_manager()
if _done:
    print("setup: " + "; ".join(_done))
