"""Atomic file writes: a kill leaves the old file or the new one, never half of one.

"Atomic" here means: the bytes go to a temporary file in the *same folder* as the target
(``.<name>.*.tmp``), are flushed and ``fsync``-ed to disk, and the temporary file is then
renamed over the target with ``os.replace`` (one atomic step on POSIX and Windows, since both
names lie on one file system); finally the folder is ``fsync``-ed so the rename itself is
durable. Every file tkd writes goes through the helpers here (a test checks that no other
module of the package writes files directly).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file (mkstemp gives 0o600)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file + fsync + rename; returns the path.

    A kill at any moment leaves either the old file or the new one at ``path`` (at worst a
    stray ``.<name>.*.tmp`` beside it), never a truncated file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write a text file (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(frame, path: str | Path, **to_csv_kwargs) -> Path:
    """``frame.to_csv(path, **kwargs)`` made atomic (default ``index=False``)."""
    to_csv_kwargs.setdefault("index", False)
    return atomic_write_text(path, frame.to_csv(**to_csv_kwargs))


def atomic_savefig(fig, path: str | Path, **savefig_kwargs) -> Path:
    """``fig.savefig(path)`` made atomic: rendered in memory, then written by rename.

    The format comes from the suffix (``.png``, ``.pdf``, ``.svg``) unless ``format=`` is given.
    """
    path = Path(path)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    buffer = io.BytesIO()
    fig.savefig(buffer, **savefig_kwargs)
    return atomic_write_bytes(path, buffer.getvalue())


def portable_path(path: str | None) -> str | None:
    """``path`` as written into results: relative to the working directory when under it,
    the temporary folder as ``<tmp>``, anything else by name under ``<out>`` (never an
    absolute machine path)."""
    if path is None or not os.path.isabs(path):
        return path
    for base, name in ((os.getcwd(), None), (tempfile.gettempdir(), "<tmp>")):
        relative = os.path.relpath(path, base)
        if not relative.startswith(".."):
            return relative if name is None else f"{name}/{relative}"
    return f"<out>/{os.path.basename(path)}"


def open_stream_log(path: str | Path):
    """A log file opened for writing that a child process streams into while it runs (its
    stdout, read live by ``tail``): a growing text, not a result, so it is written in place
    rather than atomically. Use as a context manager; returns the open file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w")


class BusyError(RuntimeError):
    """Another process holds the lock of a run: two writers into one run are refused."""


@contextlib.contextmanager
def run_lock(path: str | Path):
    """Hold an exclusive lock on the run whose main file is ``path`` (a hidden
    ``.<stem>.lock`` beside it) for the duration of the ``with`` block; raises
    :class:`BusyError` at once, naming the process, when another one holds it. The lock is
    the operating system's (``flock``): a process killed with SIGKILL releases it. Where
    ``fcntl`` is missing (Windows) runs are not locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    lock = path.with_name(f".{path.stem}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BusyError(
                f"{path.parent / path.stem} is being written by another process (pid "
                f"{holder}, lock {lock}): wait for it to finish, or stop it; two writers "
                "into one run would mix their files") from None
        try:  # the file may have been unlinked by its last holder since we opened it
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # still held: nobody else can be inside
        os.close(fd)


def check_writable_folder(folder: str | Path, create: bool = True) -> Path:
    """Create ``folder`` (and its parents) and write and remove a probe file in it;
    ``OSError`` naming the folder and the cause when that cannot be done (a file in the way, a
    read-only folder or file system, no space), so that a run finds out before any work.
    ``create=False`` creates nothing: the probe goes to the nearest folder that exists."""
    folder = Path(folder)
    for part in (folder, *folder.parents):
        if part.exists() and not part.is_dir():
            raise NotADirectoryError(f"{part} is a file, not a folder: the results cannot go to "
                                     f"{folder}; move the file away or choose another folder")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        where = next(p for p in (folder, *folder.parents) if p.is_dir()) if not create \
            else folder
        fd, probe = tempfile.mkstemp(dir=where, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OSError(error.errno, f"cannot write into {folder} ({error.strerror or error}): "
                      "choose a writable folder (--results / --out) or free space") from None
    return folder
