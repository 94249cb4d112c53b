"""Plain helpers shared by several test modules (fixtures live in conftest.py)."""

import json

from tkd.results import load_record


def edit_record(path, *keys_and_value):
    """Set ``record[k1][k2]... = value`` in the record file ``path``."""
    *keys, last, value = keys_and_value
    record = load_record(path)
    part = record
    for key in keys:
        part = part[key]
    part[last] = value
    path.write_text(json.dumps(record))
