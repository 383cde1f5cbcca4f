"""Placing the blocks of a plot in pixels of its PNG, so that it can be saved as laid out, in one drawing.

Each block of a plot (title, axes with their tick and axis labels, colour bar, legend, footer) is placed at a
position computed from the sizes of its texts, measured with the renderer (text layout only, nothing is drawn).
Finding a tight bounding box instead costs matplotlib a second drawing of the whole figure (a third of a full-sky
plot's time). The height of a figure follows its content (lines of the title, rows of the legend); its width is
the plot's. Fixed distances are in points, as matplotlib's own paddings are. The views themselves
(``skyscan.products.plot``) say where their blocks go; tests/test_plot.py checks that every artist lies inside the
canvas and that the blocks do not overlap.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axis import Axis
from matplotlib.backend_bases import RendererBase
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.markers import TICKDOWN, MarkerStyle
from matplotlib.text import Text

DPI = 110
"""Dots per inch of the PNGs."""

PX = DPI / 72.0
"""Pixels per point in the PNG."""
MARGIN_PX = 16.0
"""Blank border around the content (pixels; about 0.15 inch)."""
TICK_OUT_PT = 7.0
"""From an axes edge to its tick labels (points): matplotlib's default tick length 3.5 plus pad 3.5."""
LABEL_PAD_PT = 4.0
"""From tick labels to the axis label (points): matplotlib's default."""
FOOTER_GAP_PT = 7.0
"""From the legend to the footer (points)."""


def figure_px(width_px: float, height_px: float) -> Figure:
    """A figure in pixels of the PNG (at DPI); its height is set again once the layout is known."""
    return plt.figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def renderer_of(fig: Figure) -> RendererBase:
    """The renderer that will draw ``fig``: it measures text without drawing anything."""
    return cast(RendererBase, cast(Any, fig.canvas).get_renderer())  # FigureCanvasAgg (matplotlib.use above)


def text_width(renderer: RendererBase, s: str, size: float | str) -> float:
    """Width (pixels) of one line of plain text at font ``size`` (points or a name such as "medium")."""
    return float(renderer.get_text_width_height_descent(s, FontProperties(size=size), ismath=False)[0])


def tick_label_width(axis: Axis, renderer: RendererBase, size: float | str) -> float:
    """Width (pixels) of the widest major tick label the axis will draw, found without making its ticks."""
    lo, hi = sorted(float(v) for v in axis.get_view_interval())
    tol = 1e-9 * (hi - lo)
    locs = [float(v) for v in axis.get_majorticklocs() if lo - tol <= v <= hi + tol]
    labels = axis.get_major_formatter().format_ticks(locs)
    return max((text_width(renderer, s, size) for s in labels), default=0.0)


def fit_width(text: Text, renderer: RendererBase, max_width: float, sep: str) -> None:
    """Break ``text`` into lines no wider than ``max_width`` pixels: at ``sep`` first, then at spaces (or anywhere
    in a word longer than a line), so that a long title or footer wraps instead of running off the canvas."""
    prop = text.get_fontproperties()

    def width(s: str) -> float:
        return float(renderer.get_text_width_height_descent(s, prop, ismath=False)[0])

    lines: list[str] = []
    for line in text.get_text().split("\n"):
        parts = line.split(sep)
        current = parts[0]
        for part in parts[1:]:
            if width(current + sep + part) <= max_width:
                current += sep + part
            else:
                lines.append(current)
                current = part
        lines.append(current)
    fitted: list[str] = []
    for line in lines:
        if width(line) <= max_width:
            fitted.append(line)
            continue
        chars = max(8, int(len(line) * max_width / width(line)))
        pieces = textwrap.wrap(line, chars, break_long_words=True, break_on_hyphens=True)
        while chars > 8 and any(width(p) > max_width for p in pieces):
            chars -= max(1, chars // 10)
            pieces = textwrap.wrap(line, chars, break_long_words=True, break_on_hyphens=True)
        fitted.extend(pieces)
    text.set_text("\n".join(fitted))


def fitted_legend(fig: Figure, renderer: RendererBase, handles: list[Line2D], ncol: int, fontsize: float,
            max_width: float) -> Legend:
    """The legend of a plot (placed later by `place_blocks`), in at most ``ncol`` columns, fewer if it would be
    wider than ``max_width`` pixels."""
    while True:
        leg = fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=fontsize, frameon=False,
                         borderaxespad=0.0, bbox_to_anchor=(0.5, 1.0))
        if ncol == 1 or leg.get_window_extent(renderer).width <= max_width:
            return leg
        leg.remove()
        ncol -= 1


