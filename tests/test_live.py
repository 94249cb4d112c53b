"""EpochLog: history.csv after every epoch, and real TensorBoard event files."""

import os
import sys

import pandas as pd
import pytest

from tkd import files, live
from tkd.live import MISSING_TENSORBOARD, EpochLog, numeric_items, scalar_tag


def epoch_row(epoch: int) -> dict:
    return {"epoch": epoch, "lr": 0.1 / epoch, "train_total": 2.0 / epoch,
            "train_triplet": 0.5 / epoch, "train_acc": 0.5 + 0.1 * epoch,
            "val_acc": 0.4 + 0.1 * epoch, "val_triplet": 0.3 / epoch,
            "test_acc": 0.45 + 0.1 * epoch, "images_per_second": 1000.0 * epoch,
            "epoch_seconds": 2.5, "strategy": "sample", "resumed": False}


def read_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_history_csv_grows_by_one_row_per_epoch(tmp_path):
    log = EpochLog(tmp_path / "run")
    for epoch in (1, 2, 3):
        log(epoch_row(epoch))
        frame = pd.read_csv(tmp_path / "run" / "history.csv")
        assert len(frame) == epoch
        assert frame["epoch"].tolist() == list(range(1, epoch + 1))
        assert frame["val_acc"].iloc[-1] == pytest.approx(epoch_row(epoch)["val_acc"])
    assert list(frame.columns) == list(epoch_row(1))
    log.close()


def test_columns_that_appear_later_are_kept(tmp_path):
    with EpochLog(tmp_path) as log:
        log({"epoch": 1, "train_total": 1.0})
        log({"epoch": 2, "train_total": 0.5, "val_acc": 0.7})
    frame = pd.read_csv(tmp_path / "history.csv")
    assert frame["val_acc"].isna().tolist() == [True, False]


def test_previous_rows_stay_in_the_csv_when_resuming(tmp_path):
    with EpochLog(tmp_path, previous=[epoch_row(1), epoch_row(2)]) as log:
        log(epoch_row(3))
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3]


def test_the_csv_is_written_by_the_atomic_writer(tmp_path, monkeypatch):
    calls = []

    def spy(frame, path, **kwargs):
        calls.append(path)
        return files.atomic_write_csv(frame, path, **kwargs)

    monkeypatch.setattr(live, "atomic_write_csv", spy)
    log = EpochLog(tmp_path)
    log(epoch_row(1))
    log(epoch_row(2))
    assert calls == [tmp_path / "history.csv"] * 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]  # no temporary left


def test_a_failed_rewrite_keeps_the_previous_csv_whole(tmp_path, monkeypatch):
    log = EpochLog(tmp_path)
    log(epoch_row(1))
    before = (tmp_path / "history.csv").read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        log(epoch_row(2))
    assert (tmp_path / "history.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_no_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with EpochLog(None) as log:
        log(epoch_row(1))
    assert list(tmp_path.iterdir()) == []
    assert len(log.rows) == 1


def test_tensorboard_event_file_holds_every_numeric_key(tmp_path):
    board = tmp_path / "tb"
    with EpochLog(tmp_path / "run", tensorboard=board, run_name="kd-sample") as log:
        for epoch in (1, 2, 3):
            log(epoch_row(epoch))
            assert read_scalars(board / "kd-sample")["acc/test"][-1][0] == epoch  # flushed
    scalars = read_scalars(board / "kd-sample")
    assert set(scalars) == {"lr", "loss/train_total", "loss/train_triplet", "acc/train",
                            "acc/val", "loss/val_triplet", "acc/test",
                            "speed/images_per_second", "speed/epoch_seconds"}
    for key in ("lr", "train_total", "val_acc", "images_per_second"):
        points = scalars[scalar_tag(key)]
        assert [step for step, _ in points] == [1, 2, 3]
        assert [value for _, value in points] == pytest.approx(
            [epoch_row(e)[key] for e in (1, 2, 3)])


def test_tensorboard_without_run_name_writes_in_the_folder(tmp_path):
    with EpochLog(None, tensorboard=tmp_path) as log:
        log({"epoch": 5, "lr": 0.01})
    assert read_scalars(tmp_path) == {"lr": [(5, pytest.approx(0.01))]}


def test_close_twice_is_harmless(tmp_path):
    log = EpochLog(None, tensorboard=tmp_path)
    log.close()
    log.close()


def test_missing_tensorboard_is_explained_at_construction(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError) as error:
        EpochLog(tmp_path, tensorboard=tmp_path / "tb")
    assert str(error.value) == MISSING_TENSORBOARD
    assert "pip install 'tkd[tensorboard]'" in str(error.value)
    EpochLog(tmp_path)(epoch_row(1))  # the CSV alone needs no tensorboard


@pytest.mark.parametrize("key, tag", [
    ("train_total", "loss/train_total"), ("val_triplet", "loss/val_triplet"),
    ("test_acc", "acc/test"), ("train_acc", "acc/train"), ("lr", "lr"),
    ("images_per_second", "speed/images_per_second"), ("teacher_acc", "teacher_acc"),
    ("train", "train"),
])
def test_scalar_tags(key, tag):
    assert scalar_tag(key) == tag


def test_numeric_items_leave_out_text_and_bools():
    import numpy as np

    row = {"a": 1, "b": np.float32(0.5), "c": "x", "d": True, "e": None, "f": np.int64(3)}
    assert numeric_items(row) == {"a": 1.0, "b": 0.5, "f": 3.0}


class FakeTime:
    """A perf_counter the test moves by hand."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


def test_run_clock_adds_the_seconds_of_earlier_sessions_up_to_the_resumed_epoch(
        tmp_path, monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(live, "time", fake)
    first = live.RunClock(tmp_path)
    for epoch, at in ((1, 110.0), (2, 130.0), (3, 160.0)):
        fake.now = at
        first({"epoch": epoch})
    fake.now = 175.0  # killed in epoch 4; say epoch 3's checkpoint was lost: resume after 2
    fake.now = 500.0
    second = live.RunClock(tmp_path)
    for epoch, at in ((3, 540.0), (4, 550.0)):
        fake.now = at
        second({"epoch": epoch})
    fake.now = 552.0
    # 30 s up to epoch 2 in the first session, then 52 s of the second; the cut-off work of
    # the first session (epochs 3 and 4 up to the kill) is not counted
    assert second.total(4) == pytest.approx(30.0 + 52.0)
    assert live.RunClock(tmp_path).saved == pytest.approx([10.0, 30.0, 70.0, 80.0])


def test_run_clock_of_a_fresh_run_ignores_a_stale_or_damaged_file(tmp_path, monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(live, "time", fake)
    (tmp_path / "seconds.json").write_text('{"seconds": [1000.0, 2000.0]}')
    clock = live.RunClock(tmp_path)
    fake.now = 105.0
    clock({"epoch": 1})  # epoch 1 run here: nothing was resumed
    assert clock.total(1) == pytest.approx(5.0)
    (tmp_path / "seconds.json").write_text("not json")
    assert live.RunClock(tmp_path).total(0) == pytest.approx(0.0)

