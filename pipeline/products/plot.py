"""PNG views of a multi-order likelihood map: the full sky (Mollweide) and a zoom on the best fit.

Both views sample the map on a regular RA/Dec grid: each grid point takes the value of the map pixel that contains
it (found at the map's deepest order), so pixels of every order are drawn at their true size without flattening
the whole sky to the finest nside. Colour is 2*delta-llh: on the full sky on a scale set from the map's own range
(bands of equal sky area, so the structure of the whole sky shows, not one saturated colour), with the
90% region also marked by a ring when it is too small to see at that scale; on the zoom linear from 0 to at least
the outermost quoted level. The 50% and 90% contours are drawn from the region membership of the pixels (the same
rule as docs/containment.md), so they follow pixel edges.

Each figure is laid out so that everything it holds lies inside its canvas (see "Layout" below) and saved as it
is, in one drawing (a tight bounding box would cost a second). ``fullsky_figure`` and ``zoom_figure`` build the
figures that ``plot_fullsky`` and ``plot_zoom`` save.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.colors import BoundaryNorm, Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patheffects import AbstractPathEffect
from matplotlib.projections.polar import PolarAxes
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter

from skyscan.atomic import atomic_path
from skyscan.products.containment import Region
from skyscan.products.gcn import rounded_time
from skyscan.products.meta import SkymapMeta
from skyscan.products.moc import MultiOrderMap
from skyscan.products.plotgrid import (
    FULLSKY_WIDTH,
    ZOOM_SIZE,
    ZoomWindow,
    fullsky_cells,
    sample_rows,
    zoom_cells,
    zoom_window,
)
from skyscan.products.plotlayout import (
    DPI,
    LABEL_PAD_PT,
    MARGIN_PX,
    PX,
    TICK_OUT_PT,
    Frame,
    below_legend,
    centre_within,
    colorbar_minor_marks,
    figure_px,
    fit_width,
    fitted_legend,
    place_blocks,
    renderer_of,
    text_width,
    tick_label_width,
    title_text,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

VMAX = 40.0
"""Smallest upper end of the zoom's colour scale (2*delta-llh); it grows to span the outermost quoted level."""
ZOOM_HEADROOM = 1.25
"""The zoom's scale reaches this factor times the outermost level, so the region's edge is not the top colour."""
FULLSKY_BANDS = 64
"""Colour bands of the full-sky scale; each covers an equal share of the sky's area (see `fullsky_norm`)."""
RING_BELOW_DEG = 3.0
"""On the full sky, a region whose extent is below this (degrees) is also marked by a ring (it would be a dot)."""

CMAP = "viridis_r"
LEVEL_STYLE = {"50": ("#d62728", "-"), "90": ("#000000", "-")}
OTHER_STYLE = ("#ff7f0e", "--")
BEST_STYLE: dict[str, Any] = {"marker": "*", "color": "#ffffff", "markeredgecolor": "#000000", "ls": "none"}
TRUTH_STYLE: dict[str, Any] = {"marker": "X", "color": "#1f77b4", "markeredgecolor": "#ffffff", "ls": "none"}
PNG_COMPRESSION = 3
"""zlib level of the PNGs: a third less encoding time than Pillow's default 6 for some 5% larger files."""


@dataclass
class _Layers:
    value: FloatArray  # 2*delta-llh per grid point (NaN where the fit failed)
    inside: dict[str, npt.NDArray[np.bool_]]  # region membership per level label


def _layers(m: MultiOrderMap, meta: SkymapMeta, ra: FloatArray, dec: FloatArray, rows: IntArray | None) -> _Layers:
    """The layers at the grid points (RA, Dec); ``rows``: their map rows looked up already (``plot_samples``)."""
    if rows is None:
        rows = sample_rows(m, ra, dec)
    d2 = m.dllh2
    value = d2[rows]
    inside = {}
    for label, reg in meta.regions.items():
        member = np.isfinite(d2) & (d2 <= reg.level_2dllh)
        inside[label] = member[rows]
    return _Layers(value, inside)


