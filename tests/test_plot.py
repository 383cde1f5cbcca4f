"""Plots: the lookup of map pixels, the zoom window, and what ends up in the PNG files."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timezone
from itertools import combinations
from pathlib import Path

import healpy as hp
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image

from skyscan.nodes.synthetic import paraboloid_llh, refine_plan
from skyscan.products.meta import SkymapMeta
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder
from skyscan.products.plot import (
    ZoomWindow,
    fullsky_figure,
    plot_fullsky,
    plot_zoom,
    sample_rows,
    zoom_figure,
    zoom_window,
)
from skyscan.products.plotgrid import FULLSKY_WIDTH, ZOOM_SIZE
from skyscan.products.write import best_fit_of, measure_regions

RED = np.array([0xD6, 0x27, 0x28])
GREY = np.array([0xBD, 0xBD, 0xBD])


def _map(
    centre: tuple[float, float], sigma: float, failed: tuple[int, ...] = (), failed_stage: int = 0
) -> MultiOrderMap:
    """A three-stage scan; ``failed``: indices of the pixels of stage ``failed_stage`` whose fit failed (NaN)."""
    stages = []
    for k, (nside, pix) in enumerate(refine_plan(centre, ((8, 0), (64, 12), (256, 16)))):
        llh = paraboloid_llh(nside, pix, centre, sigma)
        if k == failed_stage:
            llh[list(failed)] = np.nan
        n = pix.size
        stages.append(StageResult(nside, pix, llh, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                                  np.zeros(n, dtype=np.int32)))
    return build_multiorder(stages)


def _meta(
    m: MultiOrderMap, truth: tuple[float, float] | None = None, levels: dict[str, float] | None = None
) -> SkymapMeta:
    return SkymapMeta(
        run_id=12, event_id=345, event_time=datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc), stream="gold",
        best_fit=best_fit_of(m, None), containment_method="wilks",
        regions=measure_regions(m, levels or {"50": 1.39, "90": 4.61}),
        config_yaml="containment: wilks\n", created=datetime(2026, 3, 14, 16, 0, tzinfo=timezone.utc),
        software_version="1.2.3", git_revision=None, truth_radec=truth,
    )


@pytest.fixture(scope="module")
def ordinary() -> tuple[MultiOrderMap, SkymapMeta]:
    m = _map((359.5, 20.0), 1.0, failed=(600, 601))  # a region across RA = 0, two failed nside-8 pixels
    return m, _meta(m, truth=(0.3, 20.4))


def test_sample_rows_finds_the_containing_pixel(ordinary: tuple[MultiOrderMap, SkymapMeta]) -> None:
    m, _ = ordinary
    rng = np.random.default_rng(1)
    ra = np.concatenate([rng.uniform(0, 360, 2000), rng.uniform(357, 362, 2000)])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, 2000))), rng.uniform(18, 22, 2000)])
    rows = sample_rows(m, ra, dec)
    assert np.all(rows >= 0)
    nside, ipix = m.nside[rows], m.ipix[rows]
    for n in np.unique(nside):
        sel = nside == n
        own = hp.ang2pix(int(n), ra[sel], dec[sel], nest=True, lonlat=True)
        assert np.array_equal(own, ipix[sel])


def test_zoom_window_holds_the_90_region(ordinary: tuple[MultiOrderMap, SkymapMeta]) -> None:
    m, meta = ordinary
    win = zoom_window(m, meta)
    bf, reg = meta.best_fit, meta.regions["90"]
    assert win.polar == 0
    assert win.ra_lo < bf.ra_deg - reg.ra_minus_deg and win.ra_hi > bf.ra_deg + reg.ra_plus_deg
    assert win.dec_lo < bf.dec_deg - reg.dec_minus_deg and win.dec_hi > bf.dec_deg + reg.dec_plus_deg
    assert win.dec_hi - win.dec_lo < 6 * max(reg.dec_plus_deg, reg.dec_minus_deg)  # sized to it, not the sky


def test_zoom_window_near_a_pole_is_polar() -> None:
    m = _map((40.0, -88.0), 1.0)
    meta = _meta(m)
    assert not meta.regions["90"].ra_errors_meaningful
    win = zoom_window(m, meta)
    assert win.polar == -1
    assert win.polar_radius > 90.0 - abs(meta.best_fit.dec_deg - meta.regions["90"].dec_plus_deg)


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).reshape(-1, 3).astype(np.int64)


def _has_colour(pixels: np.ndarray, rgb: np.ndarray, count: int = 20) -> bool:
    return int(np.count_nonzero(np.all(np.abs(pixels - rgb) <= 6, axis=1))) >= count


def test_plots_are_written_with_contours_and_provenance(
    tmp_path: Path, ordinary: tuple[MultiOrderMap, SkymapMeta]
) -> None:
    m, meta = ordinary
    full, zoom = tmp_path / "plots" / "full.png", tmp_path / "plots" / "zoom.png"
    plot_fullsky(full, m, meta)
    plot_zoom(zoom, m, meta)
    for path in (full, zoom):
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert min(img.size) > 500
            assert "skyscan 1.2.3" in img.info["Software"]
            assert "run 12 event 345" in img.info["Description"]
    zoom_px = _pixels(zoom)
    assert _has_colour(zoom_px, RED, 200)  # the 50% contour
    assert _has_colour(zoom_px, np.array([0, 0, 0]), 200)  # the 90% contour (and text)
    full_px = _pixels(full)
    assert _has_colour(full_px, GREY, 200)  # the failed pixels are shown
    assert not list(tmp_path.rglob("*.part"))


def test_polar_zoom_is_written(tmp_path: Path) -> None:
    m = _map((300.0, 88.5), 1.0)
    meta = _meta(m)
    path = tmp_path / "zoom.png"
    plot_zoom(path, m, meta)
    px = _pixels(path)
    assert _has_colour(px, RED, 200)
    assert len(np.unique(px[:, 0])) > 50  # a colour map, not a blank figure
    assert math.isfinite(meta.regions["90"].area_deg2)


def _write_all(outdir: Path, m: MultiOrderMap, meta: SkymapMeta) -> dict[str, Path]:
    from skyscan.products.write import ProductChoices, write_products

    outdir.mkdir()
    choices = ProductChoices(flat_nside=64, plots=True, zoom_plot=True, circular_template=None)
    return write_products(outdir, m, meta, [], {"scanned": len(m), "failed": 0, "by_nside": {}}, choices).products


def test_plots_drawn_in_a_child_process_are_the_same_files(
    ordinary: tuple[MultiOrderMap, SkymapMeta], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyscan.products import write

    m, meta = ordinary
    if not write.PLOTS_IN_CHILD:
        pytest.skip("no fork on this platform: the plots are always drawn in the merging process")
    child = _write_all(tmp_path / "child", m, meta)
    monkeypatch.setattr(write, "PLOTS_IN_CHILD", False)
    here = _write_all(tmp_path / "here", m, meta)
    assert list(child) == list(here)  # the products, in summary.json's order
    for key in ("plot_fullsky", "plot_zoom", "summary"):
        assert child[key].read_bytes() == here[key].read_bytes(), key


def test_a_plot_that_fails_in_the_child_fails_the_merge(
    ordinary: tuple[MultiOrderMap, SkymapMeta], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skyscan.errors import SkyscanError
    from skyscan.products import plot, write

    m, meta = ordinary
    if not write.PLOTS_IN_CHILD:
        pytest.skip("no fork on this platform: a plot's exception reaches the caller as it is")

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("no room on the canvas")

    monkeypatch.setattr(plot, "plot_zoom", broken)
    with pytest.raises(SkyscanError, match=r"drawing the plots failed.*no room on the canvas"):
        _write_all(tmp_path / "out", m, meta)
    assert not (tmp_path / "out" / "summary.json").exists()


# ----------------------------------------------------------------------------------------------------------------
# Layout: the plots are saved as laid out (no tight bounding box), so nothing may leave the canvas.
# ----------------------------------------------------------------------------------------------------------------

LAYOUT_CASES = ["ordinary", "polar_north", "polar_south", "full_ra", "failed_in_zoom", "long_title"]


def _layout_case(name: str, ordinary: tuple[MultiOrderMap, SkymapMeta]) -> tuple[MultiOrderMap, SkymapMeta,
                                                                                   ZoomWindow | None]:
    if name == "ordinary":  # truth marker, failed pixels on the full sky, the ring, a zoom across RA = 0
        return (*ordinary, None)
    if name == "polar_north":
        m = _map((300.0, 88.5), 1.0)
        return m, _meta(m, truth=(310.0, 88.0)), None
    if name == "polar_south":
        m = _map((40.0, -88.0), 1.0, failed=(0, 1, 2, 3), failed_stage=2)
        return m, _meta(m, truth=(45.0, -88.5)), None
    if name == "full_ra":  # a box zoom whose window spans every RA
        m = _map((120.0, 70.0), 3.0, failed=(10,))
        meta = _meta(m, truth=(125.0, 71.0))
        bf = meta.best_fit
        return m, meta, ZoomWindow(bf.ra_deg - 180.0, bf.ra_deg + 180.0, 55.0, 85.0)
    if name == "failed_in_zoom":
        m = _map((200.0, -30.0), 2.0, failed=(0, 1, 2, 3, 40), failed_stage=2)
        return m, _meta(m), None
    assert name == "long_title"  # a title and footer wider than the canvas, four levels: long legends
    m = _map((80.0, 5.0), 0.5, failed=(100, 101, 102, 103), failed_stage=2)
    meta = _meta(m, truth=(80.3, 5.2), levels={"50": 1.39, "68": 2.28, "90": 4.61, "99": 9.21})
    meta = dataclasses.replace(
        meta, stream="a-stream-with-a-very-long-name-that-no-title-line-can-hold-" * 2, run_id=123456789,
        event_id=987654321, git_revision="0123456789abcdef0123", software_version="1.2.3.dev456+g0123456.d20260314",
    )
    return m, meta, None


def _blocks(fig: Figure) -> dict[str, Bbox]:
    """Pixel extents of what a plot is made of, after drawing it as savefig does."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    fig.draw(renderer)
    blocks = {f"text {t.get_text()[:20]!r}": t.get_window_extent(renderer) for t in fig.texts}
    blocks.update({f"legend {k}": lg.get_window_extent(renderer) for k, lg in enumerate(fig.legends)})
    blocks.update({f"axes {k}": ax.get_tightbbox(renderer) for k, ax in enumerate(fig.axes)})
    return blocks


