"""Widgets to move the KD temperature and the triplet margin and watch what changes.

Three panels, each a small class holding its ipywidgets (``.widget``, shown by displaying the
object) and plain methods that do the work, so everything can be driven from Python in tests:

- :class:`TemperatureExplorer` — slider ``T``: the teacher's ``softmax(t / T)`` for a few
  images and the KD loss ``T^2 KL`` of a student against it.
- :class:`MarginExplorer` — slider ``margin``: on a real batch of triplets (anchor ``t(x)``,
  positive ``s(x)``, negative ``s(x')``) the triplet loss, the share of active triplets and the
  anchor–positive vs. anchor–negative distances.
- :class:`RetrainPanel` — sliders for margin, temperature, loss weights and epochs, and a Train
  button: trains a student in a worker thread with a live progress bar, then shows its accuracy,
  its numbers against the teacher and the shared UMAP map. A click while training is ignored.

Figures are PNG bytes in ``ipywidgets.Image`` widgets: replacing a value is atomic, so a
redraw never leaves a half-drawn plot.

A widget draws nothing until a kernel runs it, and a saved notebook keeps only its model, not
its pictures. So every panel also has ``snapshot(...)``: one matplotlib ``Figure`` showing what
the panel draws at a few slider settings (the explorers) or for every run so far (the retrain
panel), made by the same code as the live picture. Displayed beside the live widget, it is what
a reader sees on GitHub or before the kernel starts.

Works with ipywidgets 7.7 (Colab's) and 8 (JupyterLab 4): only widgets, traits and options
that both versions share are used, and a panel displays through :func:`widget_bundle`, which
ipywidgets 7 (whose widgets have no ``_repr_mimebundle_``) needs as much as 8.
"""

from __future__ import annotations

import threading
import time

import ipywidgets as W
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from tkd.data import Dataset
from tkd.embed import collect, logit_metrics, shared_map
from tkd.losses import distance, kd_loss, triplet_kd_loss
from tkd.miners import fixed_negatives
from tkd.models import build_model
from tkd.objective import ObjectiveConfig
from tkd.plots import (
    _class_legend,
    _class_palette,
    _finish,
    _margin_axes,
    _pair_lines,
    _scatter,
    figure_png,
    panel_grid,
    plot_margin,
    plot_soft_targets,
    plot_students,
)
from tkd.train import TrainConfig, fit, pick_device

STYLE = {"description_width": "110px"}
LAYOUT = W.Layout(width="420px")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_bundle(widget: W.Widget) -> dict:
    """The display data of ``widget`` (what ``display(widget)`` sends), under ipywidgets 7 and
    8 alike: 8 builds it in ``_repr_mimebundle_``; 7 only has ``_ipython_display_``, so the
    same bundle (widget-view version 2.0, the model id, a plain-text fallback) is built here."""
    own = getattr(widget, "_repr_mimebundle_", None)
    if own is not None:
        return own()
    return {"text/plain": repr(widget),
            WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}}


class _Panel:
    """Displaying the object displays its ``widget``."""

    widget: W.Widget

    def _repr_mimebundle_(self, **kwargs):
        return widget_bundle(self.widget)


class _SliderPanel(_Panel):
    """One slider above a line of text and a picture; moving it calls ``update(value)``."""

    def _build(self, slider: W.FloatSlider, image_width: str) -> None:
        self.slider, self.text = slider, W.HTML()
        self.image = W.Image(format="png", layout=W.Layout(width=image_width))
        self.slider.observe(self.on_change, names="value")
        self.widget = W.VBox([self.slider, self.text, self.image])
        self.update(slider.value)

    def update(self, value: float) -> dict:
        raise NotImplementedError

    def on_change(self, change: dict) -> None:
        """Slider observer: ``change["new"]`` is the slider's new value."""
        self.update(change["new"])


def _as_tensor(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)


