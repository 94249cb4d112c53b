"""tkd.plots: the figures have the panels, points and pair lines they promise."""

import numpy as np
import pandas as pd

from tkd import embed, plots


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
