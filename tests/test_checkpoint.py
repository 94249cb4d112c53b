"""Checkpoint integrity, fallback to the previous good checkpoint, and
weights_only loading that never executes pickled code."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from tkd.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_latest_checkpoint,
    load_model,
    rng_state,
    safe_load,
    save_model,
    set_rng_state,
)
from tkd.data import load_dataset
from tkd.models import build_model
from tkd.train import TrainConfig, fit, run_generators

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin


@pytest.fixture(scope="module")
def data():
    digits = load_dataset("digits")
    digits.train = digits.train.subset(200, seed=0)
    return digits


def train(data, folder, epochs=3, resume=False):
    torch.manual_seed(0)
    model = build_model("paper-student", 10, 1, 8)
    config = TrainConfig(epochs=epochs, checkpoint_dir=str(folder), resume=resume,
                         progress=False, device="cpu", batch_size=50)
    return model, fit(model, data, config)


# ------------------------------------------------------------------------------ checkpoints ----


def test_checkpoints_keep_the_newest_two_with_sidecars(data, tmp_path):
    train(data, tmp_path, epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch-0002.pt", "epoch-0002.pt.sha256", "epoch-0003.pt",
                     "epoch-0003.pt.sha256"]
    state = load_latest_checkpoint(tmp_path)
    assert state["epoch"] == 3 and len(state["history"]["epoch"]) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "truncate-no-sidecar", "empty"])
def test_damaged_checkpoint_is_detected_naming_the_file(data, tmp_path, damage):
    train(data, tmp_path, epochs=2)
    path = list_checkpoints(tmp_path)[-1]
    raw = path.read_bytes()
    if damage == "flip-byte":
        raw = raw[:1000] + bytes([raw[1000] ^ 0xFF]) + raw[1001:]
    else:
        raw = b"" if damage == "empty" else raw[: len(raw) // 2]
    path.write_bytes(raw)
    if damage != "flip-byte":
        path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CheckpointError, match=re.escape(str(path))) as error:
        safe_load(path)
    assert "corrupted" in str(error.value)


def test_resume_falls_back_to_the_previous_good_checkpoint(data, tmp_path):
    _, full = train(data, tmp_path / "full", epochs=3)
    train(data, tmp_path / "cut", epochs=2)
    newest = list_checkpoints(tmp_path / "cut")[-1]
    newest.write_bytes(newest.read_bytes()[:5000])  # truncated, sidecar still there
    with pytest.warns(UserWarning, match="epoch-0002.pt"):
        _, resumed = train(data, tmp_path / "cut", epochs=3, resume=True)
    columns = [c for c in full.columns if c not in ("epoch_seconds", "images_per_second")]
    pd.testing.assert_frame_equal(full[columns], resumed[columns], check_exact=True)


def test_resume_refuses_when_no_checkpoint_loads(data, tmp_path):
    train(data, tmp_path, epochs=2)
    for path in list_checkpoints(tmp_path):
        path.write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError) as error:
        train(data, tmp_path, epochs=3, resume=True)
    message = str(error.value)
    assert "epoch-0001.pt" in message and "epoch-0002.pt" in message
    assert "no usable checkpoint" in message


def test_resume_with_changed_settings_is_refused(data, tmp_path):
    train(data, tmp_path, epochs=1)
    model = build_model("paper-student", 10, 1, 8)
    config = TrainConfig(epochs=2, checkpoint_dir=str(tmp_path), resume=True, progress=False,
                         device="cpu", batch_size=50, lr=0.1)
    with pytest.raises(ValueError, match="lr: 0.01 -> 0.1"):
        fit(model, data, config)


def test_resume_with_another_model_is_refused(data, tmp_path):
    train(data, tmp_path, epochs=1)
    config = TrainConfig(epochs=2, checkpoint_dir=str(tmp_path), resume=True, progress=False,
                         device="cpu", batch_size=50)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        fit(build_model("student-2022", 10, 1, 8), data, config)


# --------------------------------------------------------------------------- weights_only ----


class Payload:
    """Unpickling this object creates ``marker``: proof that pickled code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_refused_never_executed(tmp_path):
    marker = tmp_path / "executed"
    evil = tmp_path / "epoch-0001.pt"  # as a model file and as a training checkpoint
    buffer = io.BytesIO()
    torch.save({"format": "tkd-model-1", "state_dict": {}, "x": Payload(marker)}, buffer)
    evil.write_bytes(buffer.getvalue())
    for load in (safe_load, load_model):
        with pytest.raises(CheckpointError, match="arbitrary pickle") as error:
            load(evil)
        assert str(evil) in str(error.value) and "open" in str(error.value)
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="arbitrary pickle"):
        load_latest_checkpoint(tmp_path)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()


def test_a_whole_pickled_model_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(build_model("paper-student", 10, 1, 8), path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(path)


def test_save_model_round_trip(tmp_path):
    model = build_model("paper-student", 10, 1, 8)
    save_model(tmp_path / "m.pt", model, "paper-student", 10, 1, 8)
    loaded = load_model(tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))
    assert loaded.tkd_info["num_classes"] == 10


def test_rng_state_restores_the_named_generators(tmp_path):
    generators = run_generators(7)
    for g in generators.values():
        torch.rand(3, generator=g)  # move them along
    state = rng_state(generators)
    torch.save(state, tmp_path / "rng.pt")
    ahead = {k: torch.rand(5, generator=g) for k, g in generators.items()}
    fresh = run_generators(0)
    set_rng_state(safe_load(tmp_path / "rng.pt"), fresh)  # loads with weights_only=True
    assert all(torch.equal(ahead[k], torch.rand(5, generator=g)) for k, g in fresh.items())
    with pytest.raises(KeyError):
        set_rng_state(state, {**fresh, "extra": torch.Generator()})
