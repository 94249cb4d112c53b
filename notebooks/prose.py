"""Every number in a notebook's prose agrees with the output it is about.

A Markdown cell is *about* the outputs of the code cells next to it: those between it and the
neighbouring Markdown cells, :data:`REACH` Markdown cells either way (a paragraph introduces
the cell below it or reads the one above it). Each number of its prose must be printed there
(:func:`unsourced_numbers`), not merely somewhere in the notebook; a number that names a count
of seeds or runs must be printed there too, never excused as a constant. More claims are
checked against what they point at:

- "printed under the next/second/third code cell": that code cell prints something;
- a range spelled out ("one to three columns"): both ends are printed beside it;
- a figure's "diagonal", "dashed" or "dotted" line (or curve, or the diagonal $y = x$): a code
  cell beside it, or the tkd plotting function it calls, draws one;
- "N seeds" (or "N common seeds"): N is printed beside the word "seed" in an output nearby;
- "the verdict names `x`": `x` is in the nearby output that the verdict printed.

A paragraph that reads numbers printed elsewhere (an opening, a summary) says which cell it
reads: a Markdown cell tagged ``about:<tag>`` (cell metadata) is about the outputs of the code
cells tagged ``<tag>`` as well as its neighbours'. The paper's constants
(:data:`PROSE_CONSTANTS`) may stand anywhere.

``tests/test_prose_numbers.py`` wants no finding in any committed notebook, and plants wrong
ones; ``python notebooks/execute.py --check-prose 03`` lists them.
"""

from __future__ import annotations

import re
from pathlib import Path

REACH = 1  # Markdown cells either way whose code cells a paragraph may be about

PROSE_CONSTANTS = {
    "0": "zero",
    "3": "the paper's 3 x 3 convolutions",
    "0.5": "the teacher's dropout 0.5",
    "5": "the margin m = 5 (the authors' code)",
    "2": "the triplet weight 2 (the authors' code)",
    "4": "the temperature T = 4 of Hinton KD",
    "1": "T = 1, seed 1",
    "0.01": "the paper's learning rate and the weight decay of the student alone",
    "0.007": "the paper's weight decay of the distilled students",
    "0.9": "the paper's SGD momentum",
    "100": "the paper's batch size",
    "10": "the number of classes",
    "28": "Fashion-MNIST's 28 x 28 images",
    "8": "the digits' 8 x 8 images",
    "95": "95 % intervals",
    "83.75": "the teacher accuracy the authors' notebook records",
    "80.91": "the triplet student accuracy the authors' notebook records",
    "95.59": "the triplet student's training accuracy the authors' notebook records",
    "500": "the authors' 500 epochs",
    "120": "the lab's 120 minutes",
}
"""Numbers prose may state without an output beside them: the paper's constants. Never a count
of seeds or runs (:data:`_COUNTED`)."""

_REFERENCES = re.compile(r"^#+\s*References\b.*", re.S | re.M)
_SKIPPED = re.compile(
    r"<!-- (plan|time) -->.*?<!-- /\1 -->"  # written by notebooks/lab.py (--sync-plan), tested
    r"|`[^`]*`"  # code: identifiers and file names (kd-t4, results/fashion/1.json)
    r"|\$\$.*?\$\$|\$[^$]*\$"  # formulas: definitions, not measurements
    r"|\]\([^)]*\)|<[^>]+>|https?://\S+"  # link targets, HTML tags, addresses
    r"|arXiv:\S+|\b(?:19|20)\d\d\b"  # citations: identifiers and years
    r"|^\s*(?:[-*]\s+)?\**\d+\.(?=\s)"  # a numbered item or exercise title ("**2. The gap")
    r"|(?<![\d.,])\b0\d[a-z]?\b(?!\.\d)"  # a notebook's number: 00 ... 07, 03b (not 0.01)
    r"|§\s*\d+|\b[Ee]xercises?\s+\d+", re.S | re.M)
_PROSE_NUMBER = re.compile(r"(?<![\w.,/-])[-−+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w/-])")
_OUTPUT_NUMBER = re.compile(r"[-−+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_COUNTED = re.compile(r"\s*(?:common\s+|paired\s+|more\s+)?(?:seeds?|runs?)\b", re.I)
_ORDINAL = {"next": 1, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
_UNDER_CELL = re.compile(r"under the (next|first|second|third|fourth|fifth) code cell", re.I)
_NAMES = re.compile(r"\bnames\s+(?:the\s+\w+\s+)?`([^`]+)`")
_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10}
_SPELLED_RANGE = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:to|or)\s+"
                            r"(one|two|three|four|five|six|seven|eight|nine|ten)\b", re.I)
