"""Does the captured CUDA-graph step train like the eager one? One short run per setting.

For each objective (every negative strategy, the pair loss, a BatchNorm student, and a teacher
trained with on-device augmentation and dropout) the same seed is trained twice on a
Fashion-MNIST slice, eagerly and through the captured graph; printed: final training loss and
test accuracy of both, the largest difference of the per-epoch training loss, and images/s.

    python bench/gpu_graph_check.py [--images 10000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import method_config
from tkd.train import TrainConfig, fit, seed_everything

CASES = {  # name -> (model, method, overrides)
    "ce": ("paper-student", "ce", {}),
    "triplet (sampled)": ("paper-student", "triplet", {}),
    "triplet batch-random": ("paper-student", "triplet", {"negatives": "batch-random"}),
    "triplet batch-hard": ("paper-student", "triplet", {"negatives": "batch-hard"}),
    "triplet batch-semihard": ("paper-student", "triplet", {"negatives": "batch-semihard"}),
    "pair (sampled)": ("paper-student", "pair", {}),
    "triplet-kd": ("paper-student", "triplet-kd", {}),
    "triplet, BatchNorm student": ("student-2022", "triplet", {}),
}


def train(data, model_name, objective, teacher, graph: bool, epochs: int, augment: bool,
          device: str):
    seed_everything(1)
    model = build_model(model_name, data.num_classes, data.in_channels, data.image_size)
    config = TrainConfig(epochs=epochs, precision="fp32", cuda_graph=graph, progress=False,
                         device=device,
                         augment=augment, weight_decay=5e-4 if teacher is None else 0.007)
    start = time.perf_counter()
    history = fit(model, data, config, objective, teacher)
    return history, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="cpu for a dry run (both eager)")
    args = parser.parse_args()
    data = load_dataset("fashion-mnist").with_validation(1000)
    data.train = data.train.subset(args.images, seed=0)
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"device: {name}, torch {torch.__version__}")
    seed_everything(0)
    teacher = build_model("paper-teacher", 10, 1, 28).to(args.device).eval()
    cases = [("teacher, augmented", "paper-teacher", None, None, True)]
    cases += [(n, m, method, o, False) for n, (m, method, o) in CASES.items()]
    print(f"{'setting':28s} {'loss eager':>11s} {'loss graph':>11s} {'max |dloss|':>12s} "
          f"{'acc eager':>10s} {'acc graph':>10s} {'img/s eager':>12s} {'img/s graph':>12s}")
    for name, model_name, method, overrides, augment in cases:
        objective = None if method is None else method_config(method, **overrides)
        runs = [train(data, model_name, objective, None if method is None else teacher, graph,
                      args.epochs, augment, args.device) for graph in (False, True)]
        (eager, _), (graph, _) = runs
        gap = (eager["train_total"] - graph["train_total"]).abs().max()
        print(f"{name:28s} {eager.train_total.iloc[-1]:11.4f} {graph.train_total.iloc[-1]:11.4f} "
              f"{gap:12.2e} {eager.test_acc.iloc[-1]:10.4f} {graph.test_acc.iloc[-1]:10.4f} "
              f"{eager.images_per_second.iloc[-1]:12,.0f} "
              f"{graph.images_per_second.iloc[-1]:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
