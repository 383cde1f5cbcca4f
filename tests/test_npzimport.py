"""Import of skyreader-style .npz scans: RING -> NESTED, header metadata, products, and bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.nodes.merge import merge_npz
from skyscan.products.npz import read_skyreader_npz, stream_of

CENTRE = (310.0, 20.0)
SIGMA = 2.0
RUN, EVENT, MJD = 138632, 31747601, 61113.5
PIXEL = [("index", np.int64), ("llh", np.float64), ("E_in", np.float64), ("E_tot", np.float64)]
VERTEX = [("X", np.float64), ("Y", np.float64), ("Z", np.float64), ("T", np.float64)]


def _llh_ring(nside: int, ring: np.ndarray) -> np.ndarray:
    """The paraboloid at the centres of RING pixels, computed in RING order (independently of any conversion)."""
    lon, lat = hp.pix2ang(nside, ring, lonlat=True)
    d = np.degrees(hp.rotator.angdist(np.vstack([lon, lat]), list(CENTRE), lonlat=True))
    return np.asarray(50.0 + 0.5 * (d / SIGMA) ** 2)


def _nside_array(nside: int, ring: np.ndarray, vertex: bool, rng: np.random.Generator) -> np.ndarray:
    ring = rng.permutation(ring)  # skyreader arrays need not be sorted
    arr = np.zeros(ring.size, dtype=PIXEL + (VERTEX if vertex else []))
    arr["index"] = ring
    arr["llh"] = _llh_ring(nside, ring)
    arr["E_in"] = 1e4
    arr["E_tot"] = 2e4
    if vertex:
        arr["X"], arr["Y"], arr["Z"], arr["T"] = 10.0, 20.0, -300.0, 9000.0
    return arr


def _write_npz(path: Path, header: bool = True, vertex: bool = True, **extra: Any) -> Path:
    rng = np.random.default_rng(3)
    arrays: dict[str, Any] = {"nside-8": _nside_array(8, np.arange(768), vertex, rng)}
    # Refine: the nside-64 children of the 12 nside-8 pixels nearest the centre, given as RING indices.
    nest8 = np.argsort(hp.rotator.angdist(np.vstack(hp.pix2ang(8, np.arange(768), nest=True)),
                                          [math.radians(90 - CENTRE[1]), math.radians(CENTRE[0])]))[:12]
    children = (nest8[:, None] * 64 + np.arange(64)[None, :]).reshape(-1)
    arrays["nside-64"] = _nside_array(64, hp.nest2ring(64, children), vertex, rng)
    if header:
        h = np.zeros(2, dtype=[("run_id", np.int64), ("event_id", np.int64), ("mjd", np.float64),
                               ("event_type", "U14"), ("nside", np.int64)])
        h["run_id"], h["event_id"], h["mjd"], h["event_type"] = RUN, EVENT, MJD, "gfu-bronze"
        h["nside"] = [8, 64]
        arrays["header"] = h
    arrays.update(extra)
    np.savez(path, **arrays)
    return path


def test_read_converts_ring_to_nested(tmp_path: Path) -> None:
    scan = read_skyreader_npz(_write_npz(tmp_path / "scan.npz"))
    assert [s.nside for s in scan.stages] == [8, 64]
    for stage, record in zip(scan.stages, scan.records, strict=True):
        # The llh written for RING pixel r must now sit at NESTED index ring2nest(r).
        ring = np.asarray(hp.nest2ring(stage.nside, stage.ipix))
        assert np.allclose(stage.llh, _llh_ring(stage.nside, ring))
        assert np.array_equal(record.extra["ring_index"], ring)
        assert np.all(stage.x == 10.0) and np.all(stage.t == 9000.0)
    assert (scan.run_id, scan.event_id, scan.event_type) == (RUN, EVENT, "gfu-bronze")
    assert scan.event_time is not None
    assert scan.event_time.isoformat() == "2026-03-14T12:00:00+00:00"
    assert stream_of(scan.event_type) == "bronze"


def test_import_produces_the_products(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    result = merge_npz(_write_npz(tmp_path / "scan.npz"), out, containment="wilks", plots=False)
    s = json.loads((out / "summary.json").read_text())
    assert s == result.summary
    assert (s["run_id"], s["event_id"], s["stream"]) == (RUN, EVENT, "bronze")
    assert s["event_time"] == "2026-03-14T12:00:00.000000Z"
    assert s["pixels"]["by_nside"] == {"8": 768, "64": 768}
    bf = s["best_fit"]
    offset = math.degrees(float(hp.rotator.angdist([bf["ra_deg"], bf["dec_deg"]], list(CENTRE), lonlat=True)[0]))
    assert offset < math.degrees(hp.nside2resol(64))
    assert bf["zenith_deg"] is not None
    radius = math.sqrt(4.61) * SIGMA
    cap = 2 * math.pi * (1 - math.cos(math.radians(radius))) * (180 / math.pi) ** 2
    assert s["containment"]["90"]["area_deg2"] == pytest.approx(cap, rel=0.12)
    assert s["import"]["npz"] == "scan.npz"
    for rel in s["products"].values():
        assert (out / rel).is_file()
    from skyscan.products.hdf5 import read_skymap_h5

    h5 = read_skymap_h5(out / "skymap.h5")
    assert "import:" in h5.config_yaml and "scan.npz" in h5.config_yaml
    assert sorted(h5.stages) == ["nside-64", "nside-8"]
    assert np.all(h5.stages["nside-8"].extra["E_in"] == 1e4)


def test_import_without_header_or_vertex(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    path = _write_npz(tmp_path / "bare.npz", header=False, vertex=False)
    scan = read_skyreader_npz(path)
    assert scan.run_id is None and scan.event_time is None
    assert np.all(np.isnan(scan.stages[0].x))
    result = merge_npz(path, tmp_path / "out", plots=False)
    assert result.summary["event_time"] is None
    assert result.summary["best_fit"]["zenith_deg"] is None and result.summary["best_fit"]["azimuth_deg"] is None
    assert "YYMMDD" in (tmp_path / "out" / "circular.txt").read_text()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    timed = merge_npz(path, tmp_path / "out2", event_time=when, plots=False)
    assert timed.summary["event_time"] == "2026-01-02T03:04:05.000000Z"


def _structured(n: int, fields: list[tuple[str, Any]]) -> np.ndarray:
    return np.zeros(n, dtype=fields)


BAD: list[tuple[str, Any, tuple[str, ...]]] = [
    ("no-llh", {"nside-8": _structured(768, [("index", np.int64), ("E_in", np.float64)])}, ("'llh'",)),
    ("plain-array", {"nside-8": np.arange(768)}, ("structured",)),
    ("bad-key", {"nside-8": _structured(768, PIXEL), "pixels": np.arange(3)}, ("'pixels'",)),
    ("bad-nside", {"nside-12": _structured(1728, PIXEL)}, ("power of two",)),
    ("no-arrays", {"header": np.zeros(1, dtype=[("run_id", int)])}, ("nside-N",)),
    ("empty", {"nside-8": _structured(0, PIXEL)}, ("no pixels",)),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_contents(tmp_path: Path, case: tuple[str, Any, tuple[str, ...]]) -> None:
    _, arrays, words = case
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError) as err:
        read_skyreader_npz(path)
    assert str(err.value).startswith(str(path))
    for word in words:
        assert word in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_skyreader_npz(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("not a zip archive")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        read_skyreader_npz(text)
    truncated = tmp_path / "truncated.npz"
    whole = _write_npz(tmp_path / "whole.npz").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"truncated\.npz"):
        read_skyreader_npz(truncated)
    pickled = tmp_path / "pickled.npz"
    objects: dict[str, Any] = {"nside-8": np.array([{"index": 1}], dtype=object)}
    np.savez(pickled, **objects)
    with pytest.raises(InputError, match=r"pickled\.npz"):
        read_skyreader_npz(pickled)


def test_out_of_range_and_duplicate_indices(tmp_path: Path) -> None:
    arr = _structured(768, PIXEL)
    arr["index"] = np.arange(768)
    arr["index"][5] = 768
    arrays: dict[str, Any] = {"nside-8": arr}
    np.savez(tmp_path / "range.npz", **arrays)
    with pytest.raises(InputError, match="out of range"):
        read_skyreader_npz(tmp_path / "range.npz")
    arr["index"][5] = 4
    np.savez(tmp_path / "dup.npz", **arrays)
    with pytest.raises(InputError, match="more than once"):
        read_skyreader_npz(tmp_path / "dup.npz")


def test_partial_files(tmp_path: Path) -> None:
    full = _write_npz(tmp_path / "full.npz")
    with np.load(full) as npz:
        arrays: dict[str, Any] = {k: npz[k] for k in npz.files}
    # The header lists nside 64 but the array is gone.
    lost: dict[str, Any] = {k: v for k, v in arrays.items() if k != "nside-64"}
    np.savez(tmp_path / "lost.npz", **lost)
    with pytest.raises(InputError, match="partial"):
        read_skyreader_npz(tmp_path / "lost.npz")
    # The coarse stage misses pixels: the sky is not covered.
    part = arrays["nside-8"][:700]
    holes: dict[str, Any] = {"nside-8": part, "nside-64": arrays["nside-64"]}
    np.savez(tmp_path / "holes.npz", **holes)
    with pytest.raises(InputError, match=r"holes\.npz"):
        merge_npz(tmp_path / "holes.npz", tmp_path / "out", plots=False)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_cli_import(tmp_path: Path, input_error: Any) -> None:
    root: Any = cli
    runner = CliRunner()
    path = _write_npz(tmp_path / "scan.npz")
    out = tmp_path / "out"
    result = runner.invoke(root, ["merge", "--import-npz", str(path), "-o", str(out), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert f"merged run {RUN} event {EVENT}" in result.output
    assert (out / "skymap.multiorder.fits").is_file()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 broken")
    input_error(runner.invoke(root, ["merge", "--import-npz", str(bad), "-o", str(tmp_path / "o2")]), "bad.npz")
    input_error(
        runner.invoke(root, ["merge", "--import-npz", str(path), "-o", str(out), "--event-time", "noon"]),
        "--event-time",
    )
