"""tkd.plots: the figures have the panels, points and pair lines they promise."""

import numpy as np
import pandas as pd

from tkd import embed, plots
from tkd import figure_checks as fc


def _table(n=40, classes=4):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    teacher = np.eye(classes)[labels] * 5 + rng.normal(size=(n, classes))
    students = {"ce": teacher + rng.normal(size=teacher.shape),
                "triplet": teacher + 0.1 * rng.normal(size=teacher.shape)}
    return embed.shared_map(teacher, students, labels, method="pca"), teacher, students, labels


def test_teacher_student_figure():
    table = _table()[0]
    fig = plots.plot_teacher_student(table, "triplet", pairs=7)
    axes = fig.axes
    assert [ax.get_title() for ax in axes[:2]] == ["teacher", "student: triplet"]
    assert len(axes[2].lines) == 7  # one line per joined teacher–student pair
    assert sum(len(c.get_offsets()) for c in axes[0].collections) == 40
    assert sum(len(c.get_offsets()) for c in axes[2].collections) == 80


def test_students_figure_uses_one_map():
    table = _table()[0]
    fig = plots.plot_students(table, pairs=5, titles={"ce": "alone"})
    assert [ax.get_title() for ax in fig.axes] == ["alone", "triplet"]
    assert all(len(ax.lines) == 5 for ax in fig.axes)
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()  # shared axes: comparable panels


def test_metrics_soft_targets_margin_and_output(tmp_path):
    _, teacher, students, labels = _table()
    metrics = embed.metrics_table(teacher, students, labels)
    assert len(plots.plot_metrics(metrics).axes) == 5
    probs = np.full((2, 4), 0.25)
    assert len(plots.plot_soft_targets(probs, 4.0, np.array([0, 1])).axes) == 2
    fig = plots.plot_margin(np.array([1.0, 2.0, 3.0]), np.array([10.0, 2.5, 1.0]), margin=2.0)
    assert fig.axes[0].get_legend().texts[0].get_text() == "satisfied (1)"
    png = plots.figure_png(fig)
    assert png.startswith(b"\x89PNG")
    path = plots.save_figure(fig, tmp_path / "a" / "margin.png")
    assert path.is_file() and path.stat().st_size > 1000
    assert isinstance(metrics, pd.DataFrame)


def test_triplet_frame_matches_the_loss_and_plot_negatives_has_a_panel_per_strategy():
    import torch

    from tkd.losses import triplet_kd_loss

    generator = torch.Generator().manual_seed(0)
    anchor, positive, drawn = torch.randn(3, 12, 5, generator=generator)
    negatives = {"sample": drawn, "batch-hard": positive.roll(1, 0)}
    frame = plots.triplet_frame(anchor, positive, negatives, margin=2.0)
    assert len(frame) == 24 and set(frame.strategy) == set(negatives)
    for name, negative in negatives.items():
        rows = frame[frame.strategy == name]
        loss = float(triplet_kd_loss(anchor, positive, negative, margin=2.0))
        assert np.isclose(rows.hinge.mean(), loss, rtol=1e-5)
        assert (rows.active == (rows.hinge > 0)).all()
    fig = plots.plot_negatives(frame, margin=2.0)
    assert [ax.get_title().split(":")[0] for ax in fig.axes] == ["sample", "batch-hard"]


def test_plot_temperatures_one_panel_per_temperature():
    fig = plots.plot_temperatures(np.array([4.0, 1.0, 0.0]), [1, 4, 8], label=0)
    assert [ax.get_title() for ax in fig.axes] == ["T = 1", "T = 4", "T = 8"]
    heights = [[bar.get_height() for bar in ax.patches] for ax in fig.axes]
    assert all(np.isclose(sum(h), 1.0) for h in heights)
    assert heights[0][0] > heights[1][0] > heights[2][0]  # a higher T flattens the distribution


NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"]


def test_colour_of_and_seed_shades_keep_one_colour_per_method():
    from matplotlib.colors import to_rgb

    assert plots.colour_of("triplet") == plots.METHOD_COLOURS["triplet"]
    assert plots.colour_of("triplet-m10") == plots.METHOD_COLOURS["triplet"]  # a variant
    assert plots.colour_of("kd-t4-long") == plots.METHOD_COLOURS["kd-t4"]  # longest prefix
    shades = plots.seed_shades("kd-t4", 5)
    assert len(set(shades)) == 5
    base = np.array(to_rgb(plots.METHOD_COLOURS["kd-t4"]))
    brightness = [sum(s) for s in shades]
    assert brightness == sorted(brightness, reverse=True)  # light to dark
    hue = [np.argmax(np.array(s)) for s in shades]  # orange stays orange: red channel leads
    assert set(hue) == {int(np.argmax(base))}
    for method in set(plots.METHOD_COLOURS) - {"teacher"}:  # (one teacher: no seeds to shade)
        shades = np.array(plots.seed_shades(method, 5))
        assert np.linalg.norm(np.diff(shades, axis=0), axis=1).min() > 0.08, method


