"""The README's generated tables are the committed figures' own text, and its inline values
(sweep accuracies, the teacher's) are computed from the committed files, so neither can drift
from the records they were drawn from."""

from __future__ import annotations

import importlib.util
import re
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


@pytest.mark.parametrize("name", sorted(fill_readme.INLINE))
def test_each_readme_inline_value_is_what_its_file_gives(name):
    shown = fill_readme.block((ROOT / "README.md").read_text(), name)
    assert shown is not None, f"README has no inline value <!-- {name} --> … <!-- /{name} -->"
    assert shown == fill_readme.inline_value(name), (
        f"README's {name} is stale: run `python tools/fill_readme.py`")


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
        "at <!-- margin-line --> 88.72 % (1 seed), 89.66 % (5 seeds) <!-- /margin-line -->; "
        "teacher <!-- teacher-acc --> **92.61 %** <!-- /teacher-acc -->; T "
        "<!-- temperature-line --> kept <!-- /temperature-line -->")


INTERVAL = r"\[([+\-−]?\d+\.\d\d), ([+\-−]?\d+\.\d\d)\]"


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _intervals(text: str) -> list[tuple[float, float]]:
    return [(_number(lo), _number(hi)) for lo, hi in re.findall(INTERVAL, text)]


def test_every_interval_in_the_readme_prose_is_a_generated_one():
    """An interval quoted in the README's own sentences ("beats it by 0.87 [0.71, 1.03]") must
    be one that the committed figures hold (either sign), so prose cannot keep a number that
    new records changed."""
    readme = (ROOT / "README.md").read_text()
    prose = readme
    for name in fill_readme.BLOCKS:
        prose = re.sub(rf"<!-- {name} -->.*?<!-- /{name} -->", "", prose, flags=re.S)
    generated = {pair for path in sorted((ROOT / "figures").glob("*/*.md"))
                 for lo, hi in _intervals(path.read_text())
                 for pair in ((lo, hi), (round(-hi, 2), round(-lo, 2)))}
    quoted = _intervals(prose)
    assert len(quoted) > 20  # the README's answer quotes its intervals
    stale = [q for q in quoted if q not in generated]
    assert not stale, (f"README prose quotes intervals no committed figure holds: {stale}; "
                       "restate them from figures/*/paired.md and relations.md")
