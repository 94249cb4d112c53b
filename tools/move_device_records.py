"""Move the Fashion-MNIST student records trained on a GPU out of the CPU set.

Every comparison of ``fashion`` reads records of one kind of device, the CPU (its preset's
``device``). The student runs that were trained on an NVIDIA H200 move to the preset
``fashion-h200`` (same recipe and teacher, ``device="cuda"``): their ``config.preset`` says
so, and ``provenance.moved_from`` names the file they came from. Saved weights move with them.
Idempotent: a second run finds nothing to move. Usage: python tools/move_device_records.py
"""

from __future__ import annotations

import json
import shutil

from tkd.experiments import PRESETS
from tkd.files import atomic_write_json
from tkd.records import results_root


def move(source: str = "fashion", target: str = "fashion-h200") -> list[str]:
    """Move ``source``'s student records whose device kind is not its preset's to ``target``."""
    root, kind = results_root(), PRESETS[source].device
    moved = []
    for path in sorted((root / source).glob("*/*.json")):
        record = json.loads(path.read_text())
        device = record.get("environment", {}).get("device", "cpu").split(":")[0]
        if path.parent.name == "teacher" or device == kind:
            continue
        destination = root / target / path.parent.name / path.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        record["config"]["preset"] = target
        record["provenance"]["moved_from"] = path.relative_to(root).as_posix()
        atomic_write_json(destination, record)
        weights = path.with_suffix(".pt")
        if weights.is_file():
            shutil.move(weights, destination.with_suffix(".pt"))
            for extra in weights.parent.glob(weights.name + ".*"):
                shutil.move(extra, destination.parent / extra.name)
        path.unlink()
        moved.append(path.relative_to(root).as_posix())
    return moved


if __name__ == "__main__":
    names = move()
    print(f"moved {len(names)} record(s) to fashion-h200: {' '.join(names)}")
