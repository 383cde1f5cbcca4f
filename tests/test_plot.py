"""Plots: the lookup of map pixels, the zoom window, and what ends up in the PNG files."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from PIL import Image

from skyscan.nodes.synthetic import paraboloid_llh, refine_plan
from skyscan.products.meta import SkymapMeta
from skyscan.products.moc import MultiOrderMap, StageResult, build_multiorder
from skyscan.products.plot import plot_fullsky, plot_zoom, sample_rows, zoom_window
from skyscan.products.write import best_fit_of, measure_regions

RED = np.array([0xD6, 0x27, 0x28])
GREY = np.array([0xBD, 0xBD, 0xBD])


def _map(centre: tuple[float, float], sigma: float, failed: tuple[int, ...] = ()) -> MultiOrderMap:
    stages = []
    for k, (nside, pix) in enumerate(refine_plan(centre, ((8, 0), (64, 12), (256, 16)))):
        llh = paraboloid_llh(nside, pix, centre, sigma)
        if k == 0:
            llh[list(failed)] = np.nan
        n = pix.size
        stages.append(StageResult(nside, pix, llh, np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                                  np.zeros(n, dtype=np.int32)))
    return build_multiorder(stages)


def _meta(m: MultiOrderMap, truth: tuple[float, float] | None = None) -> SkymapMeta:
    return SkymapMeta(
        run_id=12, event_id=345, event_time=datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc), stream="gold",
        best_fit=best_fit_of(m, None), containment_method="wilks", regions=measure_regions(m, {"50": 1.39, "90": 4.61}),
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
