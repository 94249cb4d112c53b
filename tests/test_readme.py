"""The README and the pages of docs/ show the committed figures' own text: their generated
tables are the figures' files, the README's headline table and the inline values (sweep
accuracies, the teacher's) are computed from the committed files, and every interval quoted in
their prose is one that a committed figure holds, so no page can drift from the records it was
drawn from. The README stays a front page that links every page of docs/."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fill_readme", ROOT / "tools" / "fill_readme.py")
fill_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fill_readme)

PAGES = fill_readme.pages(ROOT)
ALL_BLOCKS = {name: entry[0] for table in (fill_readme.BLOCKS, fill_readme.DERIVED,
                                           fill_readme.INLINE) for name, entry in table.items()}


def _text(page: str) -> str:
    return (ROOT / page).read_text()


@pytest.mark.parametrize("name", sorted(fill_readme.BLOCKS))
def test_each_table_is_the_figure_it_names(name):
    page, path = fill_readme.BLOCKS[name]
    source = ROOT / path
    shown = fill_readme.block(_text(page), name)
    if not source.is_file():
        assert not shown, f"{page} block {name} shows a table whose file {source} is missing"
        return
    assert shown == source.read_text().strip(), (
        f"{page} block {name} differs from {path}: run "
        "`python -m tkd figures --preset fashion` and `python tools/fill_readme.py`")


@pytest.mark.parametrize("name", sorted(fill_readme.DERIVED))
def test_each_computed_table_is_what_its_files_give(name):
    page = fill_readme.DERIVED[name][0]
    shown = fill_readme.block(_text(page), name)
    assert shown is not None, f"{page} has no block <!-- {name} --> … <!-- /{name} -->"
    expected = fill_readme.derived_value(name, ROOT)
    if expected is None:
        assert not shown, f"{page} block {name} shows a table whose files are missing"
        return
    assert shown == expected.strip(), f"{page}'s {name} is stale: run `python tools/fill_readme.py`"


@pytest.mark.parametrize("name", sorted(ALL_BLOCKS))
def test_each_block_is_on_its_page_once_and_nowhere_else(name):
    """A block copied to a second page would escape the checks above, which read its own."""
    for page in PAGES:
        count = page.read_text().count(f"<!-- {name} -->")
        own = page == ROOT / ALL_BLOCKS[name]
        assert count == (1 if own else 0), (
            f"{page.relative_to(ROOT)} holds <!-- {name} --> {count} times; it belongs on "
            f"{ALL_BLOCKS[name]} once")


def test_fill_replaces_a_block_and_leaves_the_rest(tmp_path):
    (tmp_path / "figures" / "fashion").mkdir(parents=True)
    (tmp_path / "figures" / "fashion" / "paired.md").write_text("| new |\n")
    text = "intro\n<!-- fashion-paired -->\n| old |\n<!-- /fashion-paired -->\noutro\n"
    filled = fill_readme.fill(text, tmp_path)
    assert filled == "intro\n<!-- fashion-paired -->\n| new |\n<!-- /fashion-paired -->\noutro\n"
    assert fill_readme.block(filled, "fashion-paired") == "| new |"
    assert fill_readme.block(filled, "fashion-table") is None


def test_fill_pages_fills_the_readme_and_every_docs_page(tmp_path):
    (tmp_path / "figures" / "fashion").mkdir(parents=True)
    (tmp_path / "figures" / "fashion" / "paired.md").write_text("| new |\n")
    (tmp_path / "figures" / "fashion" / "phases.md").write_text("| slopes |\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("<!-- fashion-paired -->old<!-- /fashion-paired -->\n")
    (tmp_path / "docs" / "a.md").write_text("<!-- fashion-phases -->old<!-- /fashion-phases -->\n")
    (tmp_path / "docs" / "b.md").write_text("no blocks\n")
    changed = fill_readme.fill_pages(tmp_path)
    assert changed == [tmp_path / "README.md", tmp_path / "docs" / "a.md"]
    assert fill_readme.block((tmp_path / "README.md").read_text(), "fashion-paired") == "| new |"
    assert fill_readme.block((tmp_path / "docs" / "a.md").read_text(),
                             "fashion-phases") == "| slopes |"
    assert fill_readme.fill_pages(tmp_path) == []


@pytest.mark.parametrize("name", sorted(fill_readme.INLINE))
def test_each_inline_value_is_what_its_file_gives(name):
    page = fill_readme.INLINE[name][0]
    shown = fill_readme.block(_text(page), name)
    assert shown is not None, f"{page} has no inline value <!-- {name} --> … <!-- /{name} -->"
    assert shown == fill_readme.inline_value(name), (
        f"{page}'s {name} is stale: run `python tools/fill_readme.py`")


def test_fill_writes_inline_values_from_their_files(tmp_path):
    (tmp_path / "figures" / "fashion").mkdir(parents=True)
    (tmp_path / "figures" / "fashion" / "margin_sweep.csv").write_text(
        "value,seeds,test_mean,test_std\n1.0,1,88.7233,\n5.0,5,89.658,0.04\n")
    (tmp_path / "results" / "fashion" / "teacher").mkdir(parents=True)
    (tmp_path / "results" / "fashion" / "teacher" / "1.json").write_text(
        '{"final": {"test_acc": 0.92614}}')
    text = ("at <!-- margin-line --> old <!-- /margin-line -->; teacher "
            "<!-- teacher-acc --> old <!-- /teacher-acc -->; T <!-- temperature-line --> "
            "kept <!-- /temperature-line -->")
    assert fill_readme.fill(text, tmp_path) == (
        "at <!-- margin-line --> 1: 88.72 % (1 seed), 5: 89.66 % (5 seeds) <!-- /margin-line -->; "
        "teacher <!-- teacher-acc --> **92.61 %** <!-- /teacher-acc -->; T "
        "<!-- temperature-line --> kept <!-- /temperature-line -->")


INTERVAL = r"\[([+\-−]?\d+\.\d\d), ([+\-−]?\d+\.\d\d)\]"


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _intervals(text: str) -> list[tuple[float, float]]:
    return [(_number(lo), _number(hi)) for lo, hi in re.findall(INTERVAL, text)]


def test_every_interval_in_the_prose_is_a_generated_one():
    """An interval quoted in the sentences of the README or of a docs page ("beats it by 0.87
    [0.71, 1.03]") must be one that the committed figures hold (either sign), so prose cannot
    keep a number that new records changed. The pages quote none at present: they point to the
    generated tables instead."""
    generated = {pair for path in sorted((ROOT / "figures").glob("*/*.md"))
                 for lo, hi in _intervals(path.read_text())
                 for pair in ((lo, hi), (round(-hi, 2), round(-lo, 2)))}
    quoted = {page.relative_to(ROOT): _intervals(fill_readme.strip_blocks(page.read_text()))
              for page in PAGES}
    assert generated  # the pattern finds the figures' intervals; the prose may quote none
    stale = {str(page): [q for q in found if q not in generated]
             for page, found in quoted.items()}
    stale = {page: found for page, found in stale.items() if found}
    assert not stale, (f"prose quotes intervals no committed figure holds: {stale}; "
                       "restate them from figures/*/paired.md and relations.md")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_page_that_links_every_docs_page():
    readme = _text("README.md")
    assert len(readme) <= 15_000, f"README.md has {len(readme):,} characters; move text to docs/"
    linked = {target.split("#")[0] for target in LINK.findall(readme)}
    missing = [f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))
               if f"docs/{p.name}" not in linked]
    assert not missing, f"README.md links no page {missing}"


@pytest.mark.parametrize("page", [p.relative_to(ROOT) for p in PAGES], ids=str)
def test_every_relative_link_resolves(page):
    """A figure or page moved with the text still shows: relative links name files that
    exist, seen from the page that holds them."""
    broken = []
    for target in LINK.findall((ROOT / page).read_text()):
        path = target.split("#")[0]
        if not path or re.match(r"[a-z]+:", path):
            continue
        if not ((ROOT / page).parent / path).exists():
            broken.append(target)
    assert not broken, f"{page} links files that do not exist: {broken}"
