"""tkd.files: atomic writes (temporary file in the same folder + fsync + rename), and the one
place in the package that writes files directly."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from tkd.files import atomic_savefig, atomic_write_bytes, atomic_write_csv, atomic_write_json

TKD = Path(__file__).resolve().parents[1] / "tkd"


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.bin", b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_write_that_dies_midway_leaves_the_old_file(tmp_path, monkeypatch):
    path = atomic_write_bytes(tmp_path / "a.bin", b"old")

    def die(fd):
        raise KeyboardInterrupt  # e.g. Ctrl-C after the bytes, before the rename

    monkeypatch.setattr(os, "fsync", die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new and longer")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_savefig_and_csv(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert atomic_savefig(fig, tmp_path / "f.png", dpi=40).read_bytes()[:4] == b"\x89PNG"
    assert atomic_savefig(fig, tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    plt.close(fig)
    frame = pd.DataFrame({"a": [0.5, 1.25]})
    assert pd.read_csv(atomic_write_csv(frame, tmp_path / "t.csv")).equals(frame)
    assert not list(tmp_path.glob(".*.tmp"))


WRITES = re.compile(
    r"torch\.save\((?![^)]*,\s*(buffer|buf|io\.BytesIO\(\))\s*\))|"  # in memory is fine
    r"json\.dump\(|np\.save|\.write_(text|bytes)\(|"
    r"open\([^)]*['\"][^'\"]*[wax][^'\"]*['\"]|"
    r"\.to_csv\((?!\s*\)|\s*index=|\s*float_format=)|"
    r"\.savefig\((?!\s*(buffer|buf|io\.BytesIO))"
)


def test_every_file_writer_in_tkd_is_atomic():
    """Files are written only through tkd.files' atomic_* helpers (to a temporary file, then
    renamed); tkd/files.py is the one module allowed to write directly. Lists each direct write
    call found anywhere else in the package."""
    direct = []
    for path in sorted(TKD.rglob("*.py")):
        if path == TKD / "files.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if WRITES.search(line.split("#")[0]):
                direct.append(f"{path.relative_to(TKD)}:{number}: {line.strip()}")
    assert not direct, "non-atomic writes (use tkd.files.atomic_write_csv/" \
        "atomic_write_text/atomic_write_json/atomic_savefig):\n" + "\n".join(direct)


def test_atomic_write_json_is_sorted_and_indented(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"b": 1, "a": [1, 2]})
    assert path.read_text().startswith('{\n  "a": [')
    assert path.read_text().endswith("}\n")


def test_checkpoint_writes_through_tkd_files():
    """checkpoint.py keeps no writer of its own: the helpers live in tkd.files only."""
    import tkd.checkpoint

    assert tkd.checkpoint.atomic_write_bytes is atomic_write_bytes
    assert not hasattr(tkd.checkpoint, "atomic_savefig")
