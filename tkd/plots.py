"""Seaborn figures of the shared logit map and of the widgets' quantities.

Every function takes the data it draws and returns a matplotlib ``Figure`` (nothing is shown or
saved implicitly); :func:`save_figure` and :func:`figure_png` write one out. Figures are built
without pyplot's global state, so a widget may draw from a worker thread. Maps come from
:func:`tkd.embed.shared_map`: a long table with columns ``model, sample, label, x, y``.

Every figure is drawn for a notebook's output area (:data:`tkd.figure_checks.DISPLAY_WIDTH`, 9
inches), so that its text shows at 9 pt or more, each method in its colour
(:data:`METHOD_COLOURS`); a figure drawn elsewhere is checked with
:func:`tkd.figure_checks.figure_problems` (small text, overlapping labels) and narrowed with
:func:`tkd.figure_checks.fit_to_display` (importable from here too, as the notebooks do).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tkd.figure_checks import (
    DISPLAY_WIDTH,
    MIN_POINTS,
    draw_renderer,
    fit_to_display,  # noqa: F401 - notebooks import it from here
)
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


def seed_shades(experiment: str, n: int) -> list[tuple[float, float, float]]:
    """``n`` shades of ``experiment``'s colour (:func:`colour_of`), light to dark (RGB): one
    per seed of one method, so that a figure of its seeds still reads as that method."""
    from matplotlib.colors import to_rgb

    base = np.array(to_rgb(colour_of(experiment)))
    shades = []
    for t in np.linspace(-0.3, 0.55, n) if n > 1 else [0.0]:  # none too pale to tell apart
        towards = np.ones(3) if t < 0 else np.zeros(3)  # white for light, black for dark
        shades.append(tuple(float(v) for v in base + abs(t) * (towards - base)))
    return shades


def panel_grid(n: int, columns: int) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` panels at most ``columns`` wide."""
    columns = max(1, min(n, columns))
    return -(-n // columns), columns


def label_bars(ax, bars, fmt: str = "%.2f", fontsize: float = MIN_POINTS) -> list:
    """Write each bar's value at its end (turned upright) and widen the y range of ``ax`` until
    every label lies inside the axes, so that none runs into a tick label or a title. Returns
    the labels."""
    labels = ax.bar_label(bars, fmt=fmt, fontsize=fontsize, rotation=90, padding=2)
    fig = ax.figure
    for _ in range(20):  # a wider range shrinks the bars, the labels keep their size: iterate
        renderer = draw_renderer(fig)
        box = ax.get_window_extent(renderer)
        extents = [label.get_window_extent(renderer) for label in labels]
        above = max([e.y1 - box.y1 for e in extents] + [0.0])
        below = max([box.y0 - e.y0 for e in extents] + [0.0])
        if above <= 0 and below <= 0:
            break
        low, high = ax.get_ylim()
        per_pixel = (high - low) / box.height
        ax.set_ylim(low - 1.5 * below * per_pixel, high + 1.5 * above * per_pixel)
    return labels


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
    fig = Figure(figsize=(DISPLAY_WIDTH, 6.8))  # two rows: panels wide enough to read
    grid = fig.add_gridspec(2, 2)
    first = fig.add_subplot(grid[0, 0])
    axes = [first, fig.add_subplot(grid[0, 1], sharex=first, sharey=first),
            fig.add_subplot(grid[1, :], sharex=first, sharey=first)]
    _scatter(axes[0], teacher_pts, palette)
    _finish(axes[0], "teacher", table)
    _scatter(axes[1], student_pts, palette)
    _finish(axes[1], f"student: {student}", table, ylabel=False)
    _pair_lines(axes[2], teacher_pts, student_pts, pairs, seed)
    _scatter(axes[2], teacher_pts, palette, alpha=0.35)
    _scatter(axes[2], student_pts, palette, marker="X", size=22)
    _finish(axes[2], f"overlay: dots teacher, crosses student, {pairs} pairs joined", table)
    _class_legend(fig, palette, class_names)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    return fig


def plot_students(table: pd.DataFrame, students: list[str] | None = None, pairs: int = 30,
                  seed: int = 0, class_names: list[str] | None = None,
                  titles: dict[str, str] | None = None) -> Figure:
    """One panel per student on the same map: the teacher faint in the background, the student
    on top, lines joining the same ``pairs`` samples in every panel."""
    students = students or [m for m in table.model.cat.categories if m != "teacher"]
    palette = _class_palette(table)
    teacher_pts = table[table.model == "teacher"]
    rows, columns = panel_grid(len(students), 2)  # at most two panels a row: 9 inches in all
    fig = Figure(figsize=(DISPLAY_WIDTH, 3.6 * rows + 0.3))
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for i, (ax, name) in enumerate(zip(axes, students)):
        student_pts = table[table.model == name]
        _pair_lines(ax, teacher_pts, student_pts, pairs, seed)
        _scatter(ax, teacher_pts, palette, alpha=0.2, size=10)
        _scatter(ax, student_pts, palette, marker="X", size=20)
        _finish(ax, (titles or {}).get(name, name), table, ylabel=i % columns == 0)
        if i < len(students) - columns:  # the row below shows the shared x axis
            ax.set_xlabel("")
    for ax in axes[len(students):]:
        fig.delaxes(ax)  # an empty slot of the grid
    _class_legend(fig, palette, class_names)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
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
                 title: str | None = None, values: bool = False) -> Figure:
    """Bar charts of :func:`tkd.embed.metrics_table` columns, one small panel per number (three
    a row), each titled and with its unit on the y axis (:data:`METRIC_AXES`), one colour per
    method (:func:`colour_of`); ``values`` writes each bar's value on it (:func:`label_bars`:
    0.960 and 0.971 differ by less than a pixel)."""
    columns = columns or ["distance", "agreement", "kl", "margin_satisfied", "silhouette"]
    rows, width = panel_grid(len(columns), 3)
    fig = Figure(figsize=(DISPLAY_WIDTH, 4.4 * rows))
    axes = fig.subplots(rows, width, squeeze=False).ravel()
    for ax in axes[len(columns):]:
        fig.delaxes(ax)  # an empty slot of the grid
    models = list(metrics.index)
    panels = []
    for ax, column in zip(axes, columns):
        bars = ax.bar(range(len(models)), metrics[column].to_numpy(),
                      color=[colour_of(m) for m in models])  # one colour per method
        panels.append((ax, bars, "%.2f" if column == "distance" else "%.3f"))
        ax.set_xticks(range(len(models)), models, rotation=90)
        name, unit = METRIC_AXES.get(column, (column, column))
        ax.set_title(name)
        ax.set_ylabel(unit)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if values:
        for ax, bars, fmt in panels:
            label_bars(ax, bars, fmt)
        fig.tight_layout()
    return fig