def _cmap() -> Colormap:
    return plt.get_cmap(CMAP).with_extremes(bad="#bdbdbd")  # grey: failed fits


def _style(label: str) -> tuple[str, str]:
    return LEVEL_STYLE.get(label, OTHER_STYLE)


def _legend_handles(meta: SkymapMeta, failed: bool, truth: bool) -> list[Line2D]:
    handles: list[Line2D] = []
    for label, reg in meta.regions.items():
        colour, ls = _style(label)
        name = f"{label}%" if label in ("50", "90") else f"level {label}"
        handles.append(
            Line2D(
                [],
                [],
                color=colour,
                ls=ls,
                lw=1.8,
                label=f"{name} (2ΔLLH ≤ {reg.level_2dllh:g}): {_area_text(reg)}",
            )
        )
    bf = meta.best_fit
    handles.append(
        Line2D([], [], markersize=12, label=f"best fit RA {bf.ra_deg:.2f}°, Dec {bf.dec_deg:+.2f}°", **BEST_STYLE)
    )
    if truth:
        handles.append(Line2D([], [], markersize=9, label="true direction (simulation)", **TRUTH_STYLE))
    if failed:
        handles.append(Line2D([], [], marker="s", color="#bdbdbd", ls="none", markersize=8, label="failed fit"))
    return handles


def _area_text(reg: Region) -> str:
    area = reg.area_deg2
    return f"{area:.3g} deg²" if area < 100 else f"{area:,.0f} deg²"


def _title(meta: SkymapMeta) -> str:
    when = "time unknown"
    if meta.event_time is not None:
        rt = rounded_time(meta.event_time)
        when = rt.strftime("%Y-%m-%d %H:%M:%S.") + f"{rt.microsecond // 10000:02d} UTC"
    stream = f" ({meta.stream})" if meta.stream else ""
    return f"Run {meta.run_id}, event {meta.event_id}{stream} — {when}"


def _footer(fig: Figure, meta: SkymapMeta) -> Text:
    """The provenance line under a plot (right-aligned; placed by the plot's layout)."""
    levels = ", ".join(f"{k}%: {r.level_2dllh:g}" for k, r in meta.regions.items())
    rev = f" ({meta.git_revision[:10]})" if meta.git_revision else ""
    return fig.text(
        1.0,
        0.0,
        f"skyscan {meta.software_version}{rev} · containment {meta.containment_method} ({levels}) · {meta.created_iso}",
        ha="right",
        va="top",
        fontsize=6.5,
        color="#555555",
    )


def _save(fig: Figure, path: str | os.PathLike[str], meta: SkymapMeta) -> None:
    """Write the figure as laid out (every artist lies inside the canvas), in one drawing: no tight bounding box,
    which would cost matplotlib a second drawing of the whole figure to find it."""
    metadata = {
        "Title": _title(meta),
        "Software": f"skyscan {meta.software_version}" + (f" git {meta.git_revision}" if meta.git_revision else ""),
        "Description": f"run {meta.run_id} event {meta.event_id}; config sha256 {meta.config_sha256}",
        "Creation Time": meta.created_iso,
    }
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata=metadata, pil_kwargs={"compress_level": PNG_COMPRESSION})
    finally:
        plt.close(fig)


def _contours(ax: Axes, x: FloatArray, y: FloatArray, layers: _Layers, transform_x: bool = False) -> None:
    for label, inside in layers.inside.items():
        if not np.any(inside):
            continue
        colour, ls = _style(label)
        cs = ax.contour(x, y, inside.astype(np.float64), levels=[0.5], colors=[colour], linestyles=[ls], linewidths=1.6)
        # A light halo keeps the line visible on dark and light colours alike.
        cs.set(path_effects=[patheffects.withStroke(linewidth=3.4, foreground="#ffffff", alpha=0.8)])


