"""Copy the generated tables of ``figures/`` into the marked blocks of the README and of the
pages in ``docs/``.

Each block ``<!-- name -->`` … ``<!-- /name -->`` named in :data:`BLOCKS` is replaced by the file
it names, as written by ``python -m tkd figures --preset fashion`` (and the other presets); each
block of :data:`DERIVED` (none at present) and each inline value of :data:`INLINE`
(a sweep's accuracies, the teacher's) is computed from the files it reads. Every block lives on
one page, named beside it. Run from the repository root after regenerating the figures:
``python tools/fill_readme.py``. ``tests/test_readme.py`` checks that every page is current.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from tkd.files import atomic_write_text
from tkd.records import load_record

ROOT = Path(__file__).resolve().parents[1]

BLOCKS = {
    "fashion-table": ("docs/results.md", "figures/fashion/comparison.md"),
    "fashion-paired": ("docs/results.md", "figures/fashion/paired.md"),
    "fashion-verdict": ("docs/results.md", "figures/fashion/verdict.md"),
    "fashion-phases": ("docs/results.md", "figures/fashion/phases.md"),
    "fashion-schedule": ("docs/schedule.md", "figures/fashion/schedule.md"),
    "fashion-bn-table": ("docs/schedule.md", "figures/fashion-bn/beside.md"),
    "fashion-relations": ("docs/relations.md", "figures/fashion/relations.md"),
    "fashion-modern": ("docs/modern.md", "figures/fashion/modern.md"),
    "fashion-claims": ("README.md", "figures/fashion/claims.md"),
    "fashion-fair": ("docs/fair.md", "figures/fashion/fair.md"),
    "fashion-choices": ("docs/fair.md", "figures/fashion/choices.md"),
    "fashion-exploratory": ("docs/fair.md", "figures/fashion/exploratory.md"),
    "fashion-timeline": ("docs/claims.md", "figures/timeline.md"),
    "lesson-table": ("docs/lesson.md", "figures/lesson/beside.md"),
    "quick-table": ("docs/digits.md", "figures/quick/comparison.md"),
    "quick-paired": ("docs/digits.md", "figures/quick/paired.md"),
}
"""Block name -> (the page that shows it, the generated file it shows), both relative to the
repository root."""


def sweep_line(path: Path) -> str:
    """A sweep CSV (``value, seeds, test_mean, …``) as "1: 88.78 % (1 seed), 2: 89.09 % (2
    seeds), …", each accuracy after the swept value it belongs to."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return ", ".join(f"{float(r['value']):g}: {float(r['test_mean']):.2f} % ({r['seeds']} "
                     f"seed{'s' * (r['seeds'] != '1')})" for r in rows)


def teacher_accuracy(path: Path) -> str:
    """The final test accuracy in a teacher's record, as "**92.61 %**"."""
    return f"**{100 * load_record(path)['final']['test_acc']:.2f} %**"


INLINE = {
    "margin-line": ("docs/results.md", "figures/fashion/margin_sweep.csv", sweep_line),
    "temperature-line": ("docs/results.md", "figures/fashion/temperature_sweep.csv", sweep_line),
    "teacher-acc": ("docs/results.md", "results/fashion/teacher/1.json", teacher_accuracy),
}
"""Inline value name -> (the page that shows it, the file it is computed from, how)."""

DERIVED: dict = {}
"""Block name -> (the page that shows it, how its text is computed from the repository root)."""


def pages(root: Path = ROOT) -> list[Path]:
    """Every page that may hold blocks: README.md and the markdown pages of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def inline_value(name: str, root: Path = ROOT) -> str | None:
    """The text the inline value ``name`` of :data:`INLINE` should show, None when its file is
    missing."""
    _, path, compute = INLINE[name]
    return compute(root / path) if (root / path).is_file() else None


def derived_value(name: str, root: Path = ROOT) -> str | None:
    """The text the block ``name`` of :data:`DERIVED` should show, None when its files are
    missing."""
    return DERIVED[name][1](root)


def block(text: str, name: str) -> str | None:
    """The body of block ``name`` in ``text``, stripped; None when the text has no such
    block."""
    found = re.search(rf"<!-- {name} -->\n?(.*?)<!-- /{name} -->", text, flags=re.S)
    return found.group(1).strip() if found else None


def strip_blocks(text: str) -> str:
    """``text`` without the generated blocks of :data:`BLOCKS` and :data:`DERIVED` (the prose
    around them stays)."""
    for name in (*BLOCKS, *DERIVED):
        text = re.sub(rf"<!-- {name} -->.*?<!-- /{name} -->", "", text, flags=re.S)
    return text


def fill(text: str, root: Path = ROOT) -> str:
    """``text`` with every block of :data:`BLOCKS` whose file exists replaced by that file, every
    block of :data:`DERIVED` by what its files give, and every inline value of :data:`INLINE`
    by what its file gives; blocks that ``text`` does not hold are skipped."""
    for name, (_, path) in BLOCKS.items():
        source = root / path
        if not source.is_file() or block(text, name) is None:
            continue
        text = _replace(text, name, f"\n{source.read_text().strip()}\n")
    for name in DERIVED:
        if block(text, name) is None:
            continue
        value = derived_value(name, root)
        if value is not None:
            text = _replace(text, name, f"\n{value.strip()}\n")
    for name in INLINE:
        value = inline_value(name, root)
        if value is not None and block(text, name) is not None:
            text = _replace(text, name, f" {value} ")
    return text


def _replace(text: str, name: str, body: str) -> str:
    """``text`` with the body of its block ``name`` replaced by ``body``."""
    new = f"<!-- {name} -->{body}<!-- /{name} -->"
    return re.sub(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda _: new, text, flags=re.S)


def fill_pages(root: Path = ROOT) -> list[Path]:
    """Fill every page of :func:`pages` in place; returns the pages that changed."""
    changed = []
    for page in pages(root):
        before = page.read_text()
        after = fill(before, root)
        if after != before:
            atomic_write_text(page, after)
            changed.append(page)
    return changed


if __name__ == "__main__":
    changed = fill_pages()
    names = ", ".join(str(p.relative_to(ROOT)) for p in changed)
    sys.stdout.write(f"updated: {names}\n" if changed else "README.md and docs/ already current\n")
