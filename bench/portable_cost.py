"""What the portable CPU mode costs: one training epoch of the quick preset (digits) and of a
Fashion-MNIST epoch, native kernels against the portable mode (:mod:`tkd.portable`: ATen and
oneDNN capped at AVX2, MKL on its COMPATIBLE branch), one thread each, as the presets train.

Each (dataset, mode) trains Hinton KD (T = 4) with the paper's student in its own process,
with the mode's environment set before torch starts; the modes alternate ``--repeats`` times
and the fastest epoch of each is kept (a busy machine slows both alike). The FLOPs of one
step (:class:`torch.utils.flop_counter.FlopCounterMode`: convolutions and matmuls, forward
and backward) give GFLOP/s, shown against each mode's own fp32 matmul rate (2048^3, one
thread) measured in the same process. Prints one table and the portable/native ratios.

    python bench/portable_cost.py [--fashion-images 10000] [--repeats 2] [--cbwr AVX2,STRICT]
                                  [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100
DATASETS = ("digits", "fashion-mnist")


def measure(dataset: str, images: int, epochs: int) -> dict:
    """In this process: train ``epochs`` epochs (the fastest is kept), count one step's FLOPs
    and time a 2048^3 matmul."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tkd.data import load_dataset
    from tkd.models import build_model
    from tkd.objective import method_config
    from tkd.portable import cpu_mode
    from tkd.train import TrainConfig, fit, predict, setup, train_step

    torch.set_num_threads(1)
    data = load_dataset(dataset)
    data.train = data.train.subset(min(images, len(data.train)), seed=0)
    shape = (data.num_classes, data.in_channels, data.image_size)
    teacher = build_model("paper-teacher", *shape).eval()
    logits = tuple(predict(teacher, s.images) for s in (data.train, data.test))
    config = TrainConfig(epochs=epochs, batch_size=BATCH, device="cpu", precision="fp32",
                         progress=False)
    objective = method_config("kd", temperature=4.0)
    history = fit(build_model("paper-student", *shape), data, config, objective, teacher, logits)
    run = setup(build_model("paper-student", *shape), data, config, objective, teacher, logits)
    index = torch.arange(BATCH)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(run, index, index)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(3))
    return {"images": len(data.train), "epoch_seconds": float(history.epoch_seconds.min()),
            "flop_per_image": counter.get_total_flops() / BATCH,
            "peak_gflops": 2 * 2048**3 / best / 1e9, "cpu_mode": cpu_mode()}


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def in_subprocess(dataset: str, images: int, epochs: int, portable: bool,
                  cbwr: str | None = None) -> dict:
    """One measurement in a fresh process, natively or in the portable mode (with MKL's CNR
    branch ``cbwr`` in place of the mode's own, if given)."""
    from tkd.portable import portable_environment

    env = {k: v for k, v in os.environ.items() if k not in portable_environment()}
    env.update(portable_environment(1) if portable else {})
    if portable and cbwr:
        env["MKL_CBWR"] = cbwr
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, __file__, "--measure", dataset, str(images),
                           str(epochs)], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{dataset} ({'portable' if portable else 'native'}) failed:\n"
                 f"{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="also write the results as JSON")
    parser.add_argument("--cbwr", nargs="+", default=[],
                        help="also measure the portable mode with these MKL_CBWR values "
                             "(e.g. AVX2,STRICT, its branch before COMPATIBLE) in place of its own")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        dataset, images, epochs = args.measure
        print(json.dumps(measure(dataset, int(images), int(epochs))))
        return
    from tkd.records import cpu_name

    sizes = {"digits": (1138, 5), "fashion-mnist": (args.fashion_images, 1)}
    modes = ("native", "portable", *(f"portable/{c}" for c in args.cbwr))
    results = {}
    for _ in range(args.repeats):
        for dataset in DATASETS:
            for mode in modes:
                row = in_subprocess(dataset, *sizes[dataset], portable=mode != "native",
                                    cbwr=mode.partition("/")[2] or None)
                old = results.get((dataset, mode))
                if old is None or row["epoch_seconds"] < old["epoch_seconds"]:
                    results[(dataset, mode)] = row
    print(f"one training epoch, Hinton KD (T = 4), paper student, batch {BATCH}, 1 thread, "
          f"fastest of {args.repeats}; CPU {cpu_name()}")
    print(f"{'dataset':14s} {'mode':22s} {'ISA':7s} {'MKL CNR':>13s} {'images':>7s} "
          f"{'epoch s':>8s} {'images/s':>9s} {'GFLOP/s':>8s} {'matmul GFLOP/s':>15s} "
          f"{'% of it':>8s}")
    for (dataset, mode), r in results.items():
        rate = r["images"] / r["epoch_seconds"]
        gflops = rate * r["flop_per_image"] / 1e9
        r.update(images_per_second=rate, gflops=gflops)
        print(f"{dataset:14s} {mode:22s} {r['cpu_mode']['aten']:7s} "
              f"{str(r['cpu_mode'].get('mkl_cnr')):>13s} {r['images']:7d} "
              f"{r['epoch_seconds']:8.2f} {rate:9.0f} {gflops:8.2f} {r['peak_gflops']:15.1f} "
              f"{100 * gflops / r['peak_gflops']:7.2f}%")
    for dataset in DATASETS:
        native = results[(dataset, "native")]
        for mode in modes[1:]:
            other = results[(dataset, mode)]
            print(f"{dataset}: {mode} epoch / native epoch = "
                  f"{other['epoch_seconds'] / native['epoch_seconds']:.2f}; its matmul "
                  f"rate / native = {other['peak_gflops'] / native['peak_gflops']:.2f}")
    if args.out:
        from tkd.files import atomic_write_json

        atomic_write_json(args.out, {f"{d}/{m}": r for (d, m), r in results.items()})


if __name__ == "__main__":
    main()