# --------------------------------------------------------------------------------------------------------------
# Layout of the views (the placing itself: skyscan.products.plotlayout)
# --------------------------------------------------------------------------------------------------------------

# Full sky (points).
FS_TITLE_GAP_PT = 9.4
"""Title to the top of the map."""
FS_LABEL_LEFT_PT = 27.8
"""Left edge of the Dec axis label from the map's left edge (its tick labels are fixed: 60°, 30°, 0° ...)."""
FS_CBAR_GAP_PT = 25.9
"""Bottom of the map to the colour bar (holds the RA axis label)."""
FS_LEGEND_GAP_PT = 39.7
"""Top of the colour bar to the legend (holds the colour bar's tick labels and label)."""

# Zoom (points).
Z_TITLE_GAP_PT = 6.5
"""Title to the top of the axes (clears half a Dec tick label at the top edge)."""
Z_LEGEND_GAP_PT = 36.7
"""Bottom of the axes to the legend (holds the RA tick labels and axis label)."""
Z_CBAR_GAP_PT = 19.2
"""Right edge of the axes to the colour bar."""
Z_CBAR_WIDTH_PT = 13.8
"""Width of the colour bar."""

# Polar zoom (points).
P_TITLE_GAP_PT = 28.6
"""Title to the top of the circle (holds the RA label at its top)."""
P_LABEL_OUT_PT = 14.0
"""Circle to the centre of an RA label beside it."""
P_CBAR_GAP_PT = 22.0
"""RA labels beside the circle to the colour bar."""
P_CBAR_WIDTH_PT = 14.9
"""Width of the colour bar."""
P_CBAR_HEIGHT = 0.883
"""Height of the colour bar, as a fraction of the circle's diameter."""
P_LEGEND_GAP_PT = 31.3
"""Bottom of the circle to the legend (holds the RA label at its bottom)."""


def _footer_text(fig: Figure, meta: SkymapMeta, renderer: RendererBase, width: float) -> Text:
    footer = _footer(fig, meta)
    fit_width(footer, renderer, width - 2 * MARGIN_PX, " · ")
    return footer


# --------------------------------------------------------------------------------------------------------------
# Full sky
# --------------------------------------------------------------------------------------------------------------


def fullsky_norm(m: MultiOrderMap, bands: int = FULLSKY_BANDS) -> BoundaryNorm:
    """Colour scale of the full sky, set from the map's own range: each colour band covers an equal share of the sky.

    The band edges are the sky-area quantiles of 2*delta-llh (histogram equalisation), from 0 to the map's largest
    finite value, so the structure of the whole map shows whatever its range (a fixed 0-40 scale leaves nearly all
    of the sky in its top colour).
    """
    d2 = m.dllh2
    finite = np.isfinite(d2)
    values, area = d2[finite], m.area_sr[finite]
    order = np.argsort(values, kind="stable")
    values, frac = values[order], np.cumsum(area[order]) / float(np.sum(area))
    edges = np.interp(np.linspace(0.0, 1.0, bands + 1), np.concatenate([[0.0], frac]), np.concatenate([[0.0], values]))
    edges[0] = 0.0
    edges = np.unique(np.round(edges, 6))
    if edges.size < 2:
        edges = np.array([0.0, 1.0])
    return BoundaryNorm(edges, ncolors=_cmap().N, clip=True)


def zoom_vmax(meta: SkymapMeta) -> float:
    """Top of the zoom's colour scale: at least VMAX and ZOOM_HEADROOM times the outermost quoted level."""
    outer = max((r.level_2dllh for r in meta.regions.values()), default=0.0)
    return max(VMAX, math.ceil(ZOOM_HEADROOM * outer))


def region_ring_deg(meta: SkymapMeta) -> float | None:
    """Radius (deg) of the ring marking the 90% region on the full sky, or None when the region is big enough."""
    reg = meta.regions.get("90") or max(meta.regions.values(), key=lambda r: r.level_2dllh)
    extent = max(reg.dec_plus_deg, reg.dec_minus_deg)
    if reg.ra_errors_meaningful:
        cos_dec = max(math.cos(math.radians(meta.best_fit.dec_deg)), 1e-3)
        extent = max(extent, reg.ra_plus_deg * cos_dec, reg.ra_minus_deg * cos_dec)
    return RING_BELOW_DEG if extent < RING_BELOW_DEG else None