_FIGURE_WORDS = {  # a line the prose says a figure has -> what the code drawing it must hold
    "diagonal": re.compile(r"axline|diagonal|plot\(\s*\[?\s*(lo|low|0|lim)", re.I),
    "dashed": re.compile(r"--|dashed", re.I),
    "dotted": re.compile(r"dotted|linestyle=\":\"|ls=\":\"", re.I),
}
_FIGURE_LINE = re.compile(r"\b(diagonal|dashed|dotted)(?=\s+(?:line|curve|lines|curves)\b"
                          r"|\s*\$[^$]*=[^$]*\$)", re.I)


def _value(token: str) -> float:
    return float(token.replace(",", "").replace("−", "-").lstrip("+"))


def _text_of(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return "\n".join(data.get(k, "") for k in ("text/plain", "text/markdown", "text/html"))


def cell_output(cell) -> str:
    """What one code cell printed or displayed as text."""
    return "\n".join(_text_of(o) for o in cell.get("outputs", []))


def output_text(nb) -> str:
    """Everything a notebook's code cells printed or displayed as text, one string."""
    return "\n".join(cell_output(c) for c in nb.cells if c.cell_type == "code")


def prose_numbers(markdown: str) -> list[str]:
    """The numbers of a Markdown cell's prose, as written: code spans, formulas, links, HTML,
    citations and years, list and exercise numbers, notebook numbers (``03``, ``03b``) and a
    "References" section are not prose numbers; nor a digit inside a word (CIFAR-10, T4)."""
    text = _SKIPPED.sub(" ", _REFERENCES.sub("", markdown))
    return [m.group().rstrip(".") for m in _PROSE_NUMBER.finditer(text)]


def _matches(token: str, outputs: list[str]) -> bool:
    """Whether the prose number ``token`` is one of ``outputs``: an integer exactly, a decimal
    with d places when an output rounds to it at d places (prose 0.18 for a printed 0.176).
    A leading minus sign is not required on either side ("−1.03 points" or "by 1.03")."""
    value = abs(_value(token))
    places = len(token.split(".")[1]) if "." in token else 0
    for out in outputs:
        number = abs(_value(out))
        if places == 0 and "." not in out and number == value:
            return True
        if places and round(number, places) == round(value, places):
            return True
    return False


def about(nb, index: int, reach: int = REACH) -> list[int]:
    """The code cells the Markdown cell ``index`` is about: those up to ``reach`` Markdown
    cells before and after it, and those tagged ``<tag>`` when it is tagged ``about:<tag>``."""
    cells, found = nb.cells, []
    for step in (-1, 1):
        seen, i = 0, index + step
        while 0 <= i < len(cells):
            if cells[i].cell_type == "markdown":
                seen += 1
                if seen > reach:
                    break
            else:
                found.append(i)
            i += step
    tags = [t.split(":", 1)[1] for t in cells[index].metadata.get("tags", [])
            if t.startswith("about:")]
    found += [i for i, c in enumerate(cells) if c.cell_type == "code"
              and set(c.metadata.get("tags", [])) & set(tags)]
    return sorted(set(found))


_CALLED = re.compile(r"\b(plots|fg|figures|widgets)\.(\w+)\(|\b(_?\w+)\(")
_MODULES = {"plots": "tkd.plots", "fg": "tkd.figures", "figures": "tkd.figures",
            "widgets": "tkd.widgets"}


def drawing_code(source: str, depth: int = 3) -> str:
    """``source`` and the source of the tkd plotting functions it calls (``plots.plot_x(``,
    ``fg.plot_y(``), and of the functions of the same module those call, ``depth`` deep: what
    a figure drawn by ``source`` holds is written there."""
    import importlib
    import inspect

    seen, parts, todo = set(), [source], [(source, None)]
    for _ in range(depth):
        found = []
        for text, module in todo:
            for alias, name, bare in _CALLED.findall(text):
                target = _MODULES.get(alias) if alias else module
                name = name or bare
                if not target or (target, name) in seen:
                    continue
                seen.add((target, name))
                function = getattr(importlib.import_module(target), name, None)
                if ((inspect.isfunction(function) or inspect.isclass(function))
                        and function.__module__.startswith("tkd.")):  # not matplotlib's
                    code = inspect.getsource(function)
                    parts.append(code)
                    found.append((code, function.__module__))
        todo = found
    return "\n".join(parts)


def _code_cells_after(nb, index: int) -> list[int]:
    return [i for i in range(index + 1, len(nb.cells)) if nb.cells[i].cell_type == "code"]


def unsourced_numbers(nb, more_outputs: str = "", constants=None,
                      reach: int = REACH) -> list[tuple[int, str, str]]:
    """What ``nb``'s prose states that the outputs it is about (:func:`about`, plus
    ``more_outputs``: for a solution notebook, its lesson's) do not print:
    ``(cell index, the number or claim, why)`` for each. Empty when all agree."""
    constants = PROSE_CONSTANTS if constants is None else constants
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        near = "\n".join(cell_output(nb.cells[i]) for i in about(nb, index, reach))
        near += "\n" + more_outputs
        outputs = _OUTPUT_NUMBER.findall(near)
        text = _SKIPPED.sub(" ", _REFERENCES.sub("", cell.source))
        for match in _PROSE_NUMBER.finditer(text):
            token = match.group().rstrip(".")
            plain = token.replace(",", "").lstrip("+-−")
            counted = _COUNTED.match(text, match.end())
            context = " ".join(text[max(0, match.start() - 40):match.end() + 25].split())
            if counted:
                seeds = re.findall(rf"(?<![\d.])0*{re.escape(plain)}\s*(?:\(|common |paired )?"
                                   rf"(?:seeds?|runs?)\b|seeds?\W{{1,3}}{re.escape(plain)}\b"
                                   rf"|\|\s*{re.escape(plain)}\s*(?:\(|\|)", near, re.I)
                if not seeds:
                    found.append((index, token, f"a count of seeds or runs no output beside "
                                                f"it prints: “{context}”"))
                continue
            if plain in constants or _matches(token, outputs):
                continue
            found.append((index, token, f"printed by no output it is about: “{context}”"))
        for match in _UNDER_CELL.finditer(cell.source):
            after = _code_cells_after(nb, index)
            k = _ORDINAL[match.group(1).lower()]
            if len(after) < k or not cell_output(nb.cells[after[k - 1]]).strip():
                found.append((index, match.group(), "that code cell prints nothing"))
        for match in _SPELLED_RANGE.finditer(text):  # "one to three columns"
            low, high = (_WORDS[g.lower()] for g in match.groups())
            if not all(_matches(str(n), outputs) for n in (low, high)):
                found.append((index, match.group(), "a range no output it is about prints"))
        code = drawing_code("\n".join(nb.cells[i].source for i in about(nb, index, reach)))
        for word in dict.fromkeys(m.group(1).lower() for m in _FIGURE_LINE.finditer(cell.source)):
            if not _FIGURE_WORDS[word].search(code):
                found.append((index, word, "said of a figure that no code cell beside it draws"))
        for match in _NAMES.finditer(cell.source):
            if match.group(1) not in near:
                found.append((index, match.group(1), f"said to be named, but no output it is "
                                                     f"about names it: “{match.group()}”"))
    return found


def lesson_of(solutions: Path) -> Path:
    """The lesson notebook a solution notebook ``notebooks/solutions/NN_solutions.ipynb``
    answers: ``notebooks/NN_*.ipynb`` (``ValueError`` unless exactly one)."""
    stem = solutions.name.removesuffix("_solutions.ipynb")
    found = list(solutions.parent.parent.glob(f"{stem}_*.ipynb"))
    if len(found) != 1:
        raise ValueError(f"{solutions.name}: {len(found)} lesson notebooks {stem}_*.ipynb")
    return found[0]


def prose_check(path: Path) -> list[tuple[int, str, str]]:
    """:func:`unsourced_numbers` of the committed notebook at ``path``. A solution notebook
    is committed without outputs: its prose numbers are checked against its lesson's outputs,
    all of them (its questions quote the lesson)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    if path.parent.name == "solutions":
        lesson = output_text(nbformat.read(lesson_of(path), as_version=4))
        return unsourced_numbers(nb, lesson + "\n" + output_text(nb))
    return unsourced_numbers(nb)