def centre_within(centre: float, width: float, canvas: float) -> float:
    """A block's centre moved, if need be, so that the block (``width`` pixels) lies within the margins."""
    lo, hi = MARGIN_PX + 0.5 * width, canvas - MARGIN_PX - 0.5 * width
    return centre if lo > hi else min(max(centre, lo), hi)


@dataclass
class Frame:
    """Converts boxes given in pixels from the top-left corner to figure fractions, once the height is known."""

    width: float
    height: float

    def rect(self, x0: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
        return (x0 / self.width, 1.0 - (top + h) / self.height, w / self.width, h / self.height)

    def point(self, x: float, top: float) -> tuple[float, float]:
        return (x / self.width, 1.0 - top / self.height)


def place_blocks(fig: Figure, frame: Frame, title: Text, title_x: float, legend: Legend, legend_x: float,
            legend_top: float, footer: Text, renderer: RendererBase) -> None:
    """Size the figure to ``frame`` and place the blocks every view has: title at the top margin, the legend at
    ``legend_top`` (pixels), the footer under it, right-aligned at the margin (``frame.height`` must include it)."""
    fig.set_size_inches(frame.width / DPI, frame.height / DPI)
    title.set_position(frame.point(title_x, MARGIN_PX))
    legend.set_bbox_to_anchor(frame.point(legend_x, legend_top), transform=fig.transFigure)
    footer_top = legend_top + legend.get_window_extent(renderer).height + FOOTER_GAP_PT * PX
    footer.set_position(frame.point(frame.width - MARGIN_PX, footer_top))


def below_legend(legend: Legend, footer: Text, renderer: RendererBase) -> float:
    """Height (pixels) from the legend's top to the bottom of the canvas: legend, footer and the bottom margin."""
    return (legend.get_window_extent(renderer).height + FOOTER_GAP_PT * PX
            + footer.get_window_extent(renderer).height + MARGIN_PX)


def title_text(fig: Figure, text: str, fontsize: float, renderer: RendererBase, width: float) -> Text:
    title = fig.text(0.5, 1.0, text, ha="center", va="top", fontsize=fontsize)
    fit_width(title, renderer, width - 2 * MARGIN_PX, " — ")
    return title


def colorbar_minor_marks(cb: Colorbar) -> None:
    """Draw a horizontal colour bar's minor ticks (one at each band edge that is not a major tick) as one line of
    tick marks, styled as matplotlib's minor ticks: the same marks, without one tick artist each (some 60 of them,
    a sizeable share of the full sky's drawing time)."""
    locs = np.asarray(cb.ax.xaxis.get_minorticklocs(), dtype=np.float64)
    lo, hi = sorted(float(v) for v in cb.ax.get_xlim())
    locs = locs[(locs >= lo - 1e-9 * (hi - lo)) & (locs <= hi + 1e-9 * (hi - lo))]
    cb.minorticks_off()
    colour = matplotlib.rcParams["xtick.color"]
    marks = Line2D(locs, np.zeros(locs.size), transform=cb.ax.get_xaxis_transform("tick1"), ls="none",
                   marker=MarkerStyle(TICKDOWN), markersize=matplotlib.rcParams["xtick.minor.size"],
                   markeredgewidth=matplotlib.rcParams["xtick.minor.width"], color=colour, markeredgecolor=colour,
                   clip_on=False, zorder=Line2D.zorder)
    cb.ax.add_artist(marks)
