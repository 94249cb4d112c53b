"""The two-hour lab through notebooks 00-03: its plan, timed by a reading model.

**The reading model** (what a slot of the lab costs a class, :func:`model_minutes`):

- prose at :data:`WORDS_A_MINUTE` words a minute (the slow end of 150-200: a class reads
  on a projector, with formulas);
- :data:`FIGURE_MINUTES` per figure and :data:`TABLE_MINUTES` per table an output shows
  (a displayed DataFrame, a Markdown table printed by a cell) or the prose holds;
- :data:`CELL_MINUTES` per code cell (read it, run it) plus the seconds its cells ran when
  ``notebooks/time_lab.py`` last timed the lab (``lab_timing.json``), shared among the
  notebook's cells by count;
- :data:`DISCUSSION_MINUTES` per slot for questions and discussion.

A slot is a list of a notebook's ``## `` sections (:data:`LAB_TRACK`); the sections no slot
covers are for after the lab ("Going further"), with the exercises. ``tests/test_notebooks.py``
checks that every slot's model minutes fit its minutes, that the slots add up to 120, and that
notebook 00 shows this plan as written by :func:`plan_markdown` (``python notebooks/execute.py
--sync-plan`` writes it, and the "How long it takes" line of 00-03, into the notebooks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
LAB_TIMING = FOLDER / "lab_timing.json"  # written by notebooks/time_lab.py
TOTAL = 120

WORDS_A_MINUTE = 150
FIGURE_MINUTES = 1.5
TABLE_MINUTES = 1.0
CELL_MINUTES = 0.5
DISCUSSION_MINUTES = 3.0

LAB_TRACK = [
    # (notebook, its sections read in the slot (the start of each "## " heading; "Setup" is the
    #  cells before the first heading), minutes, what the class does, what runs in the background)
    ("00", ["Setup", "The lab track"], 11,
     "Run All: the lesson run starts in the background and nothing waits for it; read the "
     "opening and this plan", "lesson run starts"),
    ("00", ["Knowledge distillation", "The paper's idea", "Worked example", "The answer"], 19,
     "read; the triplet by hand; the comparison and the paper's ordering; stop at the marker",
     "lesson run"),
    ("01", ["Setup", "The inputs", "Why logits rather than labels", "Summary"], 24,
     "read, run; one right and one wrong image; the runner-up table", "lesson run"),
    ("02", ["Setup", "Three ways to learn", "One training step", "Why logit regression",
            "Summary"], 23,
     "read, run the hand-written losses and the training step", "lesson run (ending)"),
    ("03", ["Setup", "The triplet and the pair", "An early student", "Why the paper's triplet",
            "Summary"], 29,
     "read, run the triplet step and the miners", "—"),
    ("00", ["Your turn", "Summary"], 11,
     "back to 00 at the marker: 'Your turn' reads the lesson run just trained", "—"),
    ("—", ["Wrap-up"], 3, "questions; pick two exercises for homework", "—"),
]
"""The 120-minute lab, in order. A section is named by the start of its ``## `` heading."""

_HEADING = re.compile(r"^##\s+(.*)$", re.M)
BLOCK = "<!-- {0} -->\n{1}\n<!-- /{0} -->"  # a block written by :func:`sync`
_PLAN_BLOCK = re.compile(r"<!-- plan -->.*?<!-- /plan -->", re.S)
_SKIP_BLOCK = re.compile(r"\n?<!-- lab-skip -->.*?<!-- /lab-skip -->", re.S)  # not read aloud
_REFERENCES = re.compile(r"^#+\s*References\b.*", re.S | re.M)
_MD_TABLE = re.compile(r"^\|.*\|\s*\n\|[-:| ]+\|\s*$", re.M)


def notebook_file(number: str, folder: Path = FOLDER) -> Path:
    (path,) = folder.glob(f"{number}_*.ipynb")
    return path


def _outputs(cell) -> tuple[int, int]:
    """(figures, tables) a code cell shows."""
    figures = tables = 0
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "image/png" in data or "image/svg+xml" in data:
            figures += 1
        elif "<table" in data.get("text/html", "") or _MD_TABLE.search(
                data.get("text/markdown", "")):
            tables += 1
    return figures, tables


