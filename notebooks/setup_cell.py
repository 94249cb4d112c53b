# Setup: silent in a checkout. On Colab or a fresh machine it installs tkd, clones the
# repository for its records and works in its notebooks/ folder (tkd.notebooks.setup).
import importlib.util, os, pathlib, subprocess, sys  # noqa: E401, I001
REPO = os.environ.get("TKD_REPO") or "https://github.com/tkd-project/tkd"
tkd_source = None  # where this cell installs tkd from, if the kernel cannot import it
if importlib.util.find_spec("tkd") is None:
    tkd_source = os.environ.get("TKD_SOURCE") or f"git+{REPO}"
    # a URL (git+https://...) as it is; a wheel or a folder on this machine as a file:// URL
    url = tkd_source if "://" in tkd_source else pathlib.Path(tkd_source).resolve().as_uri()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"tkd[notebooks] @ {url}"],
                   check=True)
    importlib.invalidate_caches()
from tkd.notebooks import setup  # noqa: I001
setup(REPO, installed_from=tkd_source)