def plot_soft_targets(probabilities: np.ndarray, temperature: float, labels: np.ndarray,
                      class_names: list[str] | None = None) -> Figure:
    """The teacher's softened distributions (k, classes), one bar panel per image."""
    k, classes = probabilities.shape
    names = class_names or [str(c) for c in range(classes)]
    rows, columns = panel_grid(k, 3)
    fig = Figure(figsize=(min(DISPLAY_WIDTH, 3.0 * columns), 3.0 * rows))
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    for ax in axes.ravel()[k:]:
        fig.delaxes(ax)  # an empty slot of the grid
    for i, ax in enumerate(axes.ravel()[:k]):
        colours = ["C3" if c == labels[i] else "C0" for c in range(classes)]
        ax.bar(range(classes), probabilities[i], color=colours)
        ax.set_xticks(range(classes), names,
                      rotation=90 if classes > 10 or max(map(len, names)) > 3 else 0)
        ax.set_title(f"image {i + 1}: {names[labels[i]]} (red)", fontsize=10)
        ax.set_ylim(0, 1)
        ax.set_xlabel("class")
    for row in axes:
        row[0].set_ylabel(f"softmax(teacher / T), T = {temperature:g}")
    fig.tight_layout()
    return fig


SATISFIED = "0.45"
"""The edge of a satisfied triplet's hollow marker (a grey of no method)."""


