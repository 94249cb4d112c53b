"""Whether a record is current (tkd.staleness), on tiny real runs of `digits`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.helpers import edit_record
from tkd import experiments as ex
from tkd import records as rc
from tkd import runs as rn

torch.set_num_threads(1)  # a busy 2-core machine: more threads only spin


TINY = dataclasses.replace(ex.PRESETS["quick"], epochs=2, teacher_epochs=1, seeds=(1,),
                           headline_seeds=(1,), sweep_seeds=(1,))


SHORT = dataclasses.replace(TINY, name="short", epochs=1, subset=100)


@pytest.fixture
def saved_ce(tmp_path, monkeypatch):
    """A saved full-length ce student of a 1-epoch preset, with its record."""
    monkeypatch.setitem(ex.PRESETS, "short", SHORT)
    data = ex.load_data(SHORT)
    rn.run_experiment(SHORT, "ce", 1, data, root=tmp_path)
    return tmp_path, data


@pytest.mark.parametrize("change", ["settings", "data", "code"])
def test_a_saved_student_with_a_stale_record_is_refused_or_retrained(saved_ce, change):
    root, data = saved_ce
    rn.load_student(SHORT, "ce", root=root, data_identity=data.identity())  # current
    record = rc.result_path(SHORT, "ce", 1, root)
    if change == "settings":
        edit_record(record, "config", "train", "lr", 0.5)
    elif change == "data":
        edit_record(record, "provenance", "data", {"name": "digits", "sizes": {}})
    else:
        edit_record(record, "provenance", "code", {"tkd.train.fit": "000000000000"})
    reason = {"settings": r"settings changed \(train\)", "data": "other data",
              "code": "code changed since it was recorded: tkd.train.fit"}[change]
    with pytest.raises(ValueError, match=reason):
        rn.load_student(SHORT, "ce", root=root, data_identity=data.identity())
    with pytest.raises(ValueError, match=f"{reason}.*--preset short --experiments ce"):
        rn.load_or_train_student(SHORT, "ce", data, None, root=root, retrain=False,
                                 log=lambda _: None)
    messages = []
    model = rn.load_or_train_student(SHORT, "ce", data, None, root=root,
                                     log=messages.append)  # full length: retrained
    assert "training it here" in messages[0] and "trained 1 epochs" in messages[1]
    assert not model.training
    rn.load_student(SHORT, "ce", root=root, data_identity=data.identity())  # current again


def test_a_reworded_label_leaves_a_record_current_and_a_changed_setting_does_not(saved_ce):
    root, data = saved_ce
    record = rc.result_path(SHORT, "ce", 1, root)
    edit_record(record, "config", "label", "an older wording of the same run")
    rn.load_student(SHORT, "ce", root=root, data_identity=data.identity())  # still current
    edit_record(record, "config", "model", "another network")
    with pytest.raises(ValueError, match=r"settings changed \(model\)"):
        rn.load_student(SHORT, "ce", root=root, data_identity=data.identity())


def test_a_stale_code_reason_names_only_what_changed_after_the_vouched_code(tmp_path,
                                                                             monkeypatch):
    """A record whose fingerprint an equivalence entry bridges to newer code, and one
    definition changed after that: the reason names that definition alone, not the many
    the entry vouches for."""
    import json

    from tkd import staleness as st
    from tkd.provenance import EQUIVALENCE_FILE, fingerprint_digest

    old = {f"tkd.data.f{i}": "a" * 12 for i in range(40)}
    vouched = {f"tkd.objective.f{i}": "b" * 12 for i in range(40)}
    today = {**vouched, "tkd.objective.f7": "c" * 12}
    entry = {"from": fingerprint_digest(old), "to": fingerprint_digest(vouched),
             "from_code": old, "to_code": vouched}
    (tmp_path / EQUIVALENCE_FILE).write_text(json.dumps([entry]))
    monkeypatch.setattr(st, "code_fingerprint", lambda: today)
    assert st.code_reason({"code": old}, tmp_path) == \
        "the code changed since it was recorded: tkd.objective.f7"
    assert st.code_reason({"code": vouched}, tmp_path) == \
        "the code changed since it was recorded: tkd.objective.f7"
    assert st.code_reason({"code": old}, tmp_path / "none").startswith(
        "the code changed since it was recorded: tkd.data.f0, tkd.data.f1, tkd.data.f10 "
        "(+37 more)")  # no entry: every change of the record's own code
    monkeypatch.setattr(st, "code_fingerprint", lambda: vouched)
    assert st.code_reason({"code": old}, tmp_path) is None
