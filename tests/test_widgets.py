"""tkd.widgets: every callback driven from Python, without a browser."""

import io
import threading

import matplotlib.image
import numpy as np
import pytest
import torch

from tkd import widgets
from tkd.data import load_dataset
from tkd.figure_checks import figure_problems
from tkd.losses import kd_loss
from tkd.models import build_model

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(data: bytes) -> bool:
    """A complete, decodable PNG (not a half-written one)."""
    data = bytes(data)
    return data.startswith(PNG) and matplotlib.image.imread(io.BytesIO(data)).ndim == 3


@pytest.fixture(scope="module")
def logits():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 30)
    teacher = (np.eye(5)[labels] * 8 + rng.normal(size=(150, 5))).astype(np.float32)
    student = (teacher * 0.5 + rng.normal(size=(150, 5)) * 2).astype(np.float32)
    return teacher, student, labels


@pytest.fixture(scope="module")
def small():
    """Digits with a 150-image training split and an (untrained) teacher."""
    data = load_dataset("digits")
    data.train = data.train.subset(150)
    data.test = data.test.subset(100)
    torch.manual_seed(0)
    teacher = build_model("paper-teacher", 10, 1, 8).eval()
    return data, teacher


def test_temperature_explorer(logits):
    teacher, student, labels = logits
    explorer = widgets.TemperatureExplorer(teacher, student, labels, images=3)
    assert len(set(labels[explorer.chosen])) == 3  # three images of distinct classes
    before_text, before_image = explorer.text.value, explorer.image.value
    explorer.slider.value = 12.0  # the observer redraws
    assert explorer.text.value != before_text and explorer.image.value != before_image
    assert _is_png(explorer.image.value)
    cold, hot = explorer.values(1.0), explorer.values(12.0)
    assert hot["entropy"] > cold["entropy"]  # softer targets at a higher temperature
    assert hot["probabilities"].shape == (3, 5)
    np.testing.assert_allclose(hot["probabilities"].sum(1), 1, atol=1e-5)
    expected = kd_loss(torch.from_numpy(teacher), torch.from_numpy(student), 12.0)
    assert hot["kd_loss"] == pytest.approx(float(expected), rel=1e-5)
    same = widgets.TemperatureExplorer(teacher, teacher, labels)
    assert same.values(4.0)["kd_loss"] == pytest.approx(0, abs=1e-5)


def test_margin_explorer(logits):
    teacher, student, labels = logits
    explorer = widgets.MarginExplorer(teacher, student, labels, batch_size=64)
    before_text, before_image = explorer.text.value, explorer.image.value
    explorer.on_change({"new": 12.0})
    assert explorer.text.value != before_text and explorer.image.value != before_image
    assert _is_png(explorer.image.value)
    shares = [explorer.values(m)["active"] for m in (0.0, 2.0, 5.0, 10.0, 40.0)]
    assert shares == sorted(shares) and shares[-1] == 1.0
    m = 3.0
    hinge = np.maximum(0, explorer.anchor_positive - explorer.anchor_negative + m)
    values = explorer.values(m)
    assert values["loss"] == pytest.approx(hinge.mean(), rel=1e-5)
    assert values["active"] == pytest.approx((hinge > 0).mean())
    assert len(explorer.anchor_positive) == 64
    # The negatives are of another class than their anchors.
    assert not np.any(np.all(explorer.negative.numpy() == explorer.positive.numpy(), axis=1))


def test_retrain_panel_trains_and_draws(small):
    data, teacher = small
    panel = widgets.RetrainPanel(data, teacher, epochs=2, map_method="pca", background=False)
    panel.kd_weight.value, panel.temperature.value = 0.5, 2.0
    assert panel.on_train_clicked() is True
    assert panel.error is None, panel.error
    assert panel.progress.value == panel.progress.max == 2
    assert _is_png(panel.map.value)
    row = panel.runs[0]
    assert row["objective"] == "1·CE + 0.5·KD(T=2) + 2·triplet(m=5)"
    assert 0 <= row["accuracy"] <= 1 and "accuracy" in panel.status.value
    assert "<table" in panel.table.value
    panel.train()  # same settings, same seed: the same student
    assert panel.runs[1]["accuracy"] == row["accuracy"]
    assert panel.runs[1]["distance"] == pytest.approx(row["distance"], rel=1e-5)


def test_retrain_panel_ignores_a_click_while_training(small, monkeypatch):
    data, teacher = small
    panel = widgets.RetrainPanel(data, teacher, epochs=1, map_method="pca")
    release = threading.Event()
    original = panel.train

    def slow_train():
        release.wait(30)  # keep the first run busy until the second click has happened
        return original()

    monkeypatch.setattr(panel, "train", slow_train)
    assert panel.on_train_clicked() is True
    assert panel.busy and panel.button.disabled
    assert panel.on_train_clicked() is False  # ignored, not queued
    assert panel.ignored_clicks == 1
    release.set()
    assert panel.wait(60)
    assert panel.error is None, panel.error
    assert len(panel.runs) == 1 and _is_png(panel.map.value)
    assert not panel.busy and not panel.button.disabled
    assert panel.on_train_clicked() is True  # a click after the run starts a new one
    assert panel.wait(60) and len(panel.runs) == 2


