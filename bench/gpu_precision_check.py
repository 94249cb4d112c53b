"""GPU checks: bf16 autocast, channels_last and torch.compile give working, fast training.

Trains the paper's teacher for a few epochs (fp32 vs. bf16) and the paper's student with the
triplet objective under four settings, on full Fashion-MNIST, and prints one table: test
accuracy, last-epoch images per second and peak device memory. Needs a CUDA device.

    python bench/gpu_precision_check.py [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import method_config
from tkd.train import TrainConfig, fit, predict

SETTINGS = {  # name -> (bf16, channels_last, compile)
    "fp32": (False, False, False),
    "bf16": (True, False, False),
    "bf16+channels_last": (True, True, False),
    "bf16+channels_last+compile": (True, True, True),
}


def row(name: str, history, seconds: float) -> str:
    last = history.iloc[-1]
    memory = torch.cuda.max_memory_allocated() / 2**20
    return (f"{name:34s} test acc {last.test_acc:.4f}  {last.images_per_second:9.0f} img/s  "
            f"run {seconds:6.1f} s  peak {memory:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA device"
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    data = load_dataset("fashion-mnist")
    shape = (data.num_classes, data.in_channels, data.image_size)
    teachers = {}
    for bf16 in (False, True):
        torch.cuda.reset_peak_memory_stats()
        teacher = build_model("paper-teacher", *shape)
        start = time.perf_counter()
        config = TrainConfig(epochs=args.epochs, weight_decay=5e-4,
                             precision="bf16" if bf16 else "fp32", progress=False)
        history = fit(teacher, data, config)
        print(row(f"teacher {'bf16' if bf16 else 'fp32'}", history, time.perf_counter() - start))
        teachers[bf16] = teacher
    teacher = teachers[True]
    logits = tuple(predict(teacher, s.images.cuda(), 1000, torch.bfloat16)
                   for s in (data.train, data.test))
    for negatives in ("sample", "batch-random"):
        for name, (bf16, channels_last, compile_) in SETTINGS.items():
            torch.cuda.reset_peak_memory_stats()
            student = build_model("paper-student", *shape)
            config = TrainConfig(epochs=args.epochs, precision="bf16" if bf16 else "fp32",
                                 channels_last=channels_last,
                                 compile=compile_, progress=False)
            start = time.perf_counter()
            history = fit(student, data, config, method_config("triplet", negatives=negatives),
                          teacher, logits)
            assert history.filter(like="train_").notna().all().all()
            print(row(f"student triplet/{negatives} {name}", history,
                      time.perf_counter() - start))


if __name__ == "__main__":
    main()