def sections(path: Path) -> list[dict]:
    """Per ``## `` section of the notebook (the cells before the first one: "Setup"): its
    heading, words of prose, figures, tables and code cells. References are not counted."""
    import nbformat

    found = [{"section": "Setup", "words": 0, "figures": 0, "tables": 0, "code cells": 0}]
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            text = _SKIP_BLOCK.sub("", _REFERENCES.sub("", cell.source))
            if _PLAN_BLOCK.search(text):  # the plan: one table, its words not read aloud
                text = _PLAN_BLOCK.sub("", text)
                found[-1]["tables"] += 1
            parts = re.split(r"(?m)^(?=##\s)", text)
            for part in parts:
                heading = _HEADING.match(part)
                if heading:
                    found.append({"section": heading.group(1).strip(), "words": 0,
                                  "figures": 0, "tables": 0, "code cells": 0})
                found[-1]["words"] += len(part.split())
                found[-1]["tables"] += len(_MD_TABLE.findall(part))
        else:
            figures, tables = _outputs(cell)
            found[-1]["figures"] += figures
            found[-1]["tables"] += tables
            found[-1]["code cells"] += 1
    return [s for s in found if not s["section"].startswith("References")]


def lab_timing() -> dict:
    """What ``notebooks/time_lab.py`` measured ({} before it ran)."""
    return json.loads(LAB_TIMING.read_text()) if LAB_TIMING.is_file() else {}


def _run_minutes(number: str) -> tuple[float, int]:
    """The measured minutes of a notebook's cells and its number of code cells."""
    seconds = lab_timing().get("notebook seconds", {})
    key = next((k for k in seconds if k.startswith(f"{number}_")), None)
    cells = sum(s["code cells"] for s in sections(notebook_file(number)))
    return (seconds[key] / 60 if key else 0.0), cells


def slot_sections(number: str, names: list[str]) -> list[dict]:
    """The sections of notebook ``number`` whose headings start with one of ``names``, in the
    notebook's order (``ValueError`` when a name matches no section)."""
    found = sections(notebook_file(number))
    for name in names:
        if not any(s["section"].startswith(name) for s in found):
            raise ValueError(f"notebook {number} has no section starting {name!r}")
    return [s for s in found if any(s["section"].startswith(n) for n in names)]


def model_minutes(parts: list[dict], number: str) -> dict:
    """The reading model's minutes for the sections ``parts`` of notebook ``number``."""
    words = sum(p["words"] for p in parts)
    figures = sum(p["figures"] for p in parts)
    tables = sum(p["tables"] for p in parts)
    cells = sum(p["code cells"] for p in parts)
    run, all_cells = _run_minutes(number)
    running = run * cells / all_cells if all_cells else 0.0
    minutes = (words / WORDS_A_MINUTE + FIGURE_MINUTES * figures + TABLE_MINUTES * tables
               + CELL_MINUTES * cells + running + DISCUSSION_MINUTES)
    return {"words": words, "figures": figures, "tables": tables, "code cells": cells,
            "cells run (min)": round(running, 1), "model (min)": round(minutes, 1)}


def plan() -> list[dict]:
    """The lab track as rows: start and end minute, notebook, sections, what the students do,
    the background, and the reading model's minutes with what they count."""
    rows, start = [], 0
    for number, names, minutes, doing, background in LAB_TRACK:
        if number == "—":
            parts, counts = [], {"words": 0, "figures": 0, "tables": 0, "code cells": 0,
                                 "cells run (min)": 0.0, "model (min)": DISCUSSION_MINUTES}
        else:
            parts = slot_sections(number, names)
            counts = model_minutes(parts, number)
        rows.append({"from": start, "to": start + minutes, "notebook": number,
                     "sections": "; ".join(p["section"] for p in parts) or names[0],
                     "do": doing, "background": background, "minutes": minutes, **counts})
        start += minutes
    return rows


def going_further() -> dict[str, list[str]]:
    """Per lab notebook, its sections no slot covers (read after the lab), exercises aside."""
    covered = {}
    for number, names, *_ in LAB_TRACK:
        if number != "—":
            covered.setdefault(number, set()).update(
                p["section"] for p in slot_sections(number, names))
    left = {}
    for number, names in covered.items():
        every = [s["section"] for s in sections(notebook_file(number))]
        left[number] = [n for n in every if n not in names and not n.startswith("Exercises")]
    return left