def test_retrain_panel_reports_bad_settings(small):
    data, teacher = small
    panel = widgets.RetrainPanel(data, teacher, epochs=1, map_method="pca", background=False)
    panel.ce_weight.value = panel.triplet_weight.value = panel.kd_weight.value = 0.0
    assert panel.on_train_clicked() is True
    assert isinstance(panel.error, ValueError)
    assert "failed" in panel.status.value and not panel.busy and not panel.runs
    panel.ce_weight.value = 1.0  # the panel is usable again
    panel.on_train_clicked()
    assert panel.error is None and len(panel.runs) == 1
    assert panel.runs[0]["objective"] == "1·CE"


def test_explorer_snapshots_draw_what_the_sliders_draw(logits):
    """The static pictures saved beside the live widgets: one panel per setting, titled with
    the same numbers the slider's text line gives at that setting."""
    teacher, student, labels = logits
    temperature = widgets.TemperatureExplorer(teacher, student, labels, images=3)
    fig = temperature.snapshot((1.0, 4.0))
    assert len(fig.axes) == 2 * 3 and _is_png(widgets.figure_png(fig))
    kd = temperature.values(4.0)["kd_loss"]
    assert f"KD loss {kd:.3f}" in fig.axes[3].get_ylabel()
    heights = [bar.get_height() for bar in fig.axes[3].patches]
    np.testing.assert_allclose(heights, temperature.values(4.0)["probabilities"][0], rtol=1e-6)

    assert figure_problems(fig) == []

    margin = widgets.MarginExplorer(teacher, student, labels, batch_size=64)
    fig = margin.snapshot((0.0, 5.0, 20.0))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 3 and _is_png(widgets.figure_png(fig))
    for ax, m in zip(shown, (0.0, 5.0, 20.0)):
        assert ax.get_title().startswith(f"m = {m:g}: {100 * margin.values(m)['active']:.0f} %")
    assert figure_problems(fig) == []  # two a row: its text reads at a notebook's width


def test_retrain_panel_snapshot_shows_every_run(small):
    data, teacher = small
    panel = widgets.RetrainPanel(data, teacher, epochs=1, map_method="pca", background=False)
    with pytest.raises(ValueError):
        panel.snapshot()
    panel.train()
    panel.triplet_weight.value = 0.0
    panel.train()
    fig = panel.snapshot()
    assert figure_problems(fig) == []
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert len(titles) == 2 and titles[0].startswith("run 1: 1·CE + 2·triplet(m=5)")
    assert titles[1].startswith("run 2: 1·CE: accuracy")
    assert _is_png(widgets.figure_png(fig))


def test_panels_display_as_widgets(logits):
    teacher, student, labels = logits
    bundle = widgets.MarginExplorer(teacher, student, labels)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_retrain_panel_trains_on_data_with_a_validation_split():
    """The notebooks' data has a validation split: the panel's cached teacher logits cover it."""
    from tkd import experiments as ex
    from tkd.models import build_model
    from tkd.widgets import RetrainPanel

    data = ex.load_data(ex.get_preset("quick"))
    teacher = build_model("paper-teacher", data.num_classes, data.in_channels, data.image_size)
    panel = RetrainPanel(data, teacher, epochs=1, map_method="pca", background=False)
    panel.epochs.value = 1
    row = panel.train()
    assert row["epochs"] == 1 and 0.0 <= row["accuracy"] <= 1.0


def test_retrain_panel_trains_where_the_trainer_would(small, monkeypatch):
    """No device given: tkd.train.pick_device's choice (a GPU when present), not a fixed CPU;
    the device reaches fit's TrainConfig."""
    from tkd.train import pick_device

    data, teacher = small
    panel = widgets.RetrainPanel(data, teacher, epochs=1, map_method="pca", background=False)
    assert panel.device == str(pick_device())
    seen, original = [], widgets.fit

    def spy(model, data, config, *args, **kwargs):
        seen.append(config.device)
        return original(model, data, config, *args, **kwargs)

    monkeypatch.setattr(widgets, "fit", spy)
    cpu = widgets.RetrainPanel(data, teacher, epochs=1, map_method="pca", background=False,
                               device="cpu")
    cpu.train()
    assert seen == ["cpu"] and "on cpu" not in cpu.status.value  # the final line replaced it


def test_widget_bundle_names_the_model():
    """What a panel displays, under ipywidgets 7 (no _repr_mimebundle_) and 8 alike."""
    html = widgets.W.HTML("x")
    bundle = widgets.widget_bundle(html)
    assert bundle[widgets.WIDGET_VIEW]["model_id"] == html.model_id
    assert bundle[widgets.WIDGET_VIEW]["version_major"] == 2