def _assert_inside_and_apart(fig: Figure, width: int) -> None:
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    blocks = _blocks(fig)
    canvas = fig.bbox
    assert canvas.width == pytest.approx(width, abs=0.5)
    assert 0.5 * width < canvas.height < 1.2 * width
    everything = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    margin = 4.0  # pixels of blank border at least
    assert everything.x0 >= canvas.x0 + margin and everything.y0 >= canvas.y0 + margin, everything
    assert everything.x1 <= canvas.x1 - margin and everything.y1 <= canvas.y1 - margin, everything
    for name, box in blocks.items():
        assert canvas.x0 + margin <= box.x0 and box.x1 <= canvas.x1 - margin, name
        assert canvas.y0 + margin <= box.y0 and box.y1 <= canvas.y1 - margin, name
    for (a, box_a), (b, box_b) in combinations(blocks.items(), 2):
        assert not box_a.overlaps(box_b), f"{a} overlaps {b}"


@pytest.mark.parametrize("name", LAYOUT_CASES)
def test_fullsky_lies_inside_its_canvas(name: str, ordinary: tuple[MultiOrderMap, SkymapMeta]) -> None:
    m, meta, _ = _layout_case(name, ordinary)
    fig = fullsky_figure(m, meta)
    try:
        _assert_inside_and_apart(fig, FULLSKY_WIDTH)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", LAYOUT_CASES)