class TemperatureExplorer(_SliderPanel):
    """Teacher soft targets and the student's KD loss as a function of the temperature.

    teacher_logits, student_logits: (N, classes); labels: (N,). ``images`` of them (one per
    class among the first samples of a seeded shuffle) are drawn; the loss uses all N.
    """

    def __init__(self, teacher_logits, student_logits, labels, class_names=None, images: int = 3,
                 temperature: float = 4.0, seed: int = 0):
        self.teacher, self.student = _as_tensor(teacher_logits), _as_tensor(student_logits)
        self.labels = np.asarray(labels)
        self.class_names = class_names
        order = np.random.default_rng(seed).permutation(len(self.labels))
        _, first = np.unique(self.labels[order], return_index=True)
        self.chosen = order[np.sort(first)][:images]  # the first images of distinct classes
        self._build(W.FloatSlider(value=temperature, min=0.5, max=20.0, step=0.5,
                                  description="temperature T", continuous_update=False,
                                  style=STYLE, layout=LAYOUT), f"{300 * images}px")

    def values(self, temperature: float) -> dict:
        """Soft targets (images, classes) of the chosen images, the mean teacher entropy (nats)
        and the KD loss ``T^2 KL(softmax(t/T) || softmax(s/T))`` over all samples at ``T``."""
        soft = torch.softmax(self.teacher / temperature, dim=1)
        entropy = -(soft * torch.log(soft.clamp_min(1e-12))).sum(1).mean()
        return {"temperature": float(temperature),
                "probabilities": soft[self.chosen].numpy(),
                "entropy": float(entropy),
                "kd_loss": float(kd_loss(self.teacher, self.student, temperature))}

    def snapshot(self, temperatures=(1.0, 2.0, 4.0, 20.0)) -> Figure:
        """What the slider draws at each of ``temperatures``: one row of bar panels per
        temperature (the chosen images' soft targets, the true class in red), the row's mean
        entropy and KD loss in its panels' titles."""
        names = self.class_names or [str(c) for c in range(self.teacher.shape[1])]
        images, classes = len(self.chosen), self.teacher.shape[1]
        fig = Figure(figsize=(min(3.3, 8.6 / images) * images + 0.4, 2.1 * len(temperatures) + 1.3))
        axes = fig.subplots(len(temperatures), images, sharex=True, sharey=True, squeeze=False)
        true = self.labels[self.chosen]
        for row, temperature in zip(axes, temperatures):
            values = self.values(temperature)
            for i, ax in enumerate(row):
                colours = ["C3" if c == true[i] else "C0" for c in range(classes)]
                ax.bar(range(classes), values["probabilities"][i], color=colours)
                ax.set_ylim(0, 1)
                ax.set_title(f"T = {temperature:g}, image {i + 1} ({names[true[i]]})", fontsize=9)
                ax.grid(axis="y", alpha=0.3)
            row[0].set_ylabel(f"probability\nentropy {values['entropy']:.2f} nats\n"
                              f"KD loss {values['kd_loss']:.3f}", fontsize=9)
        for ax in axes[-1]:
            ax.set_xticks(range(classes), names, rotation=90 if max(map(len, names)) > 3 else 0)
            ax.set_xlabel("class (red: the true one)")
        fig.suptitle("The temperature slider at a few settings: the teacher's soft targets "
                     "softmax(t / T)\n(row label: mean entropy over all images, the student's "
                     "KD loss T²·KL)")
        fig.tight_layout()
        return fig

    def update(self, temperature: float) -> dict:
        """Recompute at ``temperature`` and redraw; returns :meth:`values`."""
        values = self.values(temperature)
        fig = plot_soft_targets(values["probabilities"], temperature, self.labels[self.chosen],
                                self.class_names)
        self.image.value = figure_png(fig)  # the picture first, then the text that describes it
        most = np.log(self.teacher.shape[1])
        self.text.value = (f"T = {temperature:g}: mean entropy of the teacher's soft targets "
                           f"<b>{values['entropy']:.3f}</b> nats (max {most:.2f}); "
                           f"student's KD loss T²·KL = <b>{values['kd_loss']:.4f}</b>")
        return values


