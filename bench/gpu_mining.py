"""In-batch negatives on the GPU: throughput of triplet-KD with each negative strategy (fp32).

    python bench/gpu_mining.py [--epochs 3]
"""

from __future__ import annotations

import argparse

import torch

from tkd.data import load_dataset
from tkd.miners import NEGATIVE_STRATEGIES
from tkd.models import build_model
from tkd.objective import method_config
from tkd.train import TrainConfig, fit, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    shape = (data.num_classes, data.in_channels, data.image_size)
    teacher = build_model("paper-teacher", *shape).cuda().eval()
    logits = tuple(predict(teacher, s.images.cuda()) for s in (data.train, data.test))
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for negatives in NEGATIVE_STRATEGIES:
        student = build_model("paper-student", *shape)
        config = TrainConfig(epochs=args.epochs, precision="fp32", progress=False)
        history = fit(student, data, config, method_config("triplet", negatives=negatives),
                      teacher, logits)
        last = history.iloc[-1]
        print(f"triplet/{negatives:15s} test acc {last.test_acc:.4f}  "
              f"{last.images_per_second:8.0f} img/s")


if __name__ == "__main__":
    main()