def _mesh(ax: Any, x_edges: FloatArray, y_edges: FloatArray, value: FloatArray, norm: Normalize) -> Any:
    """The 2*delta-llh colour layer on cell edges (NaN cells left blank), as every projection draws it."""
    top = float(norm.boundaries[-1]) if isinstance(norm, BoundaryNorm) else float(norm.vmax or VMAX)
    return ax.pcolormesh(
        x_edges,
        y_edges,
        np.ma.masked_invalid(np.clip(value, 0.0, top)),
        cmap=_cmap(),
        norm=norm,
        shading="flat",
        rasterized=True,
    )


def _ring(ax: Any, ra_deg: float, dec_deg: float, radius_deg: float) -> None:
    """A circle of `radius_deg` around a direction on the Mollweide axes (traced as a small circle on the sphere)."""
    t = np.linspace(0.0, 2 * math.pi, 181)
    d0, a0, r = math.radians(dec_deg), math.radians(ra_deg), math.radians(radius_deg)
    dec = np.arcsin(np.sin(d0) * math.cos(r) + np.cos(d0) * math.sin(r) * np.cos(t))
    ra = a0 + np.arctan2(np.sin(t) * math.sin(r) * np.cos(d0), math.cos(r) - np.sin(d0) * np.sin(dec))
    x = _mollweide_x(np.degrees(ra))
    jump = np.flatnonzero(np.abs(np.diff(x)) > math.pi)  # split where the ring crosses the map's edge
    for seg_x, seg_y in zip(np.split(x, jump + 1), np.split(dec, jump + 1), strict=True):
        ax.plot(seg_x, seg_y, color="#ff00ff", lw=1.8, zorder=4,
                path_effects=[patheffects.withStroke(linewidth=3.4, foreground="#ffffff", alpha=0.8)])


def _mollweide_x(ra_deg: npt.ArrayLike) -> FloatArray:
    """Mollweide longitude (radians) for RA: RA 0 at the centre, increasing to the left as on the sky."""
    ra = np.asarray(ra_deg, dtype=np.float64)
    return np.radians(-(np.mod(ra + 180.0, 360.0) - 180.0))


def plot_fullsky(
    path: str | os.PathLike[str],
    m: MultiOrderMap,
    meta: SkymapMeta,
    width: int = FULLSKY_WIDTH,
    rows: IntArray | None = None,
) -> None:
    """Full-sky Mollweide view of 2*delta-llh with contours, best fit, RA/Dec grid and a titled legend.

    ``width``: of the PNG (pixels). ``rows``: the map rows under the grid points, looked up already
    (``plotgrid.plot_samples``); else here.
    """
    _save(fullsky_figure(m, meta, width, rows), path, meta)


