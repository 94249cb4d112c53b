"""Copy the generated tables of ``figures/`` into the README's marked blocks.

Each block ``<!-- name -->`` … ``<!-- /name -->`` of README.md named in :data:`BLOCKS` is
replaced by the file it names, as written by ``python -m tkd figures --preset fashion`` (and
``--preset lesson``). Run from the repository root after regenerating the figures:
``python tools/fill_readme.py``. ``tests/test_readme.py`` checks that the README is current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tkd.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]

BLOCKS = {
    "fashion-table": "figures/fashion/comparison.md",
    "fashion-paired": "figures/fashion/paired.md",
    "fashion-verdict": "figures/fashion/verdict.md",
    "fashion-phases": "figures/fashion/phases.md",
    "fashion-schedule": "figures/fashion/schedule.md",
    "fashion-relations": "figures/fashion/relations.md",
    "lesson-table": "figures/lesson/beside.md",
}
"""README block name -> the generated file (relative to the repository root) it shows."""


def block(text: str, name: str) -> str | None:
    """The body of block ``name`` in ``text``, stripped; None when the README has no such
    block."""
    found = re.search(rf"<!-- {name} -->\n?(.*?)<!-- /{name} -->", text, flags=re.S)
    return found.group(1).strip() if found else None


def fill(text: str, root: Path = ROOT) -> str:
    """``text`` with every block of :data:`BLOCKS` whose file exists replaced by that file."""
    for name, path in BLOCKS.items():
        source = root / path
        if not source.is_file() or block(text, name) is None:
            continue
        new = f"<!-- {name} -->\n{source.read_text().strip()}\n<!-- /{name} -->"
        text = re.sub(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda _, new=new: new, text,
                      flags=re.S)
    return text


if __name__ == "__main__":
    readme = ROOT / "README.md"
    before = readme.read_text()
    after = fill(before)
    if after != before:
        atomic_write_text(readme, after)
    sys.stdout.write("README.md " + ("updated\n" if after != before else "already current\n"))