def test_label_bars_keeps_every_value_inside_its_axes():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 2.5))
    ax = fig.subplots()
    bars = ax.bar(range(10), [-1.2, -1.9, -3.6, -4.3, -6.2, 14.95, -5.6, 2.7, 1.5, 3.9])
    ax.set_xticks(range(10), NAMES, rotation=90)
    fig.tight_layout()
    labels = plots.label_bars(ax, bars)
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    for label in labels:
        extent = label.get_window_extent(renderer)
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1, label.get_text()
    assert fc.overlapping_texts(fig) == []


def test_plot_logits_01_shows_values_that_touch_no_class_name():
    """Notebook 01's worked examples (01:14, 01:16): a confidently wrong teacher with large
    negative logits once wrote its values over the class names."""
    logits = np.array([-1.22, -1.93, -3.65, -4.32, -6.22, 14.95, -5.60, 2.72, 1.53, 3.92])
    fig = plots.plot_logits(np.zeros((28, 28)), logits, 9, NAMES, image_title="test #23",
                            title="test image 23: true class Ankle boot, the teacher says Sandal")
    image, logit_ax, prob_ax = fig.axes
    assert [b.get_facecolor()[:3] for b in logit_ax.patches].count((0.8392156862745098,
                                                                   0.15294117647058825,
                                                                   0.1568627450980392)) == 1
    assert np.isclose(sum(b.get_height() for b in prob_ax.patches), 1.0)
    assert fc.figure_problems(fig) == []
    assert len(logit_ax.texts) == 10  # one value per bar


def test_plot_negatives_03_reads_at_full_size_without_overlaps():
    """Notebook 03's four strategies (03:19): once one row 15.6 inches wide (text at 6 pt) with
    a y label longer than its panel; now two a row, one legend."""
    import torch

    generator = torch.Generator().manual_seed(1)
    anchor, positive, drawn = 8 * torch.randn(3, 100, 10, generator=generator)
    negatives = {"sample": drawn, "batch-random": drawn.roll(1, 0),
                 "batch-hard": positive.roll(2, 0), "batch-semihard": positive.roll(3, 0)}
    frame = plots.triplet_frame(anchor, positive, negatives, 5.0)
    fig = plots.plot_negatives(frame, 5.0)
    fig.suptitle("One batch of an early student (100 steps): d(a,p) vs d(a,n) per triplet, "
                 "for each choice of negative", y=1.03)
    assert fc.figure_problems(fig) == []
    active = frame.groupby("strategy", sort=False).active.sum()
    assert [ax.get_title() for ax in fig.axes] == [
        f"{name}: loss {frame[frame.strategy == name].hinge.mean():.2f}, {active[name]} of 100 "
        "active" for name in negatives]


def test_figures_of_the_notebooks_read_at_nine_points():
    """Every figure of tkd.plots, drawn as the notebooks draw it, at 9 pt or more where a
    notebook shows it and with no overlapping text."""
    table, teacher, students, labels = _table()
    metrics = embed.metrics_table(teacher, students, labels)
    temperatures = plots.plot_temperatures(np.array([4.0, -2.0, 1.0, 0.0, 3.0, -1.0, 2.0, 0.5,
                                                     -3.0, 1.5]), [1, 4, 8], 0, NAMES,
                                           values=True)
    figures = {
        "temperatures": temperatures,
        "students": plots.plot_students(table, class_names=NAMES[:4],
                                        titles={"ce": "student alone (CE, wd 0.007)\n(88.2 %)",
                                                "triplet": "triplet, paper\n(89.7 %)"}),
        "teacher_student": plots.plot_teacher_student(table, "triplet", class_names=NAMES[:4]),
        "metrics": plots.plot_metrics(metrics),
        "soft_targets": plots.plot_soft_targets(np.full((3, 10), 0.1), 4.0, np.array([0, 1, 2]),
                                                NAMES),
        "margin": plots.plot_margin(np.array([1.0, 2.0]), np.array([9.0, 2.5]), 2.0),
    }
    for name, fig in figures.items():
        assert fc.figure_problems(fig) == [], name


def test_plot_metrics_colours_each_bar_by_its_method():
    from matplotlib.colors import to_rgba

    _, teacher, students, labels = _table()
    fig = plots.plot_metrics(embed.metrics_table(teacher, students, labels))
    models = list(embed.metrics_table(teacher, students, labels).index)
    for ax in fig.axes:
        if ax.get_visible():
            assert [b.get_facecolor() for b in ax.patches] == [
                to_rgba(plots.colour_of(m)) for m in models]


def test_the_notebooks_import_of_fit_to_display_from_plots_still_works():
    """fit_to_display moved to tkd.figure_checks; notebooks import it from tkd.plots."""
    assert plots.fit_to_display is fc.fit_to_display