def fullsky_figure(
    m: MultiOrderMap, meta: SkymapMeta, width: int = FULLSKY_WIDTH, rows: IntArray | None = None
) -> Figure:
    """The figure `plot_fullsky` saves, laid out to lie inside its canvas (``width`` pixels wide at DPI)."""
    cells = fullsky_cells()
    lon_edges, lat_edges, lon_g, lat_g = cells.lon_edges, cells.lat_edges, cells.lon_g, cells.lat_g
    layers = _layers(m, meta, cells.ra_g, cells.dec_g, rows)

    w_px = float(width)
    map_w = min(0.864 * w_px, w_px - 2 * (MARGIN_PX + FS_LABEL_LEFT_PT * PX))  # the Mollweide ellipse is 2:1
    map_h = 0.5 * map_w
    cbar_w, cbar_h = 0.4 * w_px, 0.0144 * w_px
    fig = figure_px(w_px, 0.65 * w_px)
    renderer = renderer_of(fig)
    ax = fig.add_axes(Frame(w_px, 0.65 * w_px).rect(0.5 * (w_px - map_w), MARGIN_PX, map_w, map_h),
                      projection="mollweide")
    norm = fullsky_norm(m)
    mesh = _mesh(ax, lon_edges, lat_edges, layers.value, norm)
    _contours(ax, lon_g, lat_g, layers)
    bf = meta.best_fit
    ring = region_ring_deg(meta)
    if ring is not None:
        _ring(ax, bf.ra_deg, bf.dec_deg, ring)
    ax.plot(_mollweide_x(bf.ra_deg), math.radians(bf.dec_deg), markersize=11, zorder=5, **BEST_STYLE)
    if meta.truth_radec is not None:
        t_ra, t_dec = meta.truth_radec
        ax.plot(_mollweide_x(t_ra), math.radians(t_dec), markersize=8, zorder=6, **TRUTH_STYLE)
    ra_ticks = np.arange(-150, 151, 30)
    ax.set_xticks(np.radians(ra_ticks))
    ax.set_xticklabels([f"{int(np.mod(-t, 360))}°" for t in ra_ticks], fontsize=8)
    outline: list[AbstractPathEffect] = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for label in ax.get_xticklabels():
        label.set_color("white")
        label.set_path_effects(outline)
    ax.set_yticks(np.radians(np.arange(-60, 61, 30)))
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(True, color="#cccccc", lw=0.5, alpha=0.6)
    ax.set_xlabel("Right ascension (J2000), increasing to the left", fontsize=9)
    ax.set_ylabel("Declination (J2000)", fontsize=9)
    title = title_text(fig, _title(meta), 11, renderer, w_px)
    cax = fig.add_axes((0.3, 0.1, 0.4, 0.02))
    cb = fig.colorbar(mesh, cax=cax, orientation="horizontal", spacing="uniform")
    edges = norm.boundaries
    cb.set_ticks([float(edges[i]) for i in np.linspace(0, edges.size - 1, 6).round().astype(int)])
    cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.3g}" if v < 1000 else f"{v:,.0f}"))
    cb.set_label("2ΔLLH = 2 (−ln L − min −ln L); each colour band is an equal share of the sky", fontsize=8,
                 labelpad=2)
    cb.ax.tick_params(labelsize=7)
    colorbar_minor_marks(cb)
    handles = _legend_handles(meta, bool(np.any(np.isnan(layers.value))), meta.truth_radec is not None)
    if ring is not None:
        handles.append(Line2D([], [], color="#ff00ff", lw=1.8, label=f"ring of {ring:g}° around the 90% region"))
    legend = fitted_legend(fig, renderer, handles, min(3, len(handles)), 8, w_px - 2 * MARGIN_PX)
    footer = _footer_text(fig, meta, renderer, w_px)

    map_top = MARGIN_PX + title.get_window_extent(renderer).height + FS_TITLE_GAP_PT * PX
    cbar_top = map_top + map_h + FS_CBAR_GAP_PT * PX
    legend_top = cbar_top + FS_LEGEND_GAP_PT * PX
    frame = Frame(w_px, legend_top + below_legend(legend, footer, renderer))
    place_blocks(fig, frame, title, 0.5 * w_px, legend, 0.5 * w_px, legend_top, footer, renderer)
    ax.set_position(frame.rect(0.5 * (w_px - map_w), map_top, map_w, map_h))
    cax.set_position(frame.rect(0.5 * (w_px - cbar_w), cbar_top, cbar_w, cbar_h))
    return fig


# --------------------------------------------------------------------------------------------------------------
# Zoom
# --------------------------------------------------------------------------------------------------------------


def _ra_formatter(value: float, _pos: int) -> str:
    return f"{np.mod(value, 360.0):.4g}°"


