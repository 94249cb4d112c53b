"""Training throughput of a triplet-KD epoch: tkd's trainer vs. a conventional pipeline, with
the arithmetic rate each reaches against the device's measured fp32 matmul rate.

Every variant trains the paper's student against the paper's teacher on Fashion-MNIST, batch
100, with ``CE + 2 * triplet`` (margin 5); the weights are untrained, which does not change the
arithmetic.

- conventional: written the way the authors' public code works: a per-sample ``Dataset`` that
  returns the image and a negative image as PIL images through ``ToTensor``, a ``DataLoader``
  with 2 workers, the teacher run on every batch, and a second student forward on the negatives.
- tkd variants: :func:`tkd.train.fit`: the split as one tensor on the device, index-tensor
  negatives, teacher logits computed once, one student forward on ``[x; x']``.
  On CUDA: ``tkd-eager-fp32`` (no CUDA graph), ``tkd-graph-fp32`` (the step captured once and
  replayed), ``tkd-graph-bf16`` (the same under bf16 autocast), ``tkd-graph-batch-hard``
  (fp32, in-batch hardest negatives: no second forward). On the CPU: ``tkd`` (channels_last),
  ``tkd-nchw`` (without), ``tkd-batch-random`` (in-batch random negatives).

FLOPs are those :class:`torch.utils.flop_counter.FlopCounterMode` counts (matmuls and
convolutions, forward and backward; not element-wise ops, pooling or the optimiser) in ONE
training step of the variant, as it runs: for tkd the student on ``x`` and ``x'`` where the
variant does so, with the teacher's logits read from the cache; for the conventional pipeline
also the teacher forward it runs each step. GFLOP/s = FLOP per image x images/s; "% peak" is
that against a large fp32 matmul timed in the same run (CUDA: 4096^3 with TF32 off; CPU:
2048^3). cuDNN may use TF32 inside the fp32 convolutions (PyTorch's default), so the fraction is
a utilisation figure, not a bound.

Each variant runs in its own subprocess (so its peak memory is its own); the last epoch is
timed.

    python bench/throughput.py [--device cuda] [--images 20000] [--epochs 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

from tkd.files import atomic_write_json
from tkd.files import portable_path as portable
from tkd.records import cpu_name

BATCH = 100

CPU_VARIANTS = {
    "conventional": {"kind": "conventional"},
    "tkd": {"kind": "tkd", "precision": "fp32"},
    "tkd-nchw": {"kind": "tkd", "precision": "fp32", "channels_last": False},
    "tkd-batch-random": {"kind": "tkd", "precision": "fp32", "negatives": "batch-random"},
}
CUDA_VARIANTS = {
    "conventional": {"kind": "conventional"},
    "tkd-eager-fp32": {"kind": "tkd", "precision": "fp32", "cuda_graph": False},
    "tkd-graph-fp32": {"kind": "tkd", "precision": "fp32", "cuda_graph": True},
    "tkd-graph-bf16": {"kind": "tkd", "precision": "bf16", "cuda_graph": True},
    "tkd-graph-batch-hard": {"kind": "tkd", "precision": "fp32", "cuda_graph": True,
                             "negatives": "batch-hard"},
}


def variants_for(device_type: str) -> dict[str, dict]:
    return CUDA_VARIANTS if device_type == "cuda" else CPU_VARIANTS


def peak_memory_mb(device) -> dict:
    """Peak host RSS (this process and its finished children) and peak device memory, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {"host_rss_mb": own, "worker_rss_mb": children}
    if device.type == "cuda":
        import torch

        result["device_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def load_split(images: int):
    from tkd.data import load_dataset

    data = load_dataset("fashion-mnist")
    data.train = data.train.subset(min(images, len(data.train)), seed=0)
    return data


def count_flops(step) -> int:
    """FLOPs that FlopCounterMode counts in one call of ``step()``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def run_tkd(spec: dict, args) -> dict:
    """Train ``args.epochs`` epochs with :func:`tkd.train.fit` (the last one is timed), then
    count the FLOPs of one of its training steps."""
    import torch

    from tkd.models import build_model
    from tkd.objective import method_config
    from tkd.train import TrainConfig, fit, pick_device, predict, setup, train_step

    data = load_split(args.images)
    device = pick_device(args.device)
    shape = (data.num_classes, data.in_channels, data.image_size)
    channels_last = spec.get("channels_last", True)
    config = TrainConfig(epochs=args.epochs, batch_size=BATCH, device=str(device),
                         precision=spec["precision"], cuda_graph=spec.get("cuda_graph", True),
                         channels_last=channels_last, progress=False)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    teacher = build_model("paper-teacher", *shape).to(device, memory_format=layout).eval()
    dtype = torch.bfloat16 if spec["precision"] == "bf16" else None
    start = time.perf_counter()
    logits = tuple(predict(teacher, split.images.to(device), 1000, dtype, channels_last)
                   for split in (data.train, data.test))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    cache_seconds = time.perf_counter() - start
    objective = method_config("triplet", negatives=spec.get("negatives", "sample"))
    history = fit(build_model("paper-student", *shape), data, config, objective, teacher, logits)
    memory = peak_memory_mb(device)

    # One eager step of the same run, counted (a capture would record, not run, the step).
    run = setup(build_model("paper-student", *shape), data, config, objective, teacher, logits)
    generator = torch.Generator().manual_seed(0)
    index = torch.randperm(len(data.train), generator=generator)[:BATCH]
    negative = run.sampler.draw(data.train.labels[index], generator)
    flops = count_flops(lambda: train_step(run, index.to(device), negative.to(device)))
    last = history.iloc[-1]
    return {"images": len(data.train), "images_per_second": float(last.images_per_second),
            "epoch_seconds": float(last.epoch_seconds), "flop_per_step": flops,
            "teacher_cache_seconds": cache_seconds, "device": str(device), **memory}


def triplet_images(images, labels, num_classes: int):
    """A torch Dataset in the authors' style: item i is (image, negative image, label), the
    images as PIL converted per call and the negative drawn per call from another class."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import Dataset
    from torchvision.transforms import ToTensor

    class TripletImages(Dataset):
        def __init__(self):
            self.to_tensor = ToTensor()
            self.by_class = [np.flatnonzero(labels != c) for c in range(num_classes)]

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            j = np.random.choice(self.by_class[labels[i]])
            anchor = self.to_tensor(Image.fromarray(images[i]))
            negative = self.to_tensor(Image.fromarray(images[j]))
            return anchor, negative, int(labels[i])

    return TripletImages()


def run_conventional(spec: dict, args) -> dict:
    """The authors'-style pipeline (per-sample PIL + DataLoader + teacher and two student
    forwards per step); the last epoch is timed."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from tkd.models import build_model
    from tkd.train import pick_device

    data = load_split(min(args.images, args.conventional_images))
    device = pick_device(args.device)
    images = data.train.images[:, 0].numpy()
    labels = data.train.labels.numpy()
    dataset = triplet_images(images, labels, data.num_classes)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2)
    shape = (data.num_classes, data.in_channels, data.image_size)
    teacher = build_model("paper-teacher", *shape).to(device).eval()
    student = build_model("paper-student", *shape).to(device).train()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=0.007)

    def step(x, x_negative, y):
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

    seconds = []
    for _ in range(args.epochs):
        start = time.perf_counter()
        for batch in loader:
            step(*batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    memory = peak_memory_mb(device)
    flops = count_flops(lambda: step(*next(iter(DataLoader(dataset, batch_size=BATCH)))))
    return {"images": len(labels), "images_per_second": len(labels) / seconds[-1],
            "epoch_seconds": seconds[-1], "flop_per_step": flops, "device": str(device),
            **memory}


def measure_peak(device) -> dict:
    """The device's fp32 matmul rate in GFLOP/s: 4096^3 on CUDA with TF32 off (best of 3 runs
    of 20 products, after warm-ups, timed with CUDA events), 2048^3 on the CPU (best of 3,
    perf_counter)."""
    import torch

    if device.type == "cuda":
        n, reps = 4096, 20
        was = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            a, b = (torch.randn(n, n, device=device) for _ in range(2))
            for _ in range(3):
                a @ b
            rates = []
            for _ in range(3):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(
                    enable_timing=True)
                start.record()
                for _ in range(reps):
                    a @ b
                end.record()
                end.synchronize()
                rates.append(2 * n**3 * reps / (start.elapsed_time(end) / 1000) / 1e9)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = was
        name = torch.cuda.get_device_name(device)
    else:
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            a @ b
            rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
        name = cpu_name()
    return {"gflops": max(rates), "matmul": f"{n}x{n}x{n} fp32", "device_name": name,
            "threads": torch.get_num_threads()}


def summarise(results: dict[str, dict], peak: dict) -> None:
    """Add per-image FLOPs, GFLOP/s, % of peak and the ratio to conventional to each row."""
    base = results["conventional"]["images_per_second"]
    for r in results.values():
        r["flop_per_image"] = r["flop_per_step"] / BATCH
        r["gflops"] = r["flop_per_image"] * r["images_per_second"] / 1e9
        r["percent_of_peak"] = 100 * r["gflops"] / peak["gflops"]
        r["ratio_to_conventional"] = r["images_per_second"] / base


def print_table(results: dict[str, dict], peak: dict, args) -> None:
    print(f"triplet-KD, Fashion-MNIST, batch {BATCH}, paper teacher/student, last of "
          f"{args.epochs} epoch(s) timed, device {peak['device_name']}")
    print(f"measured fp32 matmul peak ({peak['matmul']}): {peak['gflops']:,.0f} GFLOP/s")
    header = (f"{'variant':22s} {'images':>7s} {'images/s':>9s} {'ratio':>6s} {'MFLOP/img':>9s} "
              f"{'GFLOP/s':>8s} {'% peak':>7s}  peak memory")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        memory = f"host {r['host_rss_mb']:.0f} MB"
        if name == "conventional":
            memory += f" + workers {r['worker_rss_mb']:.0f} MB"
        if "device_mb" in r:
            memory += f", device {r['device_mb']:.0f} MB"
        print(f"{name:22s} {r['images']:7d} {r['images_per_second']:9.0f} "
              f"{r['ratio_to_conventional']:5.2f}x {r['flop_per_image'] / 1e6:9.2f} "
              f"{r['gflops']:8.1f} {r['percent_of_peak']:6.2f}%  {memory}")
    caches = {n: r["teacher_cache_seconds"] for n, r in results.items()
              if "teacher_cache_seconds" in r}
    if caches:
        print("teacher-logit cache (once per run): "
              + ", ".join(f"{n} {s:.2f} s" for n, s in caches.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--conventional-images", type=int, default=20000,
                        help="at most this many for the (slow) conventional pipeline")
    parser.add_argument("--epochs", type=int, default=1, help="epochs; the last one is timed")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best)")
    parser.add_argument("--variants", nargs="+", help="a subset of the device's variants")
    parser.add_argument("--out", help="also write the results as JSON to this file")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    from tkd.train import pick_device

    device = pick_device(args.device)
    variants = variants_for(device.type)
    if args.variant:
        spec = variants[args.variant]
        runner = run_conventional if spec["kind"] == "conventional" else run_tkd
        print(json.dumps(runner(spec, args)))
        return
    names = ["conventional", *[n for n in (args.variants or variants) if n != "conventional"]]
    unknown = [n for n in names if n not in variants]
    if unknown:
        parser.error(f"unknown variants {unknown} on {device.type}; choose from "
                     f"{', '.join(variants)}")
    forwarded = ["--images", str(args.images), "--conventional-images",
                 str(args.conventional_images), "--epochs", str(args.epochs),
                 "--device", str(device)]
    results = {}
    for name in names:
        out = subprocess.run([sys.executable, __file__, "--variant", name, *forwarded],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"variant {name} failed:\n{out.stderr[-4000:]}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    peak = measure_peak(device)
    summarise(results, peak)
    print_table(results, peak, args)
    if args.out:
        payload = {"args": {k: portable(v) if k == "out" else v
                            for k, v in vars(args).items() if k != "variant"},
                   "torch": torch.__version__, "python": platform.python_version(),
                   "peak": peak, "variants": results}
        atomic_write_json(args.out, payload)
        print(f"wrote {portable(args.out)}")


if __name__ == "__main__":
    main()
