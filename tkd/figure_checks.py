"""Checks that a figure reads well where a notebook shows it, and the fix for a wide one.

A notebook shows a figure at most :data:`DISPLAY_WIDTH` (9 inches) wide, shrinking a wider one
with all its text. :func:`figure_problems` names what a reader would trip on (text under
:data:`MIN_POINTS` at the displayed size, :func:`smallest_text`; overlapping labels,
:func:`overlapping_texts`), :func:`displayed_scale` says how much a figure is shrunk and
:func:`fit_to_display` narrows its axes until it is not. :mod:`tkd.plots` draws every figure
to pass these checks (and re-exports :func:`fit_to_display` for the notebooks that import it
from there).
"""

from __future__ import annotations

from matplotlib.figure import Figure

DISPLAY_WIDTH = 9.0
"""Inches at which a notebook shows a figure at most: JupyterLab, Colab and GitHub's viewer
scale an output image down to the width of the output area, about 900 pixels, that is 9 inches
at the inline backend's 100 dpi. A figure drawn wider has all its text shrunk in proportion."""

MIN_POINTS = 9.0
"""The smallest text a figure may show at its displayed size (points)."""


def draw_renderer(fig: Figure):
    """Draw ``fig`` (on an Agg canvas if it has none) and return its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _drawn_texts(fig: Figure) -> list:
    """The texts a draw of ``fig`` shows: non-empty, visible, inside visible artists only (a
    hidden axis hides its tick labels: a twin axes' x axis), and of the tick labels only
    those of ticks inside the axis' view (matplotlib keeps labels of ticks outside it)."""
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    texts = []

    def walk(artist) -> None:
        if not artist.get_visible():
            return
        if isinstance(artist, Text):
            if artist.get_text().strip():
                texts.append(artist)
            return
        children = artist.get_children()
        if isinstance(artist, Axis):  # only the ticks a draw shows
            shown = artist._update_ticks()
            children = [c for c in children if c not in artist.majorTicks + artist.minorTicks]
            children += shown
        for child in children:
            walk(child)

    walk(fig)
    return texts


def displayed_scale(fig: Figure, width: float = DISPLAY_WIDTH) -> float:
    """How much a notebook shrinks ``fig``: ``width`` over the width of the image it shows
    (the tight bounding box, legends outside the axes included), at most 1."""
    renderer = draw_renderer(fig)
    shown = fig.get_tightbbox(renderer).width  # inches
    return min(1.0, width / shown) if shown > 0 else 1.0


def fit_to_display(fig: Figure, width: float = DISPLAY_WIDTH) -> Figure:
    """Narrow ``fig`` (its axes, not its text) until the image a notebook shows is at most
    ``width`` inches wide, legends outside the axes included, and lay it out again; a figure
    already narrow enough is left as it is. Returns ``fig``."""
    for _ in range(5):
        shown = fig.get_tightbbox(draw_renderer(fig)).width
        if shown <= width + 0.01:
            break
        fig.set_size_inches(fig.get_figwidth() - (shown - width) - 0.05, fig.get_figheight())
        if fig.get_layout_engine() is None:
            fig.tight_layout()
    return fig


def smallest_text(fig: Figure, width: float = DISPLAY_WIDTH) -> tuple[float, str]:
    """The smallest text of ``fig`` at its displayed size: (points, the text). Points are the
    font size times :func:`displayed_scale`; (inf, "") for a figure without text."""
    scale = displayed_scale(fig, width)
    sizes = [(text.get_fontsize() * scale, text.get_text()) for text in _drawn_texts(fig)]
    return min(sizes, default=(float("inf"), ""))


def overlapping_texts(fig: Figure, pad: float = 0.0) -> list[tuple[str, str]]:
    """Pairs of drawn texts of ``fig`` whose boxes on the canvas overlap (renderer bounding
    boxes, :meth:`~matplotlib.text.Text.get_window_extent`, each grown by ``pad`` pixels)."""
    renderer = draw_renderer(fig)
    boxes = [(text.get_text(), text.get_window_extent(renderer).padded(pad))
             for text in _drawn_texts(fig)]
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            if box_a.overlaps(box_b) and box_a.width > 0 and box_b.width > 0:
                pairs.append((a, b))
    return pairs


def figure_problems(fig: Figure, width: float = DISPLAY_WIDTH,
                    min_points: float = MIN_POINTS) -> list[str]:
    """What a reader would trip on in ``fig``, as sentences (empty: none): text smaller than
    ``min_points`` at the displayed size (:func:`smallest_text`) and overlapping texts
    (:func:`overlapping_texts`)."""
    problems = []
    scale = displayed_scale(fig, width)
    small = sorted({(round(t.get_fontsize() * scale, 1), t.get_text()[:40])
                    for t in _drawn_texts(fig) if t.get_fontsize() * scale < min_points - 1e-6})
    if small:
        problems.append(f"{len(small)} texts under {min_points:g} pt at {100 * scale:.0f} % "
                        f"display size, e.g. {small[:3]}")
    problems += [f"overlapping texts: {a[:40]!r} and {b[:40]!r}"
                 for a, b in overlapping_texts(fig)]
    return problems