def _zoom_blocks(fig: Figure, renderer: RendererBase, meta: SkymapMeta, layers: _Layers, w_px: float, title: Text,
                 x0: float, body_w: float, body_h: float, title_gap_pt: float, legend_gap_pt: float) -> tuple[Frame, float]:
    """Lay out a zoom around its body (the axes, ``body_w`` x ``body_h`` pixels from ``x0``): the title above it,
    the legend and footer below, title and legend centred on the body within the margins. Returns the figure's
    frame and the body's top (pixels)."""
    handles = _legend_handles(meta, bool(np.any(np.isnan(layers.value))), meta.truth_radec is not None)
    legend = fitted_legend(fig, renderer, handles, 1, 8.5, w_px - 2 * MARGIN_PX)
    footer = _footer_text(fig, meta, renderer, w_px)
    body_top = MARGIN_PX + title.get_window_extent(renderer).height + title_gap_pt * PX
    legend_top = body_top + body_h + legend_gap_pt * PX
    frame = Frame(w_px, legend_top + below_legend(legend, footer, renderer))
    centre = x0 + 0.5 * body_w
    place_blocks(fig, frame, title, centre_within(centre, title.get_window_extent(renderer).width, w_px), legend,
                 centre_within(centre, legend.get_window_extent(renderer).width, w_px), legend_top, footer, renderer)
    return frame, body_top


def plot_zoom(
    path: str | os.PathLike[str],
    m: MultiOrderMap,
    meta: SkymapMeta,
    size: int = ZOOM_SIZE,
    rows: IntArray | None = None,
    win: ZoomWindow | None = None,
) -> None:
    """Zoom on the best fit (RA/Dec plate carree, RA increasing to the left, locally equal scales).

    ``size``: width of the PNG (pixels). ``win`` and ``rows``: the window and the map rows under its grid points,
    found already (``plotgrid.plot_samples``, for this ``size``); else here.
    """
    _save(zoom_figure(m, meta, size, rows, win), path, meta)


