"""Copy the generated tables of ``figures/`` into the README's marked blocks.

Each block ``<!-- name -->`` … ``<!-- /name -->`` of README.md named in :data:`BLOCKS` is
replaced by the file it names, as written by ``python -m tkd figures --preset fashion`` (and
``--preset lesson``); each inline value named in :data:`INLINE` (a sweep's accuracies, the
teacher's) is computed from the files it reads. Run from the repository root after
regenerating the figures: ``python tools/fill_readme.py``. ``tests/test_readme.py`` checks
that the README is current.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from tkd.files import atomic_write_text
from tkd.results import load_record

ROOT = Path(__file__).resolve().parents[1]

BLOCKS = {
    "fashion-table": "figures/fashion/comparison.md",
    "fashion-paired": "figures/fashion/paired.md",
    "fashion-verdict": "figures/fashion/verdict.md",
    "fashion-phases": "figures/fashion/phases.md",
    "fashion-schedule": "figures/fashion/schedule.md",
    "fashion-relations": "figures/fashion/relations.md",
    "fashion-bn-table": "figures/fashion-bn/beside.md",
    "lesson-table": "figures/lesson/beside.md",
    "quick-table": "figures/quick/comparison.md",
    "quick-paired": "figures/quick/paired.md",
}
"""README block name -> the generated file (relative to the repository root) it shows."""


def sweep_line(path: Path) -> str:
    """A sweep CSV (``value, seeds, test_mean, …``) as "88.72 % (3 seeds), 89.09 % (3 seeds), …"."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return ", ".join(f"{float(r['test_mean']):.2f} % ({r['seeds']} seed{'s' * (r['seeds'] != '1')})"
                     for r in rows)


def teacher_accuracy(path: Path) -> str:
    """The final test accuracy in a teacher's record, as "**92.61 %**"."""
    return f"**{100 * load_record(path)['final']['test_acc']:.2f} %**"


INLINE = {
    "margin-line": ("figures/fashion/margin_sweep.csv", sweep_line),
    "temperature-line": ("figures/fashion/temperature_sweep.csv", sweep_line),
    "teacher-acc": ("results/fashion/teacher/1.json", teacher_accuracy),
}
"""README inline value name -> (the file it is computed from, how)."""


def inline_value(name: str, root: Path = ROOT) -> str | None:
    """The text the inline value ``name`` of :data:`INLINE` should show, None when its file is
    missing."""
    path, compute = INLINE[name]
    return compute(root / path) if (root / path).is_file() else None


def block(text: str, name: str) -> str | None:
    """The body of block ``name`` in ``text``, stripped; None when the README has no such
    block."""
    found = re.search(rf"<!-- {name} -->\n?(.*?)<!-- /{name} -->", text, flags=re.S)
    return found.group(1).strip() if found else None


def fill(text: str, root: Path = ROOT) -> str:
    """``text`` with every block of :data:`BLOCKS` whose file exists replaced by that file, and
    every inline value of :data:`INLINE` by what its file gives."""
    for name, path in BLOCKS.items():
        source = root / path
        if not source.is_file() or block(text, name) is None:
            continue
        text = _replace(text, name, f"\n{source.read_text().strip()}\n")
    for name in INLINE:
        value = inline_value(name, root)
        if value is not None and block(text, name) is not None:
            text = _replace(text, name, f" {value} ")
    return text


def _replace(text: str, name: str, body: str) -> str:
    """``text`` with the body of its block ``name`` replaced by ``body``."""
    new = f"<!-- {name} -->{body}<!-- /{name} -->"
    return re.sub(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda _: new, text, flags=re.S)


if __name__ == "__main__":
    readme = ROOT / "README.md"
    before = readme.read_text()
    after = fill(before)
    if after != before:
        atomic_write_text(readme, after)
    sys.stdout.write("README.md " + ("updated\n" if after != before else "already current\n"))
