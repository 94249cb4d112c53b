"""The README's generated tables are the committed figures' own text, so a table in the README
can never drift from the records it was drawn from."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fill_readme", ROOT / "tools" / "fill_readme.py")
fill_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fill_readme)


@pytest.mark.parametrize("name", sorted(fill_readme.BLOCKS))
def test_each_readme_table_is_the_figure_it_names(name):
    source = ROOT / fill_readme.BLOCKS[name]
    shown = fill_readme.block((ROOT / "README.md").read_text(), name)
    if not source.is_file():
        assert not shown, f"README block {name} shows a table whose file {source} is missing"
        return
    assert shown == source.read_text().strip(), (
        f"README block {name} differs from {fill_readme.BLOCKS[name]}: run "
        "`python -m tkd figures --preset fashion` and `python tools/fill_readme.py`")


def test_fill_replaces_a_block_and_leaves_the_rest(tmp_path):
    (tmp_path / "figures" / "fashion").mkdir(parents=True)
    (tmp_path / "figures" / "fashion" / "paired.md").write_text("| new |\n")
    text = "intro\n<!-- fashion-paired -->\n| old |\n<!-- /fashion-paired -->\noutro\n"
    filled = fill_readme.fill(text, tmp_path)
    assert filled == "intro\n<!-- fashion-paired -->\n| new |\n<!-- /fashion-paired -->\noutro\n"
    assert fill_readme.block(filled, "fashion-paired") == "| new |"
    assert fill_readme.block(filled, "fashion-table") is None