def zoom_figure(
    m: MultiOrderMap,
    meta: SkymapMeta,
    size: int = ZOOM_SIZE,
    rows: IntArray | None = None,
    win: ZoomWindow | None = None,
) -> Figure:
    """The figure `plot_zoom` saves (a box in RA/Dec, or a polar view near a pole), laid out inside its canvas."""
    if win is None:
        win = zoom_window(m, meta)
        rows = None
    if win.polar:
        return _zoom_polar_figure(m, meta, win, size, rows)
    cells = zoom_cells(win, size)
    ra_g, dec_g = cells.x_g, cells.y_g
    layers = _layers(m, meta, ra_g, dec_g, rows)

    w_px = float(size)
    side = 0.6525 * w_px  # the axes' longer side (pixels)
    mid_dec = 0.5 * (win.dec_lo + win.dec_hi)
    ratio = 1.0 / max(math.cos(math.radians(mid_dec)), 0.05)
    full_ra = (win.ra_hi - win.ra_lo) >= 359.0
    aspect = min(ratio, 20.0)
    # Height / width on the page: equal scales in RA (times cos Dec) and Dec, unless the window spans all RA.
    shape = 1.0 if full_ra else (win.dec_hi - win.dec_lo) * aspect / (win.ra_hi - win.ra_lo)

    def box(longest: float) -> tuple[float, float]:
        return (longest, longest * shape) if shape <= 1.0 else (longest / shape, longest)

    box_w, box_h = box(side)
    fig = figure_px(w_px, w_px)
    renderer = renderer_of(fig)
    provisional = Frame(w_px, w_px)
    ax = fig.add_axes(provisional.rect(0.5 * (w_px - box_w), MARGIN_PX, box_w, box_h))
    top = zoom_vmax(meta)
    image = ax.imshow(
        np.ma.masked_invalid(np.clip(layers.value, 0.0, top)),
        origin="lower",
        extent=(win.ra_lo, win.ra_hi, win.dec_lo, win.dec_hi),
        cmap=_cmap(),
        vmin=0.0,
        vmax=top,
        interpolation="nearest",
        aspect="auto",
    )
    _contours(ax, ra_g, dec_g, layers)
    bf = meta.best_fit
    ax.plot(bf.ra_deg, bf.dec_deg, markersize=15, zorder=5, **BEST_STYLE)
    if meta.truth_radec is not None:
        t_ra = bf.ra_deg + (np.mod(meta.truth_radec[0] - bf.ra_deg + 180.0, 360.0) - 180.0)
        ax.plot(t_ra, meta.truth_radec[1], markersize=10, zorder=6, **TRUTH_STYLE)
    ax.set_xlim(win.ra_hi, win.ra_lo)  # RA increases to the left
    ax.set_ylim(win.dec_lo, win.dec_hi)
    ax.set_aspect("auto" if full_ra else aspect, adjustable="box")
    ax.xaxis.set_major_formatter(FuncFormatter(_ra_formatter))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:+.4g}°"))
    ax.grid(True, color="#ffffff", lw=0.6, alpha=0.5)
    ax.set_xlabel("Right ascension (J2000)")
    ax.set_ylabel("Declination (J2000)")
    cax = fig.add_axes(provisional.rect(0.0, MARGIN_PX, Z_CBAR_WIDTH_PT * PX, box_h))
    cb = fig.colorbar(image, cax=cax, extend="max")
    cb.set_label("2ΔLLH", fontsize=9)
    label_size = matplotlib.rcParams["ytick.labelsize"]
    left = (ax.yaxis.label.get_window_extent(renderer).width + LABEL_PAD_PT * PX
            + tick_label_width(ax.yaxis, renderer, label_size) + TICK_OUT_PT * PX)
    right = ((Z_CBAR_GAP_PT + Z_CBAR_WIDTH_PT + TICK_OUT_PT + LABEL_PAD_PT) * PX
             + tick_label_width(cb.ax.yaxis, renderer, label_size) + cb.ax.yaxis.label.get_window_extent(renderer).width)
    room = w_px - 2 * MARGIN_PX - left - right
    if box_w > room:  # wide tick labels: a smaller box, so that nothing leaves the canvas
        box_w, box_h = box(side * room / box_w)
    x0 = MARGIN_PX + left + 0.5 * (room - box_w)
    title = title_text(fig, _title(meta), 11, renderer, w_px)
    frame, ax_top = _zoom_blocks(fig, renderer, meta, layers, w_px, title, x0, box_w, box_h,
                                 Z_TITLE_GAP_PT, Z_LEGEND_GAP_PT)
    ax.set_position(frame.rect(x0, ax_top, box_w, box_h))
    cax.set_position(frame.rect(x0 + box_w + Z_CBAR_GAP_PT * PX, ax_top, Z_CBAR_WIDTH_PT * PX, box_h))
    return fig