def test_zoom_lies_inside_its_canvas(name: str, ordinary: tuple[MultiOrderMap, SkymapMeta]) -> None:
    m, meta, win = _layout_case(name, ordinary)
    fig = zoom_figure(m, meta, win=win)
    try:
        _assert_inside_and_apart(fig, ZOOM_SIZE)
        if name.startswith("polar"):
            assert fig.axes[0].name == "polar"
        else:
            assert fig.axes[0].name == "rectilinear"
    finally:
        plt.close(fig)


def test_layout_cases_show_what_they_are_for(ordinary: tuple[MultiOrderMap, SkymapMeta]) -> None:
    """The legends of the layout cases hold the entries the cases are meant to exercise."""

    def labels(fig: Figure) -> list[str]:
        return [t.get_text() for lg in fig.legends for t in lg.get_texts()]

    m, meta, _ = _layout_case("ordinary", ordinary)
    assert any("ring of" in s for s in labels(fullsky_figure(m, meta)))
    assert "failed fit" in labels(fullsky_figure(m, meta))
    m, meta, _ = _layout_case("failed_in_zoom", ordinary)
    assert "failed fit" in labels(zoom_figure(m, meta))
    m, meta, _ = _layout_case("long_title", ordinary)
    fig = zoom_figure(m, meta)
    assert fig.texts[0].get_text().count("\n") >= 2  # the title wrapped
    assert len(labels(fig)) == 7  # four levels, best fit, truth, failed fits
    assert len(labels(fullsky_figure(m, meta))) == 7  # four levels, best fit, truth, ring: three rows
    plt.close("all")


def test_saving_a_plot_draws_the_figure_once(
    tmp_path: Path, ordinary: tuple[MultiOrderMap, SkymapMeta], monkeypatch: pytest.MonkeyPatch
) -> None:
    m, meta = ordinary
    calls: list[int] = []
    draw = Figure.draw

    def counted(self: Figure, renderer: object) -> None:
        calls.append(1)
        draw(self, renderer)  # type: ignore[arg-type]

    monkeypatch.setattr(Figure, "draw", counted)
    plot_fullsky(tmp_path / "full.png", m, meta)
    assert len(calls) == 1
    plot_zoom(tmp_path / "zoom.png", m, meta)
    assert len(calls) == 2
    with Image.open(tmp_path / "full.png") as img:
        assert img.size[0] == FULLSKY_WIDTH
    with Image.open(tmp_path / "zoom.png") as img:
        assert img.size[0] == ZOOM_SIZE


@pytest.mark.parametrize(("full_width", "zoom_size"), [(720, 560), (1600, 1100)])
def test_other_sizes_lie_inside_their_canvas(
    full_width: int, zoom_size: int, ordinary: tuple[MultiOrderMap, SkymapMeta]
) -> None:
    m, meta = ordinary
    for fig, width in ((fullsky_figure(m, meta, width=full_width), full_width),
                       (zoom_figure(m, meta, size=zoom_size), zoom_size)):
        try:
            _assert_inside_and_apart(fig, width)
        finally:
            plt.close(fig)