class MarginExplorer(_SliderPanel):
    """The triplet loss on one real batch as a function of the margin.

    teacher_logits, student_logits: (N, classes); labels: (N,). The batch is ``batch_size``
    samples of a seeded shuffle; each sample's negative is its fixed other-class sample
    (:func:`tkd.miners.fixed_negatives`, ``seed``).
    """

    def __init__(self, teacher_logits, student_logits, labels, batch_size: int = 100,
                 margin: float = 5.0, max_margin: float = 20.0, seed: int = 0):
        teacher, student = _as_tensor(teacher_logits), _as_tensor(student_logits)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        negatives = fixed_negatives(labels, int(labels.max()) + 1, seed)
        batch = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        batch = batch[:batch_size]
        self.anchor, self.positive = teacher[batch], student[batch]
        self.negative = student[negatives[batch]]
        self.anchor_positive = distance(self.anchor, self.positive).numpy()
        self.anchor_negative = distance(self.anchor, self.negative).numpy()
        self._build(W.FloatSlider(value=margin, min=0.0, max=max_margin, step=0.5,
                                  description="margin m", continuous_update=False,
                                  style=STYLE, layout=LAYOUT), "470px")

    def values(self, margin: float) -> dict:
        """Triplet loss (the paper's, :func:`tkd.losses.triplet_kd_loss`), share of active
        triplets (positive hinge) and mean distances, for the batch at ``margin``."""
        loss = triplet_kd_loss(self.anchor, self.positive, self.negative, margin)
        active = self.anchor_positive - self.anchor_negative + margin > 0
        return {"margin": float(margin), "loss": float(loss), "active": float(active.mean()),
                "anchor_positive": float(self.anchor_positive.mean()),
                "anchor_negative": float(self.anchor_negative.mean())}

    def snapshot(self, margins=(0.0, 5.0, 10.0, 20.0)) -> Figure:
        """What the slider draws at each of ``margins``, side by side on the same axes: each
        triplet at (d(a,p), d(a,n)), active ones red, the line ``d(a,n) = d(a,p) + m``."""
        rows, columns = panel_grid(len(margins), 2)
        fig = Figure(figsize=(4.3 * columns, 3.9 * rows + 0.6))
        grid = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        axes = grid.ravel()
        for ax, margin in zip(axes, margins):
            values = self.values(margin)
            _margin_axes(ax, self.anchor_positive, self.anchor_negative, margin,
                         title=f"m = {margin:g}: {100 * values['active']:.0f} % active, "
                               f"loss {values['loss']:.3f}")
            ax.xaxis.label.set_fontsize(9)
            ax.yaxis.label.set_fontsize(9)
        for ax in axes[len(margins):]:
            ax.set_visible(False)
        top = float(max(self.anchor_positive.max(), self.anchor_negative.max(), max(margins)))
        axes[0].set_ylim(0, top * 1.1)
        for ax in grid[:, 1:].ravel():
            ax.set_ylabel("")
        for ax in grid[:-1].ravel():
            ax.set_xlabel("")
        fig.suptitle(f"The margin slider at a few settings: the {len(self.anchor)} triplets\n"
                     "of the batch (red: active, loss > 0)")
        fig.tight_layout()
        return fig

    def update(self, margin: float) -> dict:
        """Recompute at ``margin`` and redraw; returns :meth:`values`."""
        values = self.values(margin)
        self.image.value = figure_png(plot_margin(self.anchor_positive, self.anchor_negative,
                                                  margin))  # the picture first, then the text
        self.text.value = (f"margin {margin:g}: triplet loss <b>{values['loss']:.3f}</b>, "
                           f"active triplets <b>{100 * values['active']:.0f}%</b> of "
                           f"{len(self.anchor)}; mean d(a,p) {values['anchor_positive']:.2f}, "
                           f"mean d(a,n) {values['anchor_negative']:.2f}")
        return values