def _zoom_polar_figure(
    m: MultiOrderMap, meta: SkymapMeta, win: ZoomWindow, size: int, rows: IntArray | None
) -> Figure:
    """Polar zoom around a celestial pole: angle = RA, radius = distance from the pole (labelled as Dec)."""
    sign = win.polar
    cells = zoom_cells(win, size)
    t_edges, r_edges, t_g, r_g = cells.x_edges, cells.y_edges, cells.x_g, cells.y_g
    layers = _layers(m, meta, cells.ra_g, cells.dec_g, rows)

    w_px = float(size)
    fig = figure_px(w_px, w_px)
    renderer = renderer_of(fig)
    provisional = Frame(w_px, w_px)
    diameter = 0.68 * w_px
    ax = cast(PolarAxes, fig.add_axes(provisional.rect(MARGIN_PX, MARGIN_PX, diameter, diameter),
                                      projection="polar"))
    mesh = _mesh(ax, t_edges, r_edges, layers.value, Normalize(vmin=0.0, vmax=zoom_vmax(meta)))
    # Repeat the first RA column after the last so that contours close across RA = 0.
    t_wrap = np.concatenate([t_g, t_g[:, :1] + 2 * math.pi], axis=1)
    r_wrap = np.concatenate([r_g, r_g[:, :1]], axis=1)
    wrapped = _Layers(layers.value, {k: np.concatenate([v, v[:, :1]], axis=1) for k, v in layers.inside.items()})
    _contours(ax, t_wrap, r_wrap, wrapped)
    bf = meta.best_fit
    ax.plot(math.radians(bf.ra_deg), 90.0 - sign * bf.dec_deg, markersize=15, zorder=5, **BEST_STYLE)
    if meta.truth_radec is not None:
        ax.plot(math.radians(meta.truth_radec[0]), 90.0 - sign * meta.truth_radec[1], markersize=10, zorder=6,
                **TRUTH_STYLE)
    # As on the sky seen from inside the sphere (east to the left of north): RA runs clockwise around the north
    # celestial pole and counter-clockwise around the south one.
    ax.set_theta_direction(-1 if sign > 0 else 1)
    ax.set_theta_zero_location("S")
    ax.set_rlim(0.0, win.polar_radius)
    ra_labels = [f"RA {d}°" for d in range(0, 360, 45)]
    ax.set_xticks(np.radians(np.arange(0, 360, 45)))
    ax.set_xticklabels(ra_labels, fontsize=8)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{sign * (90.0 - v):+.4g}°"))
    ax.tick_params(axis="y", labelsize=8, colors="#ffffff")
    outline: list[AbstractPathEffect] = [patheffects.withStroke(linewidth=2.2, foreground="black")]
    for label in ax.get_yticklabels():
        label.set_path_effects(outline)
    ax.set_rlabel_position((bf.ra_deg + 180.0) % 360.0)  # Dec labels on the side away from the region
    ax.grid(True, color="#ffffff", lw=0.6, alpha=0.5)
    pole = "north" if sign > 0 else "south"
    title = title_text(fig, f"{_title(meta)}\naround the {pole} celestial pole (radial labels: Dec)", 10, renderer,
                        w_px)
    cax = fig.add_axes(provisional.rect(0.0, MARGIN_PX, P_CBAR_WIDTH_PT * PX, P_CBAR_HEIGHT * diameter))
    cb = fig.colorbar(mesh, cax=cax, extend="max")
    cb.set_label("2ΔLLH", fontsize=9)
    # The RA labels at the circle's sides (RA 90° and 270°) reach out by half their width beyond their centres.
    side_label = P_LABEL_OUT_PT * PX + 0.5 * max(text_width(renderer, s, 8) for s in ra_labels)
    right = ((P_CBAR_GAP_PT + P_CBAR_WIDTH_PT + TICK_OUT_PT + LABEL_PAD_PT) * PX
             + tick_label_width(cb.ax.yaxis, renderer, matplotlib.rcParams["ytick.labelsize"])
             + cb.ax.yaxis.label.get_window_extent(renderer).width)
    diameter = min(diameter, w_px - 2 * MARGIN_PX - 2 * side_label - right)
    x0 = 0.5 * (w_px - (2 * side_label + diameter + right)) + side_label
    frame, ax_top = _zoom_blocks(fig, renderer, meta, layers, w_px, title, x0, diameter, diameter,
                                 P_TITLE_GAP_PT, P_LEGEND_GAP_PT)
    ax.set_position(frame.rect(x0, ax_top, diameter, diameter))
    cbar_h = P_CBAR_HEIGHT * diameter
    cax.set_position(frame.rect(x0 + diameter + side_label + P_CBAR_GAP_PT * PX, ax_top + 0.5 * (diameter - cbar_h),
                                P_CBAR_WIDTH_PT * PX, cbar_h))
    return fig


__all__ = [
    "VMAX",
    "ZoomWindow",
    "fullsky_figure",
    "fullsky_norm",
    "plot_fullsky",
    "plot_zoom",
    "region_ring_deg",
    "sample_rows",
    "zoom_figure",
    "zoom_vmax",
    "zoom_window",
]
