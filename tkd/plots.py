"""Seaborn figures of the shared logit map and of the widgets' quantities.

Every function takes the data it draws and returns a matplotlib ``Figure`` (nothing is shown or
saved implicitly); :func:`save_figure` and :func:`figure_png` write one out. Figures are built
without pyplot's global state, so a widget may draw from a worker thread. Maps come from
:func:`tkd.embed.shared_map`: a long table with columns ``model, sample, label, x, y``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tkd.files import atomic_savefig

PALETTE = "tab10"


def _sns():
    """seaborn, imported on first use: a notebook extra (``tkd[notebooks]``), which the
    command line (``tkd figures`` uses :func:`save_figure` alone) does not need."""
    import seaborn

    return seaborn


METHOD_COLOURS = {
    "teacher": "#000000",
    "ce": "#9e9e9e", "ce-wd0.007": "#4d4d4d",
    "kd-t4": "#ff7f0e", "kd-t1": "#ffbb78", "kd-t2": "#e6550d", "kd-t8": "#fdae6b",
    "triplet": "#1f77b4", "triplet-batch-random": "#aec7e8", "triplet-batch-hard": "#17becf",
    "triplet-batch-semihard": "#2ca02c", "triplet-kd": "#9467bd", "pair": "#8c564b",
    "logit-mse": "#bcbd22", "ce-mse": "#dbdb8d",
    "dkd": "#d62728", "dist": "#e377c2", "kd-ls": "#fd8d3c",
    "rkd": "#7b4173", "pkt": "#a55194", "hint": "#ce6dbd",
}
"""One colour per method, the same in every figure of every notebook: the paper's triplet blue,
Hinton KD orange, the semi-hard triplet green, the student alone grey, the teacher black.
Variants of a method (``kd-t4-...``, ``triplet-m10``, ``logit-mse-lr0.001``) take their family's
colour (:func:`colour_of`)."""


def colour_of(experiment: str) -> str:
    """The colour of ``experiment``: its own in :data:`METHOD_COLOURS`, else that of the
    longest name there that ``experiment`` starts with, else a grey."""
    if experiment in METHOD_COLOURS:
        return METHOD_COLOURS[experiment]
    family = max((name for name in METHOD_COLOURS if experiment.startswith(name)), key=len,
                 default=None)
    return METHOD_COLOURS[family] if family else "#7f7f7f"


def _class_palette(table: pd.DataFrame) -> dict:
    classes = sorted(table["label"].unique())
    return dict(zip(classes, _sns().color_palette(PALETTE, max(len(classes), 1))))


def _scatter(ax, points: pd.DataFrame, palette: dict, marker: str = "o", alpha: float = 0.8,
             size: float = 14, legend: bool = False) -> None:
    _sns().scatterplot(data=points, x="x", y="y", hue="label", palette=palette, marker=marker,
                    s=size, alpha=alpha, linewidth=0, legend=legend, ax=ax)


def _pair_lines(ax, teacher: pd.DataFrame, student: pd.DataFrame, pairs: int, seed: int) -> None:
    """Grey lines from teacher point i to student point i for ``pairs`` random samples."""
    samples = teacher["sample"].to_numpy()
    chosen = np.random.default_rng(seed).choice(samples, min(pairs, len(samples)), replace=False)
    t = teacher.set_index("sample").loc[chosen, ["x", "y"]].to_numpy()
    s = student.set_index("sample").loc[chosen, ["x", "y"]].to_numpy()
    for (x0, y0), (x1, y1) in zip(t, s):
        ax.plot([x0, x1], [y0, y1], color="0.35", linewidth=0.6, alpha=0.6, zorder=0)


def _finish(ax, title: str, table: pd.DataFrame | None = None, ylabel: bool = True) -> None:
    """Title and axis labels of one map panel: PCA axes are lengths in logit space (labelled
    with their share of variance, ticks kept); UMAP and t-SNE axes have no units (no ticks)."""
    ax.set_title(title)
    method = table.attrs.get("method") if table is not None else None
    if method == "pca":
        shares = table.attrs.get("explained_variance", [])
        x, y = (f"PC{k + 1} (logit units" + (f", {100 * shares[k]:.0f} % of variance)"
                                              if len(shares) > k else ")") for k in (0, 1))
    else:
        name = {"umap": "UMAP", "tsne": "t-SNE"}.get(method, "map")
        x, y = f"{name} 1 (no units)", f"{name} 2 (no units)"
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel(x)
    ax.set_ylabel(y if ylabel else "")


def _class_legend(fig: Figure, palette: dict, class_names: list[str] | None) -> None:
    handles = [Line2D([], [], marker="o", linestyle="", color=color,
                          label=class_names[c] if class_names else str(c))
               for c, color in palette.items()]
    fig.legend(handles=handles, title="class", loc="center right", frameon=False)


def plot_teacher_student(table: pd.DataFrame, student: str, pairs: int = 40, seed: int = 0,
                         class_names: list[str] | None = None) -> Figure:
    """Three panels on one shared map: the teacher alone, ``student`` alone, and both overlaid
    (teacher dots, student crosses) with lines joining ``pairs`` teacher–student pairs."""
    palette = _class_palette(table)
    teacher_pts, student_pts = table[table.model == "teacher"], table[table.model == student]
    fig = Figure(figsize=(14, 4.6))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    _scatter(axes[0], teacher_pts, palette)
    _finish(axes[0], "teacher", table)
    _scatter(axes[1], student_pts, palette)
    _finish(axes[1], f"student: {student}", table, ylabel=False)
    _pair_lines(axes[2], teacher_pts, student_pts, pairs, seed)
    _scatter(axes[2], teacher_pts, palette, alpha=0.35)
    _scatter(axes[2], student_pts, palette, marker="X", size=22)
    _finish(axes[2], f"overlay (dots: teacher, crosses: student; {pairs} pairs joined)",
            table, ylabel=False)
    _class_legend(fig, palette, class_names)
    fig.tight_layout(rect=(0, 0, 0.91, 1))
    return fig


def plot_students(table: pd.DataFrame, students: list[str] | None = None, pairs: int = 30,
                  seed: int = 0, class_names: list[str] | None = None,
                  titles: dict[str, str] | None = None) -> Figure:
    """One panel per student on the same map: the teacher faint in the background, the student
    on top, lines joining the same ``pairs`` samples in every panel."""
    students = students or [m for m in table.model.cat.categories if m != "teacher"]
    palette = _class_palette(table)
    teacher_pts = table[table.model == "teacher"]
    fig = Figure(figsize=(4.6 * len(students) + 0.8, 4.6))
    axes = fig.subplots(1, len(students), sharex=True, sharey=True, squeeze=False)
    for i, (ax, name) in enumerate(zip(axes[0], students)):
        student_pts = table[table.model == name]
        _pair_lines(ax, teacher_pts, student_pts, pairs, seed)
        _scatter(ax, teacher_pts, palette, alpha=0.2, size=10)
        _scatter(ax, student_pts, palette, marker="X", size=20)
        _finish(ax, (titles or {}).get(name, name), table, ylabel=i == 0)
    _class_legend(fig, palette, class_names)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    return fig


METRIC_AXES = {  # column of tkd.embed.metrics_table -> (panel title, y-axis label with units)
    "accuracy": ("test accuracy", "share of test images"),
    "distance": ("distance to the teacher", "mean ||t(x) - s(x)|| (logit units)"),
    "agreement": ("agreement with the teacher", "share of images, same top class"),
    "kl": ("KL(teacher || student)", "mean KL at T = 1 (nats)"),
    "margin_satisfied": ("triplets with zero loss", "share of test triplets (m = 5)"),
    "silhouette": ("class separation", "silhouette of the logits (-1 to 1)"),
    "knn_purity": ("10-NN purity", "share of neighbours of the same class"),
}


def plot_metrics(metrics: pd.DataFrame, columns: list[str] | None = None,
                 title: str | None = None) -> Figure:
    """Bar charts of :func:`tkd.embed.metrics_table` columns, one small panel per number, each
    titled and with its unit on the y axis (:data:`METRIC_AXES`)."""
    columns = columns or ["distance", "agreement", "kl", "margin_satisfied", "silhouette"]
    fig = Figure(figsize=(3.1 * len(columns), 3.6))
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    models = list(metrics.index)
    for ax, column in zip(axes, columns):
        _sns().barplot(x=models, y=metrics[column].to_numpy(), hue=models, palette="deep",
                    legend=False, ax=ax)
        name, unit = METRIC_AXES.get(column, (column, column))
        ax.set_title(name)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_soft_targets(probabilities: np.ndarray, temperature: float, labels: np.ndarray,
                      class_names: list[str] | None = None) -> Figure:
    """The teacher's softened distributions (k, classes), one bar panel per image."""
    k, classes = probabilities.shape
    names = class_names or [str(c) for c in range(classes)]
    fig = Figure(figsize=(3.2 * k, 2.8))
    axes = fig.subplots(1, k, sharey=True, squeeze=False)
    for i, ax in enumerate(axes[0]):
        colours = ["C3" if c == labels[i] else "C0" for c in range(classes)]
        ax.bar(range(classes), probabilities[i], color=colours)
        ax.set_xticks(range(classes), names,
                      rotation=90 if classes > 10 or max(map(len, names)) > 3 else 0)
        ax.set_title(f"image {i + 1}: class {names[labels[i]]} (red)")
        ax.set_ylim(0, 1)
        ax.set_xlabel("class")
    axes[0, 0].set_ylabel(f"probability, softmax(teacher / T), T = {temperature:g}")
    fig.tight_layout()
    return fig