class RetrainPanel(_Panel):
    """Train a student with the chosen margin, temperature and loss weights; see the result.

    data: the dataset (the test split is the one embedded); teacher: a trained teacher.
    ``background=False`` trains in the caller's thread (for scripts and tests). ``device``:
    where the students train, by default :func:`tkd.train.pick_device`'s choice (a GPU when
    there is one, with the trainer's defaults there; else the CPU).
    """

    def __init__(self, data: Dataset, teacher: nn.Module, student_model: str = "paper-student",
                 epochs: int = 10, lr: float = 0.01, seed: int = 1, map_method: str = "umap",
                 background: bool = True, device: str | None = None):
        self.device = str(pick_device(device))
        self.data, self.student_model = data, student_model
        self.teacher = teacher.to(self.device).eval()  # where fit would move it anyway
        self.lr, self.seed, self.map_method, self.background = lr, seed, map_method, background
        splits = [data.train, data.test] + ([data.validation] if data.validation else [])
        self.teacher_logits = tuple(torch.from_numpy(collect(self.teacher, split).logits)
                                    for split in splits)  # (train, test[, validation])
        slider = dict(continuous_update=False, style=STYLE, layout=LAYOUT)
        self.margin = W.FloatSlider(value=5.0, min=0.0, max=20.0, step=0.5,
                                    description="margin m", **slider)
        self.temperature = W.FloatSlider(value=4.0, min=0.5, max=20.0, step=0.5,
                                         description="temperature T", **slider)
        self.ce_weight = W.FloatSlider(value=1.0, min=0.0, max=5.0, step=0.25,
                                       description="CE weight", **slider)
        self.kd_weight = W.FloatSlider(value=0.0, min=0.0, max=5.0, step=0.25,
                                       description="KD weight", **slider)
        self.triplet_weight = W.FloatSlider(value=2.0, min=0.0, max=5.0, step=0.25,
                                            description="triplet weight", **slider)
        self.epochs = W.IntSlider(value=epochs, min=1, max=60, description="epochs", **slider)
        self.button = W.Button(description="Train", button_style="primary", icon="play")
        self.progress = W.IntProgress(value=0, min=0, max=epochs, description="epochs done",
                                      style=STYLE)
        self.status = W.HTML("Press <b>Train</b> to train a student with these settings.")
        self.map = W.Image(format="png", layout=W.Layout(width="520px"))
        self.table = W.HTML()
        self.button.on_click(self.on_train_clicked)
        controls = W.VBox([self.margin, self.temperature, self.ce_weight, self.kd_weight,
                           self.triplet_weight, self.epochs, W.HBox([self.button, self.progress])])
        self.widget = W.VBox([controls, self.status, self.map, self.table])
        self.runs: list[dict] = []
        self.maps: list[pd.DataFrame] = []  # each run's map (tkd.embed.shared_map), in order
        self.ignored_clicks = 0
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True while a training run is in progress."""
        return self._lock.locked()

    def objective(self) -> ObjectiveConfig:
        """The objective the sliders describe (``ValueError`` if every weight is 0)."""
        return ObjectiveConfig(ce_weight=self.ce_weight.value, kd_weight=self.kd_weight.value,
                               temperature=self.temperature.value,
                               triplet_weight=self.triplet_weight.value, margin=self.margin.value)

    def on_train_clicked(self, _button=None) -> bool:
        """The Train button: start a run unless one is in progress (then the click is counted in
        ``ignored_clicks`` and dropped). Returns whether a run was started."""
        if not self._lock.acquire(blocking=False):
            self.ignored_clicks += 1
            return False
        self.button.disabled = True
        self.error = None
        if self.background:
            self._thread = threading.Thread(target=self._run_and_release, daemon=True)
            self._thread.start()
        else:
            self._run_and_release()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run ends (or ``timeout`` s pass); True if none is running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.busy

    def _run_and_release(self) -> None:
        try:
            self.train()
        except Exception as error:  # noqa: BLE001 - shown to the user, kept for inspection
            self.error = error
            self.status.value = f"<b>Training failed:</b> {type(error).__name__}: {error}"
        finally:
            self.button.disabled = False
            self._lock.release()

    def train(self) -> dict:
        """Train a fresh student with the sliders' settings (:func:`tkd.train.fit`, moving the
        progress bar after every epoch), then update the numbers, the map and the table of runs.
        Returns the run's row."""
        start = time.perf_counter()
        objective, epochs = self.objective(), self.epochs.value
        self.progress.max, self.progress.value = epochs, 0
        self.status.value = f"training for {epochs} epochs on {self.device} …"
        torch.manual_seed(self.seed)  # the student's initial weights
        model = build_model(self.student_model, self.data.num_classes, self.data.in_channels,
                            self.data.image_size)
        teacher = self.teacher if objective.needs_teacher else None

        def show(row: dict) -> None:
            self.progress.value = int(row["epoch"])
            self.status.value = (f"epoch {int(row['epoch'])}/{epochs}: test accuracy "
                                 f"{row['test_acc']:.3f}")

        config = TrainConfig(epochs=epochs, lr=self.lr, seed=self.seed, device=self.device,
                             progress=False)
        fit(model, self.data, config, objective, teacher, self.teacher_logits, on_epoch=show)
        train_seconds = time.perf_counter() - start
        self.status.value = "training done; drawing the map …"
        teacher_test = self.teacher_logits[1].numpy()
        student = collect(model, self.data.test).logits
        labels = self.data.test.labels.numpy()
        numbers = logit_metrics(teacher_test, student, labels, margin=self.margin.value,
                                temperature=self.temperature.value)
        table = shared_map(teacher_test, {"student": student}, labels, self.map_method, seed=0)
        title = f"{self._describe(objective)}: accuracy {numbers['accuracy']:.3f}"
        fig = plot_students(table, ["student"], class_names=self.data.class_names,
                            titles={"student": title})
        self.map.value = figure_png(fig)
        table.attrs["title"] = title
        self.maps.append(table)
        row = {"run": len(self.runs) + 1, "objective": self._describe(objective),
               "epochs": epochs, **numbers, "train_s": train_seconds,
               "total_s": time.perf_counter() - start}
        self.runs.append(row)
        self.model = model
        self.table.value = pd.DataFrame(self.runs).set_index("run").to_html(
            float_format=lambda v: f"{v:.3f}")
        self.status.value = (f"run {row['run']}: test accuracy <b>{numbers['accuracy']:.3f}</b>, "
                             f"agreement with the teacher {numbers['agreement']:.3f}, "
                             f"mean distance {numbers['distance']:.2f} "
                             f"({row['total_s']:.1f} s)")
        return row

    def snapshot(self, pairs: int = 30) -> Figure:
        """The maps of every run so far, side by side (``ValueError`` before the first run):
        each panel is the map the panel drew after that run — the teacher's test logits faint,
        the student's as crosses, ``pairs`` teacher–student pairs joined. Each run has its own
        map, fitted on its teacher and student logits, so positions are not comparable across
        panels; which classes a student's crosses fall on is."""
        if not self.maps:
            raise ValueError("no run yet: train one first")
        palette = _class_palette(self.maps[0])
        rows, columns = panel_grid(len(self.maps), 2)
        fig = Figure(figsize=(3.8 * columns + 1.4, 3.8 * rows + 0.6))
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for i, (ax, table) in enumerate(zip(axes, self.maps)):
            teacher, student = table[table.model == "teacher"], table[table.model == "student"]
            _pair_lines(ax, teacher, student, pairs, seed=0)
            _scatter(ax, teacher, palette, alpha=0.2, size=10)
            _scatter(ax, student, palette, marker="X", size=20)
            _finish(ax, f"run {i + 1}: {table.attrs['title']}", table, ylabel=i % columns == 0)
            ax.title.set_fontsize(9)
        for ax in axes[len(self.maps):]:
            ax.set_visible(False)
        _class_legend(fig, palette, self.data.class_names)
        fig.suptitle("The retrain panel's map after each run: teacher (faint dots)\nand student "
                     f"(crosses), {pairs} pairs joined")
        fig.tight_layout(rect=(0, 0, 1 - 1.3 / fig.get_figwidth(), 1))
        return fig

    @staticmethod
    def _describe(objective: ObjectiveConfig) -> str:
        parts = [f"{objective.ce_weight:g}·CE"] if objective.ce_weight else []
        if objective.kd_weight:
            parts.append(f"{objective.kd_weight:g}·KD(T={objective.temperature:g})")
        if objective.triplet_weight:
            parts.append(f"{objective.triplet_weight:g}·triplet(m={objective.margin:g})")
        return " + ".join(parts)
