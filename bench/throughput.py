"""Training throughput of a triplet-KD epoch: tkd's trainer vs. a conventional pipeline.

Both train the paper's student against the paper's teacher on Fashion-MNIST, batch 100, with
``CE + 2 * triplet`` (margin 5) and the paper's negatives: for each image an image of another
class drawn from the whole training set, run through the student as its own batch.

- conventional: written the way the authors' public code works: a per-sample ``Dataset`` that
  returns the image and a negative image as PIL images through ``ToTensor``, a ``DataLoader``
  with 2 workers, the teacher run on every batch, and a second student forward on the negatives.
- tkd: :func:`tkd.train.fit`: the split as one tensor on the device, index-tensor negatives,
  teacher logits computed once, one student forward on ``[x; x']``, channels_last layout.
  ``tkd-nchw`` is the same without channels_last; ``tkd-batch-random`` takes in-batch negatives
  (no second forward).

Each variant runs in its own subprocess (so peak memory is its own); the weights are untrained,
which does not change the arithmetic. The last line printed is the ratio.

    python bench/throughput.py [--images 20000] [--device cuda] [--compile]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def peak_memory_mb(device: str) -> dict:
    """Peak host RSS (this process and its finished children) and peak device memory, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"host_rss_mb": own, "worker_rss_mb": children}
    if device.startswith("cuda"):
        import torch

        result["device_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def load_split(images: int):
    from tkd.data import load_dataset

    data = load_dataset("fashion-mnist")
    data.train = data.train.subset(images, seed=0)
    return data


def run_tkd(args) -> dict:
    """One tkd epoch; returns the epoch throughput and the first-epoch cost of caching."""
    import torch

    from tkd.losses import method_config
    from tkd.models import build_model
    from tkd.train import TrainConfig, fit, pick_device, predict

    data = load_split(args.images)
    device = pick_device(args.device)
    shape = (data.num_classes, data.in_channels, data.image_size)
    channels_last = not args.nchw
    layout = torch.channels_last if channels_last else torch.contiguous_format
    teacher = build_model("paper-teacher", *shape).to(device, memory_format=layout).eval()
    config = TrainConfig(epochs=args.epochs, batch_size=100, device=str(device),
                         compile=args.compile, progress=False, bf16=not args.fp32,
                         channels_last=channels_last)
    autocast = config.bf16 and device.type == "cuda"
    start = time.perf_counter()
    train_logits = predict(teacher, data.train.images.to(device), 1000, autocast, channels_last)
    test_logits = predict(teacher, data.test.images.to(device), 1000, autocast, channels_last)
    if device.type == "cuda":
        torch.cuda.synchronize()
    cache_seconds = time.perf_counter() - start
    student = build_model("paper-student", *shape)
    objective = method_config("triplet", negatives=args.negatives)
    history = fit(student, data, config, objective, teacher, (train_logits, test_logits))
    best = history["epoch_seconds"].iloc[-1]
    return {"images_per_second": len(data.train) / best, "epoch_seconds": best,
            "teacher_cache_seconds": cache_seconds, "device": str(device),
            **peak_memory_mb(str(device))}


def run_conventional(args) -> dict:
    """One epoch of the authors'-style pipeline (per-sample PIL + DataLoader + 2 forwards)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader
    from torch.utils.data import Dataset as TorchDataset
    from torchvision.transforms import ToTensor

    from tkd.models import build_model

    data = load_split(args.images)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images = data.train.images[:, 0].numpy()
    labels = data.train.labels.numpy()

    class TripletImages(TorchDataset):
        """Returns (image, negative image, label); the negative is drawn per call."""

        def __init__(self):
            self.to_tensor = ToTensor()
            self.by_class = [np.flatnonzero(labels != c) for c in range(data.num_classes)]

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            j = np.random.choice(self.by_class[labels[i]])
            anchor = self.to_tensor(Image.fromarray(images[i]))
            negative = self.to_tensor(Image.fromarray(images[j]))
            return anchor, negative, int(labels[i])

    loader = DataLoader(TripletImages(), batch_size=100, shuffle=True, num_workers=2)
    shape = (data.num_classes, data.in_channels, data.image_size)
    teacher = build_model("paper-teacher", *shape).to(device).eval()
    student = build_model("paper-student", *shape).to(device).train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=0.007)
    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for x, x_negative, y in loader:
            x, x_negative, y = x.to(device), x_negative.to(device), y.to(device)
            with torch.no_grad():
                anchor = teacher(x)
            positive = student(x)
            negative = student(x_negative)
            loss = F.cross_entropy(positive, y) + 2.0 * F.triplet_margin_loss(
                anchor, positive, negative, margin=5.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return {"images_per_second": len(labels) / seconds[-1], "epoch_seconds": seconds[-1],
            "device": str(device), **peak_memory_mb(str(device))}


VARIANTS = {
    "conventional": run_conventional,
    "tkd": run_tkd,
    "tkd-nchw": lambda args: run_tkd(argparse.Namespace(**{**vars(args), "nchw": True})),
    "tkd-batch-random": lambda args: run_tkd(argparse.Namespace(
        **{**vars(args), "negatives": "batch-random"})),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="epochs; the last one is timed")
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--negatives", default="sample", help=argparse.SUPPRESS)
    parser.add_argument("--nchw", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(VARIANTS[args.variant](args)))
        return
    forwarded = [a for a in sys.argv[1:]]
    results = {}
    for name in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", name, *forwarded],
                             capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"triplet-KD epoch, Fashion-MNIST, {args.images} images, batch 100, "
          f"paper teacher/student, device {results['tkd']['device']}")
    for name, r in results.items():
        memory = f"host {r['host_rss_mb']:.0f} MB"
        if name == "conventional":
            memory += f" + workers {r['worker_rss_mb']:.0f} MB"
        if "device_mb" in r:
            memory += f", device {r['device_mb']:.0f} MB"
        print(f"{name:18s} {r['images_per_second']:9.0f} img/s  epoch {r['epoch_seconds']:7.2f} s"
              f"  peak {memory}")
    cache = results["tkd"]["teacher_cache_seconds"]
    print(f"tkd teacher-logit cache (once per run): {cache:.2f} s")
    ratio = results["tkd"]["images_per_second"] / results["conventional"]["images_per_second"]
    print(f"ratio tkd / conventional (paper's negatives): {ratio:.2f}x")


if __name__ == "__main__":
    main()
