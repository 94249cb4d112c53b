"""One short run in the portable CPU mode, printed bit for bit (``tests/test_portable.py``).

A teacher (the paper's, with BatchNorm and dropout) trained 4 epochs on 300 digits images
(SGD 0.1, batch 25), then the 2022 student (BatchNorm) distilled from it with the paper's
triplet and Hinton KD for 4 epochs (SGD 0.02): convs, matrix products, softmax, norms and SGD,
forward and backward. Run as ``python tests/portable_run.py OUT.json`` with the portable
environment set (:func:`tkd.portable.portable_environment`); writes every history value as a
float's hex.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch

from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import method_config
from tkd.portable import mkl_cnr
from tkd.records import cpu_name
from tkd.train import TrainConfig, fit, seed_everything


def history_hex(history) -> dict:
    columns = [c for c in history.columns if c not in ("epoch_seconds", "images_per_second")]
    return {c: [float(v).hex() for v in history[c]] for c in columns}


def main(out: str) -> None:
    torch.set_num_threads(1)
    data = load_dataset("digits").with_validation(100, seed=0)
    data.train = data.train.subset(300, seed=0)
    config = TrainConfig(epochs=4, batch_size=25, lr=0.1, lr_step=3, seed=1, device="cpu",
                         precision="fp32", progress=False)
    runs = {}
    seed_everything(1)
    teacher = build_model("paper-teacher", data.num_classes, data.in_channels, data.image_size)
    runs["teacher"] = history_hex(fit(teacher, data, config))
    seed_everything(1)
    student = build_model("student-2022", data.num_classes, data.in_channels, data.image_size)
    objective = method_config("triplet-kd", temperature=4.0)
    slower = replace(config, lr=0.02)
    runs["student"] = history_hex(fit(student, data, slower, objective, teacher.eval()))
    weights = [float(p.detach().double().sum()).hex() for p in student.parameters()]
    record = {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "mkl_cnr": mkl_cnr(), "torch": torch.__version__, "runs": runs,
              "weights": weights}
    with open(out, "w") as f:
        json.dump(record, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
