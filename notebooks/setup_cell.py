# Setup: silent in a checkout; elsewhere installs tkd and clones its records (tkd.notebooks.setup).
import importlib.util, os, pathlib, subprocess, sys  # noqa: E401, I001
REPO = os.environ.get("TKD_REPO") or "https://github.com/tkd-project/tkd"
tkd_source = None  # where this cell installs tkd from, if the kernel cannot import it
if importlib.util.find_spec("tkd") is None:
    tkd_source = os.environ.get("TKD_SOURCE") or f"git+{REPO}"
    url = tkd_source if "://" in tkd_source else pathlib.Path(tkd_source).resolve().as_uri()
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                       f"tkd[notebooks] @ {url}"]).returncode:
        raise SystemExit(f"Cannot install tkd from {tkd_source}: set TKD_REPO (or REPO here) or "
                         "TKD_SOURCE (a wheel, a folder), or open an uploaded copy of the project.")
    importlib.invalidate_caches()
from tkd.notebooks import setup  # noqa: I001
_ = setup(REPO, installed_from=tkd_source)