def _margin_axes(ax, anchor_positive: np.ndarray, anchor_negative: np.ndarray, margin: float,
                 title: str | None = None, legend: bool = True) -> None:
    """Scatter d(a, p) against d(a, n) on ``ax``: active triplets filled red, satisfied ones
    hollow grey (not the semi-hard triplet's green); the dashed line
    ``d(a, n) = d(a, p) + margin`` (below it: active) and the dotted diagonal
    ``d(a, n) = d(a, p)`` (between the two: semi-hard)."""
    active = anchor_negative < anchor_positive + margin
    ax.scatter(anchor_positive[~active], anchor_negative[~active], s=14, facecolors="none",
               edgecolors=SATISFIED, label=f"satisfied ({(~active).sum()})")
    ax.scatter(anchor_positive[active], anchor_negative[active], s=14, c="C3",
               label=f"active ({active.sum()})")
    top = float(max(anchor_positive.max(), anchor_negative.max(), 1e-3)) * 1.05
    line = np.array([0.0, top])
    ax.plot(line, line + margin, color="0.3", linestyle="--", label=f"d(a,n) = d(a,p) + {margin:g}")
    ax.plot(line, line, color="0.6", linestyle=":", label="diagonal d(a,n) = d(a,p)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, max(top, margin * 1.1))
    ax.set_xlabel("d(a, p) = ||t(x) − s(x)|| (logit units)")
    ax.set_ylabel("d(a, n) = ||t(x) − s(x′)|| (logit units)")
    if legend:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=MIN_POINTS,
                  frameon=False)
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
    """One :func:`plot_margin` panel per strategy of a :func:`triplet_frame`, two a row: the
    same anchors and positives, each strategy's negatives; points below the dashed line are
    active. Each title gives the strategy's loss and active count; one legend below."""
    strategies = list(dict.fromkeys(frame["strategy"]))
    rows, columns = panel_grid(len(strategies), 2)
    fig = Figure(figsize=(min(DISPLAY_WIDTH, 4.5 * columns), 3.3 * rows + 0.7))
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    top = float(frame[["d_ap", "d_an"]].to_numpy().max()) * 1.05
    for i, (ax, name) in enumerate(zip(axes, strategies)):
        rows_of = frame[frame["strategy"] == name]
        _margin_axes(ax, rows_of["d_ap"].to_numpy(), rows_of["d_an"].to_numpy(), margin,
                     title=f"{name}: loss {rows_of['hinge'].mean():.2f}, "
                           f"{int(rows_of['active'].sum())} of {len(rows_of)} active",
                     legend=False)
        ax.set_ylim(0, max(top, margin * 1.1))
        if i % columns:
            ax.set_ylabel("")
        if i < len(strategies) - columns:
            ax.set_xlabel("")
    for ax in axes[len(strategies):]:
        fig.delaxes(ax)  # an empty slot of the grid
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="none",
                      markeredgecolor=SATISFIED, label="satisfied (no loss)"),
               Line2D([], [], marker="o", linestyle="", color="C3", label="active (loss > 0)"),
               Line2D([], [], color="0.3", linestyle="--", label=f"d(a,n) = d(a,p) + {margin:g}"),
               Line2D([], [], color="0.6", linestyle=":", label="diagonal d(a,n) = d(a,p)")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False, fontsize=MIN_POINTS)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1))
    return fig


def plot_temperatures(logits: np.ndarray, temperatures, label: int,
                      class_names: list[str] | None = None, values: bool = False) -> Figure:
    """One image's teacher logits (classes,) softened at each temperature: one bar panel per
    ``T`` showing ``softmax(logits / T)``, the true class ``label`` in red; ``values`` writes
    each bar's probability on it (:func:`label_bars`). Three panels a row at most."""
    logits = np.asarray(logits, dtype=np.float64)
    names = class_names or [str(c) for c in range(len(logits))]
    colours = ["C3" if c == label else "C0" for c in range(len(logits))]
    rows, columns = panel_grid(len(temperatures), 3)
    fig = Figure(figsize=(min(DISPLAY_WIDTH, 3.0 * columns), 3.2 * rows))
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    for ax in axes.ravel()[len(temperatures):]:
        fig.delaxes(ax)  # an empty slot of the grid
    for ax, temperature in zip(axes.ravel(), temperatures):
        z = logits / temperature
        soft = np.exp(z - z.max())
        ax.bar(range(len(logits)), soft / soft.sum(), color=colours)
        ax.set_xticks(range(len(logits)), names,
                      rotation=90 if len(logits) > 10 or max(map(len, names)) > 3 else 0)
        ax.set_title(f"T = {temperature:g}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("class (true class in red)")
    for row in axes:
        row[0].set_ylabel("softmax(teacher / T)")
    fig.tight_layout()
    if values:
        for ax, _ in zip(axes.ravel(), temperatures):
            label_bars(ax, ax.containers[0])
        fig.tight_layout()
    return fig


def plot_logits(image: np.ndarray, logits: np.ndarray, label: int,
                class_names: list[str] | None = None, image_title: str = "",
                title: str = "") -> Figure:
    """One image (height, width) beside a network's logits (classes,) for it and their softmax
    probabilities, the true class ``label`` in red, every bar labelled with its value
    (:func:`label_bars`: no label runs into a class name)."""
    logits = np.asarray(logits, dtype=np.float64)
    names = class_names or [str(c) for c in range(len(logits))]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    colours = ["C3" if c == label else "C0" for c in range(len(logits))]
    fig = Figure(figsize=(DISPLAY_WIDTH, 3.6))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 2.2, 2.2]})
    axes[0].imshow(np.asarray(image), cmap="gray_r")
    axes[0].set_title(image_title, fontsize=10)
    axes[0].axis("off")
    panels = []
    for ax, values, what in ((axes[1], logits, "logit"),
                             (axes[2], probabilities, "probability, softmax(logits)")):
        panels.append((ax, ax.bar(range(len(values)), values, color=colours)))
        ax.set_xticks(range(len(values)), names,
                      rotation=90 if len(values) > 10 or max(map(len, names)) > 3 else 0)
        ax.set_xlabel("class (true class in red)")
        ax.set_ylabel(what)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    for ax, bars in panels:
        label_bars(ax, bars)
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