def plan_markdown() -> str:
    """The plan as one Markdown table (it reads in full on GitHub, Colab and JupyterLab), the
    model it is timed with, and what is left for after the lab."""
    lines = ["| minutes | notebook | sections | what the class does | in the background | "
             "words | figures, tables, cells | model (min) |",
             "|---|---|---|---|---|---:|---:|---:|"]
    for row in plan():
        lines.append(f"| {row['from']}–{row['to']} | {row['notebook']} | {row['sections']} | "
                     f"{row['do']} | {row['background']} | {row['words']:,} | "
                     f"{row['figures']}, {row['tables']}, {row['code cells']} | "
                     f"{row['model (min)']:g} of {row['minutes']} |")
    timing = lab_timing()
    lines += ["", f"**How the minutes are modelled.** Prose at {WORDS_A_MINUTE} words a minute "
              f"(the slow end of 150–200: a class reads on a projector, with formulas), "
              f"{FIGURE_MINUTES:g} min per figure, {TABLE_MINUTES:g} min per table, "
              f"{CELL_MINUTES:g} min per code cell (read and run) plus the seconds its cells ran "
              f"when the lab was last timed"
              + (f" ({timing['when']}, {timing['machine']}, the lesson run training beside "
                 "them)" if timing else "")
              + f", and {DISCUSSION_MINUTES:g} min of discussion per slot. Each slot's model "
              "minutes fit its minutes; the words count the prose of the sections read in the "
              "lab, not the exercises or 'Going further'."]
    left = going_further()
    lines += ["", "**After the lab** (\"Going further\", self-study): "
              + "; ".join(f"{n}: " + ", ".join(f"“{x}”" for x in names)
                          for n, names in left.items() if names)
              + "; the exercises of 00–03 (homework), notebooks 03b and 04–07."]
    return "\n".join(lines)


def time_note(number: str) -> str:
    """The "How long it takes" paragraph of a lab notebook (``"03"``): its slots of the plan,
    their model minutes, and how long its cells ran when the lab was last timed."""
    rows = [r for r in plan() if r["notebook"] == number]
    slots = " and ".join(f"minutes {r['from']}–{r['to']}" for r in rows)
    lab = sum(r["minutes"] for r in rows)
    run, _ = _run_minutes(number)
    left = going_further().get(number, [])
    every = sections(notebook_file(number))
    full = model_minutes(every, number)["model (min)"] - DISCUSSION_MINUTES
    return (f"**How long it takes.** In the lab: {lab} min ({slots} of the {TOTAL}-minute plan "
            f"in notebook 00), discussion included. Alone, reading every section and doing the "
            f"exercises: about {full:.0f} min by the plan's reading model, no discussion; its "
            "cells ran in "
            f"{run:.1f} min when the lab was last timed. After the lab: the exercises"
            + ("; and the sections " + "; ".join(f"“{n}”" for n in left) if left else "")
            + ".")


def _replace_block(source: str, name: str, body: str) -> str:
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    if not pattern.search(source):
        raise ValueError(f"no <!-- {name} --> block")
    return pattern.sub(lambda _: BLOCK.format(name, body), source)


def skip_markers(number: str) -> dict[str, str]:
    """Per section of lab notebook ``number`` that no slot covers (:func:`going_further`; the
    "Going further" ones say so in their heading), the line that tells the class to skip it
    and where to go on."""
    left = set(going_further().get(number, []))
    order = [s["section"] for s in sections(notebook_file(number))]
    markers = {}
    for i, name in enumerate(order):
        if name not in left or name.startswith("Going further"):
            continue
        after = next((n for n in order[i + 1:] if n not in left), None)
        where = f"go on at “{after}”" if after else "the lab part of this notebook ends here"
        markers[name] = (f"> **In the lab, skip this section** (it is for after the lab): "
                         f"{where}.")
    return markers


def _mark_skipped(source: str, markers: dict[str, str]) -> str:
    """``source`` with a ``<!-- lab-skip -->`` block under each ``## `` heading named in
    ``markers`` and none under the others."""
    source = _SKIP_BLOCK.sub("", source)

    def mark(match: re.Match) -> str:
        name = match.group(1).strip()
        line = match.group(0)
        return line + "\n" + BLOCK.format("lab-skip", markers[name]) if name in markers else line

    return _HEADING.sub(mark, source)


def sync(folder: Path = FOLDER, write: bool = True) -> list[Path]:
    """Write :func:`plan_markdown` into notebook 00's ``<!-- plan -->`` block and
    :func:`time_note` into the ``<!-- time -->`` block of 00-03; returns the notebooks that
    changed (``write=False``: those that would). ``tests/test_notebooks.py`` wants none."""
    import nbformat

    changed = []
    for number in ("00", "01", "02", "03"):
        path = notebook_file(number, folder)
        nb = nbformat.read(path, as_version=4)
        before = [c.source for c in nb.cells]
        skip = skip_markers(number)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            cell.source = _mark_skipped(cell.source, skip)
            if "<!-- time -->" in cell.source:
                cell.source = _replace_block(cell.source, "time", time_note(number))
            if "<!-- plan -->" in cell.source:
                cell.source = _replace_block(cell.source, "plan", plan_markdown())
        if [c.source for c in nb.cells] != before:
            changed.append(path)
            if write:
                nbformat.write(nb, path)
    return changed