def _margin_axes(ax, anchor_positive: np.ndarray, anchor_negative: np.ndarray, margin: float,
                 title: str | None = None) -> None:
    """Scatter d(a, p) against d(a, n) on ``ax``: active triplets red, satisfied ones green;
    the dashed line ``d(a, n) = d(a, p) + margin`` (below it: active) and the dotted diagonal
    ``d(a, n) = d(a, p)`` (between the two: semi-hard)."""
    active = anchor_negative < anchor_positive + margin
    ax.scatter(anchor_positive[~active], anchor_negative[~active], s=14, c="C2",
               label=f"satisfied ({(~active).sum()})")
    ax.scatter(anchor_positive[active], anchor_negative[active], s=14, c="C3",
               label=f"active ({active.sum()})")
    top = float(max(anchor_positive.max(), anchor_negative.max(), 1e-3)) * 1.05
    line = np.array([0.0, top])
    ax.plot(line, line + margin, color="0.3", linestyle="--", label=f"d(a,n) = d(a,p) + {margin:g}")
    ax.plot(line, line, color="0.6", linestyle=":", label="diagonal d(a,n) = d(a,p)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, max(top, margin * 1.1))
    ax.set_xlabel("d(anchor, positive) = ||t(x) - s(x)|| (logit units)")
    ax.set_ylabel("d(anchor, negative) = ||t(x) - s(x')|| (logit units)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=9, frameon=False)
    if title:
        ax.set_title(title)


def plot_margin(anchor_positive: np.ndarray, anchor_negative: np.ndarray,
                margin: float) -> Figure:
    """Anchor–positive vs. anchor–negative distances (batch,) of a batch of triplets; points
    below the line ``d(a, n) = d(a, p) + margin`` are active (positive loss)."""
    fig = Figure(figsize=(5.2, 4.2))
    _margin_axes(fig.subplots(), anchor_positive, anchor_negative, margin)
    fig.tight_layout()
    return fig


def triplet_frame(anchor, positive, negatives: dict, margin: float = 5.0) -> pd.DataFrame:
    """Per-triplet distances of one batch for several choices of negative, as a long table.

    anchor (teacher logits), positive (student logits): (batch, classes) tensors; negatives:
    strategy name -> (batch, classes) student logits of each row's negative. Columns: strategy,
    sample, d_ap = ``||a - p||``, d_an = ``||a - n||``, hinge = ``max(0, d_ap - d_an + margin)``
    (the row's term of :func:`tkd.losses.triplet_kd_loss`) and active (hinge > 0).
    """
    from tkd.losses import distance

    d_ap = distance(anchor, positive).detach().numpy()
    frames = []
    for name, negative in negatives.items():
        d_an = distance(anchor, negative).detach().numpy()
        hinge = np.maximum(d_ap - d_an + margin, 0.0)
        frames.append(pd.DataFrame({"strategy": name, "sample": np.arange(len(d_ap)),
                                    "d_ap": d_ap, "d_an": d_an, "hinge": hinge,
                                    "active": hinge > 0}))
    return pd.concat(frames, ignore_index=True)


def plot_negatives(frame: pd.DataFrame, margin: float = 5.0) -> Figure:
    """One :func:`plot_margin` panel per strategy of a :func:`triplet_frame`: the same anchors
    and positives, each strategy's negatives; points below the dashed line are active."""
    strategies = list(dict.fromkeys(frame["strategy"]))
    fig = Figure(figsize=(3.9 * len(strategies), 3.9))
    axes = fig.subplots(1, len(strategies), sharex=True, sharey=True, squeeze=False)[0]
    top = float(frame[["d_ap", "d_an"]].to_numpy().max()) * 1.05
    for ax, name in zip(axes, strategies):
        rows = frame[frame["strategy"] == name]
        _margin_axes(ax, rows["d_ap"].to_numpy(), rows["d_an"].to_numpy(), margin,
                     title=f"{name}: loss {rows['hinge'].mean():.2f}")
        ax.set_ylim(0, max(top, margin * 1.1))
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.tight_layout()
    return fig


def plot_temperatures(logits: np.ndarray, temperatures, label: int,
                      class_names: list[str] | None = None) -> Figure:
    """One image's teacher logits (classes,) softened at each temperature: one bar panel per
    ``T`` showing ``softmax(logits / T)``, the true class ``label`` in red."""
    logits = np.asarray(logits, dtype=np.float64)
    names = class_names or [str(c) for c in range(len(logits))]
    colours = ["C3" if c == label else "C0" for c in range(len(logits))]
    fig = Figure(figsize=(3.3 * len(temperatures), 2.9))
    axes = fig.subplots(1, len(temperatures), sharey=True, squeeze=False)[0]
    for ax, temperature in zip(axes, temperatures):
        z = logits / temperature
        soft = np.exp(z - z.max())
        ax.bar(range(len(logits)), soft / soft.sum(), color=colours)
        ax.set_xticks(range(len(logits)), names,
                      rotation=90 if len(logits) > 10 or max(map(len, names)) > 3 else 0)
        ax.set_title(f"T = {temperature:g}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("class (true class in red)")
    axes[0].set_ylabel("probability, softmax(teacher / T)")
    fig.tight_layout()
    return fig


def figure_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (for an ``ipywidgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (folders created) and return the path."""
    return atomic_savefig(fig, path, dpi=dpi, bbox_inches="tight")
