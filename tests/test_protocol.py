"""The protocol's promises: a fixed validation split, the logged terms of each method, a paired
design (one seed, one data order for every method) and resumes that refuse another teacher or
other data."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tkd import experiments as ex
from tkd import train as tr
from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import method_config
from tkd.train import TrainConfig, fit

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
N, BATCH = 200, 50  # N: the images of conftest's `small`


def config(**overrides) -> TrainConfig:
    return TrainConfig(**{"progress": False, "device": "cpu", "batch_size": BATCH, **overrides})


def net(name: str = "paper-student", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, 10, 1, 8)


# ------------------------------------------------------------------------- validation ----


def rows(split) -> Counter:
    return Counter((image.numpy().tobytes(), int(label))
                   for image, label in zip(split.images, split.labels))


def test_quick_holds_out_a_fixed_stratified_validation_split():
    full = load_dataset("digits")
    data = ex.load_data(ex.get_preset("quick"))
    held = ex.PRESETS["quick"].validation
    assert len(data.validation) == held >= 200
    assert torch.bincount(data.validation.labels).tolist() == [held // 10] * 10  # stratified
    # train and validation partition the original training split: nothing shared or lost
    assert len(data.train) + len(data.validation) == len(full.train)
    assert rows(data.train) + rows(data.validation) == rows(full.train)
    assert torch.equal(data.test.labels, full.test.labels)
    again = ex.load_data(ex.get_preset("quick"))
    for split in ("train", "validation"):
        assert torch.equal(getattr(again, split).images, getattr(data, split).images)
        assert torch.equal(getattr(again, split).labels, getattr(data, split).labels)
    assert again.identity() == data.identity()
    assert data.identity()["sizes"] == {"train": len(full.train) - held, "validation": held,
                                        "test": len(full.test)}


def test_fit_scores_the_validation_split_every_epoch(small):
    data = small.with_validation(40, seed=0)
    teacher = net("paper-teacher").eval()
    history = fit(net(), data, config(epochs=2), method_config("triplet"), teacher)
    for column in ("val_acc", "val_total", "val_ce", "val_triplet", "test_acc", "test_triplet"):
        assert column in history and history[column].notna().all(), column
    logits = tr.predict(teacher, data.train.images), tr.predict(teacher, data.test.images)
    with pytest.raises(ValueError, match="validation"):  # its logits are needed too
        fit(net(), data, config(epochs=1), method_config("kd"), teacher, logits)


# ------------------------------------------------------------------ logged terms ----


def test_logit_mse_has_no_cross_entropy_and_ce_mse_has_both(small):
    teacher = net("paper-teacher").eval()
    alone = fit(net(), small, config(epochs=1), method_config("logit-mse"), teacher)
    assert {"train_mse", "test_mse"} <= set(alone) and "train_ce" not in alone
    assert "test_ce" not in alone
    assert alone.train_total.iloc[0] == pytest.approx(alone.train_mse.iloc[0])
    both = fit(net(), small, config(epochs=1), method_config("ce-mse"), teacher)
    assert {"train_ce", "train_mse", "test_ce", "test_mse"} <= set(both)
    assert both.train_total.iloc[0] == pytest.approx(
        both.train_ce.iloc[0] + both.train_mse.iloc[0], rel=1e-5)


def test_a_model_without_teacher_logs_its_validation_and_test_cross_entropy(small):
    """The student alone (and the teacher's own training) log val_ce and test_ce too: the
    CE baseline's curves are compared with the distilled students'."""
    data = small.with_validation(40, seed=0)
    model = net()
    history = fit(model, data, config(epochs=2))
    for split in ("val", "test"):
        assert {f"{split}_total", f"{split}_ce", f"{split}_acc"} <= set(history), split
    ce = torch.nn.functional.cross_entropy(tr.predict(model, data.test.images), data.test.labels)
    assert history.test_ce.iloc[-1] == pytest.approx(ce.item(), rel=1e-4)
    assert history.test_total.iloc[-1] == pytest.approx(history.test_ce.iloc[-1])


# ------------------------------------------------------------------- paired design ----


def test_one_seed_gives_every_method_the_same_data_order(small, monkeypatch):
    """Drawing negatives (or mining at random) must not move the shuffling stream: with one
    seed, the CE student and the triplet and pair students see the same batches each epoch."""
    seen: list[list[torch.Tensor]] = []
    original = tr.train_epoch

    def spy(run, epoch_order, epoch_negatives):
        seen[-1].append(epoch_order.clone())
        return original(run, epoch_order, epoch_negatives)

    monkeypatch.setattr(tr, "train_epoch", spy)
    teacher = net("paper-teacher").eval()
    for obj in (method_config("ce"), method_config("triplet"), method_config("pair"),
                method_config("triplet", negatives="batch-random")):
        seen.append([])
        fit(net(), small, config(epochs=2, seed=5), obj, teacher if obj.needs_teacher else None)
    ce, *others = seen
    assert len(ce) == 2 and not torch.equal(ce[0], ce[1])  # shuffled anew each epoch
    for orders in others:
        assert len(orders) == 2 and all(torch.equal(a, b) for a, b in zip(ce, orders))
    seen.append([])
    fit(net(), small, config(epochs=1, seed=6))
    assert not torch.equal(seen[-1][0], ce[0])  # ... and the seed sets it


def test_run_generators_are_separate_streams_fixed_by_the_seed():
    first, again = tr.run_generators(3), tr.run_generators(3)
    assert set(first) == {"order", "negatives", "batch"}
    draws = {k: torch.rand(4, generator=g) for k, g in first.items()}
    assert all(torch.equal(draws[k], torch.rand(4, generator=g)) for k, g in again.items())
    assert len({tuple(v.tolist()) for v in draws.values()}) == 3  # no two streams alike
    assert tr.seed_everything(3) is None


# ---------------------------------------------------------------- refused resumes ----


def test_resume_refuses_another_teacher_or_other_data(small, tmp_path):
    teacher = net("paper-teacher", seed=0).eval()
    obj = method_config("triplet")
    fit(net(), small, config(epochs=1, checkpoint_dir=str(tmp_path)), obj, teacher)
    resume = config(epochs=2, checkpoint_dir=str(tmp_path), resume=True)
    other = net("paper-teacher", seed=1).eval()
    assert tr.fingerprint(other) != tr.fingerprint(teacher)
    with pytest.raises(ValueError, match="teacher") as error:
        fit(net(), small, resume, obj, other)
    assert tr.fingerprint(teacher) in str(error.value)
    shifted = load_dataset("digits")
    shifted.train = shifted.train.subset(N, seed=1)
    with pytest.raises(ValueError, match="data"):
        fit(net(), shifted, resume, obj, teacher)
    history = fit(net(), small, resume, obj, teacher)  # the same teacher and data resume
    assert history.epoch.tolist() == [1, 2]
