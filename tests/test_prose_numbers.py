"""Every number in a notebook's prose is true: it is printed by one of the notebook's code
cells (a solution notebook may also use its lesson's outputs), or it is one of the short list
of the paper's constants :data:`tkd.notebooks.PROSE_CONSTANTS` (the margin 5, T = 4, ...).

The committed notebooks are read as they are, outputs included: nothing is executed. Code
spans, formulas, links, citations, years, list and exercise numbers and notebook numbers are
not prose numbers (:func:`tkd.notebooks.prose_numbers`). To see what fails in one notebook:
``python notebooks/execute.py --check-prose 03``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tkd import notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "notebooks" / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_printed_by_the_notebook(path):
    bad = notebooks.prose_check(path)
    assert not bad, f"{path.name}: numbers in the prose that no output prints: " + "; ".join(
        f"cell {i}: {n!r} in “{context}”" for i, n, context in bad[:12])


def _notebook(markdown: str, printed: str):
    return nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(markdown),
        nbformat.v4.new_code_cell("x", execution_count=1, outputs=[
            nbformat.v4.new_output("stream", text=printed)])])


def test_a_planted_wrong_number_fails():
    printed = "kd-t4 test acc. 90.69 %, triplet 89.66 %; ratio to CE 0.176 (5.68x)\n"
    good = _notebook("Hinton KD reaches 90.69 %, the triplet 89.66 %: the KD term is "
                     "0.18 of CE, about 5.7 times weaker, at T = 4 and margin 5.", printed)
    assert notebooks.unsourced_numbers(good) == []
    wrong = _notebook("Hinton KD reaches 90.96 %, an order of magnitude (10.5 times) "
                      "weaker.", printed)
    assert [n for _, n, _ in notebooks.unsourced_numbers(wrong)] == ["90.96", "10.5"]


def test_a_planted_wrong_number_in_a_committed_notebook_fails():
    """The same check on a real notebook: its prose passes, one planted number does not."""
    path = ROOT / "notebooks" / "00_quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    before = notebooks.unsourced_numbers(nb)
    cell = next(c for c in nb.cells if c.cell_type == "markdown")
    cell.source += "\n\nThe teacher reaches 97.31 % on the test set."
    after = notebooks.unsourced_numbers(nb)
    assert [number for (_, number, _) in (x for x in after if x not in before)] == ["97.31"]


def test_what_is_not_a_prose_number():
    text = ("See notebook 03 and `03b`, CIFAR-10, `kd-t4` at $T^2 = 16$ ([link](a/1.json)), "
            "Hinton et al. (2015), arXiv:1503.02531, §3.\n\n**2. The gap.** It took 7.2 min.\n"
            "1. first item with 3 seeds at lr 0.01 (not notebook 01)\n\n## References\n"
            "- 1999, 42 pages")
    assert notebooks.prose_numbers(text) == ["7.2", "3", "0.01"]


def test_rounding_and_sign():
    printed = "-1.03 points [-1.38, -0.68]; 12,000 images; 4.988\n"
    assert notebooks.unsourced_numbers(_notebook(
        "by 1.03 points (−1.38 to −0.68), 12,000 images, a hinge of 4.99", printed)) == []
    assert [n for _, n, _ in notebooks.unsourced_numbers(_notebook(
        "a hinge of 4.9 and 12 thousand, 12,001 images", printed))] == ["4.9", "12", "12,001"]
