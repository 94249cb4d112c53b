"""Which records a notebook's outputs come from, and whether they are still the committed ones.

``notebooks/execute.py`` runs two hidden cells around every notebook it executes: the first
installs a Python audit hook (:data:`RECORDER`) in the kernel that notes every file opened for
reading and every folder listed; the last (:data:`COLLECTOR`) prints what was noted. Of those,
the notebook's **inputs** are the files and folders inside the project that are data, not code
(:func:`is_input`: ``results/``, ``notebooks/lab_timing.json``, ...; never ``.py``, ``.ipynb``,
``figures/`` or ``.venv/``). Their fingerprints (:func:`fingerprint`: a file's sha256, a
folder's sorted list of finished entries, so a record that lands in a folder a notebook globbed
counts) are written into the notebook's metadata, ``metadata["tkd"]["inputs"]``, and the two
hidden cells are removed again.

:func:`stale_inputs` compares a committed notebook's recorded fingerprints with the files as
they are now: ``tests/test_freshness.py`` wants none changed, and
``python notebooks/execute.py --stale`` re-executes only the notebooks that have any.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "tkd"  # nb.metadata["tkd"]["inputs"]: {relative path: fingerprint}

RECORDER = '''\
# hidden cell (notebooks/freshness.py): note what this kernel reads
import os as _tkd_os, sys as _tkd_sys  # noqa: E401
_TKD_READ, _TKD_LISTED = set(), set()
_TKD_WRITE = _tkd_os.O_WRONLY | _tkd_os.O_RDWR | _tkd_os.O_CREAT | _tkd_os.O_APPEND
def _tkd_audit(event, args):
    if event == "open":
        path, mode, flags = args
        if not isinstance(path, (str, bytes, _tkd_os.PathLike)):
            return
        if mode is not None and any(c in str(mode) for c in "wax+"):
            return
        if mode is None and flags and flags & _TKD_WRITE:
            return
        _TKD_READ.add(_tkd_os.path.abspath(_tkd_os.fsdecode(path)))
    elif event in ("os.listdir", "os.scandir"):
        path = args[0]
        if path is None:
            path = "."
        if isinstance(path, (str, bytes, _tkd_os.PathLike)):
            _TKD_LISTED.add(_tkd_os.path.abspath(_tkd_os.fsdecode(path)))
_tkd_sys.addaudithook(_tkd_audit)'''

COLLECTOR = '''\
# hidden cell (notebooks/freshness.py): print what this kernel read
import json as _tkd_json
print(_tkd_json.dumps({"read": sorted(_TKD_READ), "listed": sorted(_TKD_LISTED)}))'''

_NOT_DATA_SUFFIXES = {".py", ".pyc", ".ipynb", ".toml", ".cfg", ".md", ".txt", ".png", ".svg"}
_NOT_DATA_FOLDERS = {".venv", ".git", "figures", "__pycache__", "tkd", "tests",
                     ".ipynb_checkpoints"}


def is_input(path: Path, root: Path = ROOT) -> bool:
    """Whether ``path`` (absolute) is data a notebook's outputs depend on: inside ``root``,
    not code, not a notebook, not a figure the notebook writes, not the virtual environment."""
    try:
        relative = Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    if not relative.parts or set(relative.parts) & _NOT_DATA_FOLDERS:
        return False
    return relative.suffix not in _NOT_DATA_SUFFIXES


def _transient(name: str) -> bool:
    """An entry of a folder that is not a finished record: a run in progress, a hidden or
    temporary file."""
    return name.startswith(".") or name.endswith((".run", ".tmp", ".lock", ".partial"))


def _counted(path: Path) -> bool:
    """Whether a folder's entry ``path`` counts in its listing: a finished file other than
    weights (``.pt``: a clone holds only some of them; a notebook that loads one reads it, and
    the read is fingerprinted), or a folder holding such a file at any depth. So a listing is
    the same in a working tree with a grid's extra weights and empty run folders as in a fresh
    clone of what was committed (git keeps no empty folder)."""
    if _transient(path.name):
        return False
    if path.is_file():
        return path.suffix != ".pt"
    return path.is_dir() and any(_counted(p) for p in path.iterdir())


def fingerprint(path: Path) -> str:
    """``sha256:<16 hex>`` of a file's bytes; ``listing:<16 hex>`` of a folder's sorted
    counted entries (:func:`_counted`); ``missing`` if neither exists, or for a folder with
    nothing counted in it (a clone would not have it)."""
    path = Path(path)
    if path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return f"sha256:{digest[:16]}"
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if _counted(p))
        if not names:
            return "missing"
        return "listing:" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    return "missing"


def inputs_of(noted: dict, root: Path = ROOT) -> dict[str, str]:
    """The fingerprints of what a kernel noted (``{"read": [...], "listed": [...]}``, the
    :data:`COLLECTOR`'s output) that are inputs (:func:`is_input`), keyed by path relative to
    ``root``; a file opened for reading that does not exist is left out."""
    found = {}
    for kind in ("read", "listed"):
        for name in noted.get(kind, []):
            path = Path(name)
            if not is_input(path, root) or not path.exists():
                continue
            if kind == "read" and not path.is_file():
                continue
            found[path.resolve().relative_to(root.resolve()).as_posix()] = fingerprint(path)
    return dict(sorted(found.items()))


def wrap(nb) -> None:
    """Put the recorder first and the collector last in ``nb`` (changed in place)."""
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_code_cell(RECORDER))
    nb.cells.append(nbformat.v4.new_code_cell(COLLECTOR))


def unwrap(nb, root: Path = ROOT) -> dict[str, str]:
    """Remove the two cells :func:`wrap` added from the executed ``nb``, write its inputs
    (:func:`inputs_of`) into ``nb.metadata["tkd"]["inputs"]`` and return them."""
    recorder, collector = nb.cells[0], nb.cells[-1]
    assert recorder.source == RECORDER and collector.source == COLLECTOR, "not a wrapped notebook"
    text = "".join(o.get("text", "") for o in collector.outputs if o.output_type == "stream")
    noted = json.loads(text.strip().splitlines()[-1])
    del nb.cells[-1], nb.cells[0]
    inputs = inputs_of(noted, root)
    nb.metadata.setdefault(KEY, {})["inputs"] = inputs
    return inputs


def recorded_inputs(nb) -> dict[str, str] | None:
    """The inputs recorded when ``nb`` was executed, or None if it carries none."""
    return nb.metadata.get(KEY, {}).get("inputs")


def stale_inputs(nb, root: Path = ROOT) -> list[str]:
    """What changed since ``nb`` was executed, one line each ("results/fashion/kd-t4:
    listing:ab.. then, listing:cd.. now"); ``["no record of its inputs"]`` for a notebook
    executed without :func:`wrap`. Empty: its outputs come from the files as they are."""
    inputs = recorded_inputs(nb)
    if inputs is None:
        return ["no record of its inputs (executed before notebooks/freshness.py)"]
    changed = []
    for name, then in inputs.items():
        now = fingerprint(Path(root) / name)
        if now != then:
            changed.append(f"{name}: {then} then, {now} now")
    return changed


def stale_notebooks(paths, root: Path = ROOT) -> dict[Path, list[str]]:
    """Of the notebooks at ``paths``, those with outputs whose inputs changed, with what
    changed (:func:`stale_inputs`). A notebook committed without outputs has nothing to go
    stale."""
    import nbformat

    found = {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            continue
        changed = stale_inputs(nb, root)
        if changed:
            found[Path(path)] = changed
    return found
