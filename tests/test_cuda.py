"""CUDA-only paths of the trainer: the captured-and-replayed training step agrees with eager
training, and fp16 trains through the gradient scaler. Skipped without a CUDA GPU."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from tkd import train as tr
from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import method_config
from tkd.train import TrainConfig, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
EPOCHS = 4


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = build_model("paper-teacher", 10, 1, 8)
    fit(model, digits, config(epochs=6, weight_decay=5e-4, cuda_graph=False))
    return model.eval()


def config(**overrides) -> TrainConfig:
    settings = {"progress": False, "device": "cuda", "precision": "fp32", "epochs": EPOCHS,
                **overrides}
    return TrainConfig(**settings)


def student():
    torch.manual_seed(1)
    return build_model("paper-student", 10, 1, 8)


def run(digits, teacher, monkeypatch, obj, **overrides):
    """Train a student; returns (history, replays of the captured step, warnings)."""
    replays = []
    original = tr._replay

    def counting(r):
        replays.append(1)
        return original(r)

    monkeypatch.setattr(tr, "_replay", counting)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(student(), digits, config(**overrides), obj,
                      teacher if obj.needs_teacher else None)
    return history, len(replays), [str(w.message) for w in caught]


@pytest.mark.parametrize("method, overrides", [
    ("ce", {}), ("triplet", {}), ("pair", {}), ("triplet", {"negatives": "batch-hard"}),
    ("triplet", {"negatives": "batch-random"}),
], ids=["ce", "triplet", "pair", "batch-hard", "batch-random"])
def test_cuda_graph_agrees_with_eager_within_seed_noise(digits, teacher, monkeypatch, method,
                                                       overrides):
    obj = method_config(method, **overrides)
    graph, replays, caught = run(digits, teacher, monkeypatch, obj, cuda_graph=True)
    assert replays > 0 and not any("capture failed" in m for m in caught), caught
    eager, none, _ = run(digits, teacher, monkeypatch, obj, cuda_graph=False)
    assert none == 0
    assert len(graph) == len(eager) == EPOCHS
    for column in [c for c in graph if c.startswith(("train_", "test_"))]:
        assert all(math.isfinite(v) for v in graph[column]), column
    # the same seed: the same data order and negatives; only kernel-level rounding (and, for
    # batch-random, where the device stream is drawn) may differ
    assert graph.train_total.iloc[-1] == pytest.approx(eager.train_total.iloc[-1], rel=0.1)
    assert abs(graph.test_acc.iloc[-1] - eager.test_acc.iloc[-1]) < 0.05
    assert graph.test_acc.iloc[-1] > 0.5


def test_graph_is_recaptured_when_the_learning_rate_steps(digits, monkeypatch):
    history, replays, caught = run(digits, None, monkeypatch, method_config("ce"),
                                   cuda_graph=True, lr_step=2)
    assert history.lr.tolist() == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert replays > 0 and not any("capture failed" in m for m in caught), caught
    assert history.train_total.iloc[-1] < history.train_total.iloc[0]


def test_fp16_trains_through_the_gradient_scaler(digits, teacher, monkeypatch):
    steps = []
    original = torch.amp.GradScaler.step

    def counting(self, optimizer, *args, **kwargs):
        steps.append(self.get_scale())
        return original(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", counting)
    obj = method_config("triplet")
    model = student()
    prepared = tr.setup(model, digits, config(precision="fp16"), obj, teacher, None)
    assert prepared.scaler is not None and prepared.dtype == torch.float16
    assert not tr._use_graph(prepared)  # the scaler's host-side logic is not capturable
    fp16, replays, _ = run(digits, teacher, monkeypatch, obj, precision="fp16")
    assert replays == 0 and len(steps) == EPOCHS * math.ceil(len(digits.train) / 100)
    assert all(math.isfinite(v) for v in fp16.train_total)
    fp32, _, _ = run(digits, teacher, monkeypatch, obj, cuda_graph=False)
    assert abs(fp16.test_acc.iloc[-1] - fp32.test_acc.iloc[-1]) < 0.05
    assert fp16.test_acc.iloc[-1] > 0.5


def test_an_fp32_run_turns_tf32_off_and_records_it(digits, monkeypatch):
    """PyTorch lets cuDNN convolutions use TF32 by default: an fp32 run must not."""
    from tkd.records import environment_info

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    seen = []
    fit(build_model("paper-student", 10, 1, 8), digits, config(epochs=1),
        on_epoch=lambda row: seen.append((torch.backends.cudnn.allow_tf32,
                                          torch.backends.cuda.matmul.allow_tf32)))
    assert seen == [(False, False)]
    info = environment_info("cuda")
    assert info["tf32"] == {"matmul": False, "cudnn": False}
    assert info["cuda"] == torch.version.cuda and info["cudnn"] == torch.backends.cudnn.version()
    assert "driver" in info
