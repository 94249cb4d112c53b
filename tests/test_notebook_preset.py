"""tkd.notebooks: which preset "auto" means, TKD_PRESET, the banner, and the saved students."""

from __future__ import annotations

import dataclasses
import gzip

import pytest
import torch

from tkd import data as tkd_data
from tkd import experiments as ex
from tkd import notebooks
from tkd.data import IDX_FILES, load_dataset


@pytest.fixture
def no_fashion(tmp_path, monkeypatch):
    """No Fashion-MNIST anywhere: an empty TKD_DATA, no Debian folder, no TKD_PRESET."""
    monkeypatch.setenv("TKD_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(tkd_data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.delenv("TKD_PRESET", raising=False)
    monkeypatch.setattr(notebooks, "looks_online", lambda: False)
    return tmp_path / "data"


def _write_fashion(folder):
    """Four gzip files of the IDX layout (their content is never read by the search)."""
    folder.mkdir(parents=True)
    for stem in (s for pair in IDX_FILES.values() for s in pair):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(b"\x00"))


def test_auto_is_quick_without_fashion_mnist(no_fashion, capsys):
    assert notebooks.choose_preset() == "quick"
    out = capsys.readouterr().out
    assert "Preset quick" in out and "359 test images, one image = 0.28 points" in out
    assert "differ from the Fashion-MNIST verdict" in out


def test_auto_is_fashion_when_tkd_data_holds_it(no_fashion, capsys):
    _write_fashion(no_fashion / "fashion-mnist")
    assert notebooks.choose_preset("auto") == "fashion"
    assert str(no_fashion / "fashion-mnist") in capsys.readouterr().out


def test_a_torchvision_download_counts(no_fashion):
    _write_fashion(no_fashion / "fashion-mnist" / "FashionMNIST" / "raw")
    assert notebooks.fashion_source() == no_fashion / "fashion-mnist" / "FashionMNIST" / "raw"


def test_download_is_tried_only_when_online(no_fashion, monkeypatch):
    tried = []

    def fake_load(name, download):
        tried.append((name, download))
        _write_fashion(no_fashion / "fashion-mnist")

    monkeypatch.setattr(notebooks, "load_dataset", fake_load)
    assert notebooks.choose_preset(show=False) == "quick" and not tried  # offline: no attempt
    monkeypatch.setattr(notebooks, "looks_online", lambda: True)
    assert notebooks.choose_preset(show=False) == "fashion"
    assert tried == [("fashion-mnist", True)]


def test_tkd_preset_overrides_auto_but_not_an_explicit_choice(no_fashion, monkeypatch):
    monkeypatch.setenv("TKD_PRESET", "fashion")
    assert notebooks.choose_preset(show=False) == "fashion"
    assert notebooks.choose_preset("quick", show=False) == "quick"


def test_unknown_preset_is_refused(no_fashion):
    with pytest.raises(ValueError, match="unknown preset"):
        notebooks.choose_preset("nope", show=False)


def test_debian_package_is_found_when_installed():
    if not (tkd_data.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist")
    assert notebooks.fashion_source(download=False) is not None


def test_quick_note_counts_the_digits_test_split():
    assert len(load_dataset("digits").test) == notebooks.QUICK_TEST_IMAGES


def test_banner_is_markdown_in_a_kernel(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.get_ipython", lambda: object())
    monkeypatch.setattr("IPython.display.display", shown.append)
    notebooks._show("**x**")
    assert shown and shown[0].data == "**x**"


SHORT = dataclasses.replace(ex.PRESETS["quick"], name="short", epochs=1, teacher_epochs=1,
                            subset=100)


def test_saved_student_loads_a_current_one_trains_a_small_one_and_refuses_a_large_one(
        tmp_path, monkeypatch):
    monkeypatch.setitem(ex.PRESETS, "short", SHORT)
    monkeypatch.setenv("TKD_RESULTS", str(tmp_path))
    data = ex.load_data(SHORT)
    messages = []
    trained = notebooks.saved_student("short", "ce", 1, data, None, log=messages.append)
    assert not trained.training and "never saved" in messages[0]
    assert not list(tmp_path.rglob("*.pt"))  # trained in memory, nothing written
    monkeypatch.setattr(notebooks, "SMALL_TRAIN_SET", len(data.train) - 1)
    with pytest.raises(ValueError, match=r"never saved; run `python -m tkd reproduce "
                                         r"--preset short --experiments ce --seeds 1`"):
        notebooks.saved_student("short", "ce", 1, data, None)
    ex.run_experiment(SHORT, "ce", 1, data)  # saves 1.pt with its record
    messages.clear()
    saved = notebooks.saved_student("short", "ce", 1, data, None, log=messages.append)
    assert messages == ["ce: loaded 1.pt"] and not saved.training
    torch.testing.assert_close(saved.state_dict(), ex.load_student(SHORT, "ce", 1).state_dict())
    monkeypatch.setattr(notebooks, "SMALL_TRAIN_SET", len(data.train))
    data.train = data.train.subset(50)  # not the data the saved student was trained on
    notebooks.saved_student("short", "ce", 1, data, None, log=messages.append)
    assert "other data" in messages[1]
    assert len(list(tmp_path.rglob("*.pt"))) == 1  # still only the saved one: nothing written
