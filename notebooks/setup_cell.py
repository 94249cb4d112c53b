# Setup: silent in a checkout. On Colab or a fresh machine it installs tkd, clones the
# repository for its records and works in its notebooks/ folder (tkd.notebooks.setup).
import importlib.util, os, subprocess, sys  # noqa: E401, I001
REPO = os.environ.get("TKD_REPO") or "https://github.com/tkd-project/tkd"
tkd_source = None  # where this cell installs tkd from, if the kernel cannot import it
if importlib.util.find_spec("tkd") is None:
    tkd_source = os.environ.get("TKD_SOURCE") or f"git+{REPO}"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", tkd_source])
    if done.returncode != 0:
        raise SystemExit(f"Could not install tkd from {tkd_source}. Set TKD_REPO (or REPO in "
                         "this cell) to the project's repository, or TKD_SOURCE to a wheel or "
                         "folder of tkd, or open the notebook from an uploaded copy of it.")
    importlib.invalidate_caches()
from tkd.notebooks import setup  # noqa: I001
_ = setup(REPO, installed_from=tkd_source)
