# Setup: silent in a checkout. On Colab or a fresh machine it installs tkd, clones the
# repository for its records and works in its notebooks/ folder (tkd.notebooks.setup).
import importlib.util, os, subprocess, sys  # noqa: E401, I001
REPO = os.environ.get("TKD_REPO") or "https://github.com/tkd-project/tkd"
tkd_source = None  # where this cell installs tkd from, if the kernel cannot import it
if importlib.util.find_spec("tkd") is None:
    tkd_source = os.environ.get("TKD_SOURCE") or f"git+{REPO}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", tkd_source], check=True)
    importlib.invalidate_caches()
from tkd.notebooks import setup  # noqa: I001
setup(REPO, installed_from=tkd_source)
