"""Plain helpers shared by several test modules (fixtures live in conftest.py)."""

import importlib.util
import json
import sys
from pathlib import Path

from tkd.objective import pick_negatives
from tkd.records import load_record

NOTEBOOK_TOOLS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_tool(name: str):
    """The module ``notebooks/<name>.py`` (the notebooks' tooling lives outside ``tkd``)."""
    spec = importlib.util.spec_from_file_location(name, NOTEBOOK_TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def edit_record(path, *keys_and_value):
    """Set ``record[k1][k2]... = value`` in the record file ``path``."""
    *keys, last, value = keys_and_value
    record = load_record(path)
    part = record
    for key in keys:
        part = part[key]
    part[last] = value
    path.write_text(json.dumps(record))


def select_negatives(config, labels, teacher, student, sampled_student, sampled_teacher,
                     generator):
    """``(negative student logits, negative teacher logits, valid)`` as
    :func:`tkd.objective.pick_negatives` picks them for the triplet or pair term."""
    picked = pick_negatives(config, labels, teacher, student, sampled_student, sampled_teacher,
                            generator)
    return picked["negative_logits"], picked["negative_teacher_logits"], picked["valid"]
