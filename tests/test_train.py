"""The trainer: it learns, it never trains the teacher, Ctrl-C and NaN stop it cleanly, and bad
arguments are refused before any work with a ValueError naming the argument."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import torch
from torch import nn

from tkd.checkpoint import list_checkpoints, safe_load
from tkd.data import load_dataset
from tkd.models import build_model
from tkd.objective import ObjectiveConfig, method_config
from tkd.train import (
    NonFiniteLossError,
    TrainConfig,
    fidelity,
    fingerprint,
    fit,
    pick_device,
    predict,
)

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin
TIMING = ["epoch_seconds", "images_per_second"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def small(digits):
    data = load_dataset("digits")
    data.train = digits.train.subset(200, seed=0)
    return data


def config(**overrides) -> TrainConfig:
    settings = {"progress": False, "device": "cpu", "batch_size": 50, **overrides}
    return TrainConfig(**settings)


def student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("paper-student", 10, 1, 8)


class Trap(nn.Module):
    """Wraps a model; on its n-th training-mode forward it raises or emits infinite logits."""

    def __init__(self, model: nn.Module, n: int, action: str):
        super().__init__()
        self.model, self.n, self.action, self.calls = model, n, action, 0

    def forward(self, x):
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls == self.n and self.action == "interrupt":
                raise KeyboardInterrupt
            if self.calls >= self.n and self.action == "inf":
                return out * float("inf")
        return out


# ------------------------------------------------------------------------------ learning ----


@pytest.fixture(scope="module")
def teacher(digits):
    torch.manual_seed(0)
    model = build_model("paper-teacher", 10, 1, 8)
    fit(model, digits, config(epochs=6, weight_decay=5e-4))
    return model


def test_triplet_student_on_digits_learns_well_above_chance(digits, teacher):
    teacher_acc = (predict(teacher, digits.test.images).argmax(1) == digits.test.labels)
    assert teacher_acc.float().mean() > 0.8
    history = fit(student(), digits, config(epochs=8), method_config("triplet"), teacher)
    assert history.test_acc.iloc[-1] > 0.6  # chance is 0.1
    assert history.train_triplet.iloc[-1] < history.train_triplet.iloc[0]


@pytest.mark.parametrize("augment", [False, True], ids=["cached-logits", "live-teacher"])
def test_gradients_never_reach_the_teacher(small, teacher, augment):
    teacher.zero_grad(set_to_none=True)  # its own training left gradients behind
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    fit(student(), small, config(epochs=1, augment=augment), method_config("triplet-kd"),
        teacher)
    assert all(p.grad is None for p in teacher.parameters())
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. BatchNorm statistics


# ------------------------------------------------------------------------------ Ctrl-C ----


def test_ctrl_c_returns_history_so_far_and_a_checkpoint_of_the_last_epoch(small, tmp_path):
    steps = 200 // 50
    model = Trap(student(), n=2 * steps + 3, action="interrupt")  # inside epoch 3
    history = fit(model, small, config(epochs=5, checkpoint_dir=str(tmp_path)))
    assert history.attrs["interrupted"] is True
    assert history.epoch.tolist() == [1, 2]
    assert [p.name for p in list_checkpoints(tmp_path)][-1] == "epoch-0002.pt"
    state = safe_load(tmp_path / "epoch-0002.pt")
    assert state["history"]["epoch"] == [1, 2]
    # the returned model is the one of the last finished epoch, as the history says
    assert all(torch.equal(v, state["model"][k]) for k, v in model.state_dict().items())
    # ... and resuming finishes exactly like a run that was never interrupted
    never = 10**9
    resumed = fit(Trap(student(), never, "interrupt"), small,
                  config(epochs=5, checkpoint_dir=str(tmp_path), resume=True))
    full = fit(Trap(student(), never, "interrupt"), small, config(epochs=5))
    assert resumed.attrs["interrupted"] is False
    pd.testing.assert_frame_equal(full.drop(columns=TIMING), resumed.drop(columns=TIMING),
                                  check_exact=True)


# --------------------------------------------------------------------------- NaN and inf ----


def test_infinite_logits_stop_the_run_naming_epoch_batch_and_term(small, tmp_path):
    model = Trap(student(), n=4 + 3, action="inf")  # epoch 2, batch 3 (4 batches an epoch)
    with pytest.raises(NonFiniteLossError) as error:
        fit(model, small, config(epochs=4, checkpoint_dir=str(tmp_path)))
    message = str(error.value)
    assert re.search(r"the ce loss became nan at epoch 2, batch 3 of 4", message), message
    assert "the last good checkpoint is kept" in message
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-0001.pt"]
    assert safe_load(tmp_path / "epoch-0001.pt")["history"]["epoch"] == [1]


class InfTeacher(nn.Module):
    """A teacher whose every forward from the n-th on returns +inf logits."""

    def __init__(self, teacher: nn.Module, n: int):
        super().__init__()
        self.teacher, self.n, self.calls = teacher, n, 0

    def forward(self, x):
        self.calls += 1
        out = self.teacher(x)
        return out * float("inf") if self.calls >= self.n else out


def test_the_broken_component_is_named_not_just_the_total(small, teacher, tmp_path):
    # calls: 1 shape check, 1 test-split logits, then one per batch (augment: live teacher)
    bad = InfTeacher(teacher, n=2 + 4 + 3)  # epoch 2, batch 3
    obj = ObjectiveConfig(ce_weight=1.0, triplet_weight=2.0, negatives="batch-random")
    with pytest.raises(NonFiniteLossError) as error:
        fit(student(), small, config(epochs=3, augment=True, checkpoint_dir=str(tmp_path)), obj,
            bad)
    assert re.search(r"the triplet loss became nan at epoch 2, batch 3 of 4", str(error.value))


def test_teacher_logits_with_nan_are_refused(small, teacher):
    logits = predict(teacher, small.train.images), predict(teacher, small.test.images)
    logits[0][7, 3] = float("nan")
    with pytest.raises(ValueError, match=r"teacher_logits\['train'\] holds NaN"):
        fit(student(), small, config(epochs=1), method_config("triplet"), teacher,
            teacher_logits=logits)


def test_huge_learning_rate_is_caught(small, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"at epoch \d+"):
        fit(student(), small, config(epochs=20, lr=1e8, checkpoint_dir=str(tmp_path)))


# ------------------------------------------------------------------------ bad arguments ----


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", -3), ("batch_size", 0), ("batch_size", 2.5), ("lr", 0.0),
    ("lr", float("nan")), ("momentum", -0.1), ("weight_decay", float("inf")), ("seed", -1),
    ("lr_step", 0), ("epochs", True),
])
def test_train_config_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_resume_needs_a_folder():
    with pytest.raises(ValueError, match="checkpoint_dir"):
        TrainConfig(resume=True)


def test_unknown_or_absent_device_is_refused():
    with pytest.raises(ValueError, match="device='tpu9'"):
        pick_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            pick_device("cuda")


@pytest.mark.parametrize("name, kwargs", [
    ("model", {"model": ("paper-student", 7, 1, 8)}),
    ("model", {"model": ("paper-student", 10, 3, 8)}),
    ("teacher", {"teacher": ("paper-teacher", 100, 1, 8)}),
    ("teacher", {"teacher": ("paper-teacher", 10, 3, 8)}),
])
def test_a_network_that_does_not_fit_the_dataset_is_refused(small, name, kwargs):
    model = build_model(*kwargs.get("model", ("paper-student", 10, 1, 8)))
    teacher = build_model(*kwargs["teacher"]) if "teacher" in kwargs else None
    method = method_config("triplet") if teacher is not None else None
    with pytest.raises(ValueError, match=rf"^{name} "):
        fit(model, small, config(epochs=1), method, teacher)


def test_teacher_logits_of_the_wrong_shape_are_refused(small, teacher):
    good = predict(teacher, small.train.images), predict(teacher, small.test.images)
    with pytest.raises(ValueError, match=r"teacher_logits\['test'\] must have shape"):
        fit(student(), small, config(epochs=1), method_config("kd"), teacher,
            teacher_logits=(good[0], good[1][:, :5]))
    # a validation split needs its logits; without one there is no third tensor to give
    with pytest.raises(ValueError, match=r"\(train, test\)"):
        fit(student(), small, config(epochs=1), method_config("kd"), teacher,
            teacher_logits=(*good, good[1]))
    held = small.with_validation(40)
    with pytest.raises(ValueError, match="validation"):
        fit(student(), held, config(epochs=1), method_config("kd"), teacher,
            teacher_logits=(predict(teacher, held.train.images), good[1]))


def test_a_teacher_objective_without_teacher_is_refused(small):
    with pytest.raises(ValueError, match="teacher"):
        fit(student(), small, config(epochs=1), method_config("triplet"))


def test_on_epoch_sees_every_finished_epoch_row(small):
    rows = []
    history = fit(student(), small, config(epochs=3), on_epoch=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert pd.DataFrame(rows).equals(history)


def test_fingerprint_names_the_weights():
    a, b = student(0), student(0)
    assert fingerprint(a) == fingerprint(b) and len(fingerprint(a)) == 16
    assert fingerprint(None) is None
    with torch.no_grad():
        next(b.parameters())[0].flatten()[0] += 1e-3
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(student(1)) != fingerprint(a)


def test_predict_under_autocast_and_channels_last(small):
    model = student().eval()
    reference = predict(model, small.test.images, batch_size=64)
    assert reference.dtype == torch.float32 and reference.shape == (len(small.test), 10)
    torch.testing.assert_close(predict(model, small.test.images, channels_last=True), reference,
                               rtol=1e-4, atol=1e-4)
    low = predict(model, small.test.images, dtype=torch.bfloat16)
    assert low.dtype == torch.float32  # logits come back in float32
    torch.testing.assert_close(low, reference, rtol=0.05, atol=0.05)
    assert model.training is False


# ----------------------------------------------------------- relation and hint students ----


@pytest.mark.parametrize("method, overrides", [("rkd", {}), ("rkd", {"relation_space": "logits"}),
                                               ("pkt", {}), ("hint", {"hint_weight": 1.0})])
def test_relation_and_hint_students_learn_and_log_their_terms(digits, teacher, method,
                                                              overrides):
    obj = method_config(method, **overrides)
    history = fit(student(), digits, config(epochs=4), obj, teacher)
    for term in obj.terms:
        assert history[f"train_{term}"].notna().all() and history[f"test_{term}"].notna().all()
    term = obj.terms[1]  # the distillation term falls: the student copies the teacher
    assert history[f"train_{term}"].iloc[-1] < 0.9 * history[f"train_{term}"].iloc[0]


def test_hint_regressor_is_trained_checkpointed_and_resumed_exactly(small, teacher, tmp_path):
    obj = method_config("hint", hint_weight=1.0)
    fit(student(), small, config(epochs=2, checkpoint_dir=str(tmp_path)), obj, teacher)
    state = safe_load(list_checkpoints(tmp_path)[-1])
    assert set(state["regressor"]) == {"weight", "bias"}
    resumed = fit(student(), small, config(epochs=4, checkpoint_dir=str(tmp_path), resume=True),
                  obj, teacher)
    full = fit(student(), small, config(epochs=4), obj, teacher)
    pd.testing.assert_frame_equal(full.drop(columns=TIMING), resumed.drop(columns=TIMING),
                                  check_exact=True)
    later = safe_load(list_checkpoints(tmp_path)[-1])["regressor"]["weight"]
    assert not torch.equal(later, state["regressor"]["weight"])  # the regressor learns


def test_embedding_terms_need_forward_features(small, teacher):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="forward_features"):
        fit(plain, small, config(epochs=1), method_config("rkd"), teacher)


# ------------------------------------------------------------------------------ fidelity ----


def test_fidelity_is_agreement_and_kl_from_teacher_to_student_written_out():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(50, 10, generator=g) * 3, torch.randn(50, 10, generator=g) * 3
    got = fidelity(s, t)
    p_t = torch.softmax(t.double(), 1)
    kl = sum(float((p_t[i] * (p_t[i].log() - torch.log_softmax(s[i].double(), 0))).sum())
             for i in range(50)) / 50
    assert got["teacher_kl"] == pytest.approx(kl, rel=1e-5)
    assert got["teacher_agreement"] == pytest.approx(float((s.argmax(1) == t.argmax(1)).double()
                                                           .mean()))
    assert fidelity(t, t) == {"teacher_agreement": 1.0, "teacher_kl": pytest.approx(0, abs=1e-6)}


@pytest.mark.parametrize("method", ["ce", "triplet-self", "kd"])
def test_every_run_scores_its_fidelity_to_the_teacher_and_trains_as_without(small, teacher,
                                                                           method):
    """Fidelity only reads the model: the history's other columns and the weights are the
    ones of a run that does not score it; a teacher-free run scores it against
    ``reference_logits``."""
    obj = method_config(method)
    logits = tuple(predict(teacher, split.images) for split in (small.train, small.test))
    runs = []
    for reference in (None, logits):
        model = student(1)
        history = fit(model, small, config(epochs=2, seed=1), obj,
                      teacher if obj.needs_teacher else None, None, reference_logits=reference)
        runs.append((history, model))
    (plain, plain_model), (scored, scored_model) = runs
    assert {"test_teacher_agreement", "test_teacher_kl"} <= set(scored.columns)
    assert scored.test_teacher_agreement.between(0, 1).all() and (scored.test_teacher_kl >= 0).all()
    shared = [c for c in plain.columns if c not in TIMING]
    pd.testing.assert_frame_equal(plain[shared], scored[shared])
    for a, b in zip(plain_model.state_dict().values(), scored_model.state_dict().values()):
        assert torch.equal(a, b)


# ------------------------------------------------------------ a short last batch ----


@pytest.mark.parametrize("method, images", [("dist", 201), ("pkt", 201), ("rkd", 201),
                                            ("rkd", 202)])
def test_a_last_batch_too_small_for_a_relation_trains(digits, method, images):
    """201 images at batch 50 leave a last batch of 1 (202: of 2, too few for RKD's angles):
    a batch-level term adds nothing there instead of raising, and the epoch trains."""
    data = load_dataset("digits")
    data.train = digits.train.subset(images, seed=0)
    torch.manual_seed(1)
    teacher = build_model("paper-teacher", 10, 1, 8)
    obj = method_config(method)
    history = fit(student(), data, config(epochs=1), obj, teacher)
    for term in obj.terms:
        assert history[f"train_{term}"].notna().all() and history[f"test_{term}"].notna().all()
