"""tkd.figure_checks: small text and overlaps are found where a notebook shows a figure, and
a wide figure is narrowed until they are gone. (tests/test_plots.py checks that every figure of
tkd.plots passes these checks.)"""

from tkd import figure_checks as fc


def test_overlapping_texts_finds_a_planted_overlap_and_no_false_one():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    assert fc.overlapping_texts(fig) == []
    ax.text(0.5, 0.5, "a long label here")
    ax.text(0.52, 0.5, "another one")  # drawn on top of the first
    assert fc.overlapping_texts(fig) == [("a long label here", "another one")]
    twin = ax.twinx()  # a twin's hidden x axis keeps tick labels: they are not drawn
    twin.set_ylim(0, 5)
    assert len(fc.overlapping_texts(fig)) == 1


def test_smallest_text_counts_the_shrinking_of_a_wide_figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(fc.DISPLAY_WIDTH, 3))
    ax = fig.subplots()
    ax.set_title("title", fontsize=12)
    ax.set_xticks([0, 1], ["a", "b"], fontsize=10)
    ax.set_yticks([])
    assert fc.smallest_text(fig)[0] == 10  # shown whole: the tick labels' 10 pt
    fig.set_size_inches(2 * fc.DISPLAY_WIDTH, 3)  # twice as wide: shrunk on display
    points, text = fc.smallest_text(fig)
    assert points < 7 and text in {"a", "b"}
    assert any("under 9 pt" in p for p in fc.figure_problems(fig))
    fc.fit_to_display(fig)  # narrower axes, same text
    assert fc.displayed_scale(fig) == 1  # what is shown is at most 9 inches wide
    assert fc.figure_problems(fig) == []


def _learning_curve_like_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6))
    for ax in axes:
        ax.plot([1, 2, 3], [3, 2, 1], label="triplet (train)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left",
               bbox_to_anchor=(1.0, 0.5), fontsize=9)
    fig.tight_layout()
    return fig, plt


def test_fit_to_display_narrows_a_figure_with_a_legend_outside():
    fig, plt = _learning_curve_like_figure()
    assert fc.displayed_scale(fig) < 1  # the legend outside widens the shown image
    assert any("under 9 pt" in p for p in fc.figure_problems(fig))
    fc.fit_to_display(fig)
    assert fc.displayed_scale(fig) == 1 and fc.figure_problems(fig) == []
    plt.close(fig)
