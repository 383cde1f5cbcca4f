"""The built-in ic86 geometry (its layout, not its exact numbers) and the CSV format that replaces it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest

from skyscan.errors import InputError
from skyscan.reco.geometry import ORIGIN_DEPTH_M, Geometry, builtin, ic86, read_csv, to_csv

if TYPE_CHECKING:
    from conftest import BadInput

STANDARD = range(1, 79)
DEEPCORE = range(79, 87)


def _string_xy(geo: Geometry, strings: range) -> npt.NDArray[np.float64]:
    rows = []
    for s in strings:
        xy = geo.pos[geo.string == s, :2]
        assert np.ptp(xy, axis=0).max() == 0.0, f"string {s} is not vertical"
        rows.append(xy[0])
    return np.array(rows)


def _depths(geo: Geometry, string: int) -> npt.NDArray[np.float64]:
    """Depths below the surface, in om order."""
    sel = geo.string == string
    order = np.argsort(geo.om[sel])
    return np.asarray(ORIGIN_DEPTH_M - geo.pos[sel, 2][order], dtype=np.float64)


# --- the built-in geometry ----------------------------------------------------------------------------------------
def test_ic86_counts() -> None:
    geo = ic86()
    assert len(geo) == 86 * 60
    assert geo.pos.shape == (86 * 60, 3) and geo.efficiency.shape == (86 * 60,)
    assert sorted(set(geo.string.tolist())) == list(range(1, 87))
    for s in (1, 40, 78, 79, 86):
        assert sorted(geo.om[geo.string == s].tolist()) == list(range(1, 61))
    assert len(geo.keys) == len(geo)  # every (string, om) once
    assert builtin("ic86") is geo  # built once per process


def test_ic86_standard_strings_on_triangular_grid() -> None:
    xy = _string_xy(ic86(), STANDARD)
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    np.testing.assert_allclose(nearest, 125.0, atol=0.5)
    # On a triangular grid an interior string has six neighbours at one spacing; some must be interior.
    neighbours = (d < 126.0).sum(axis=1)
    assert neighbours.max() == 6 and (neighbours == 6).sum() >= 30
    # About a kilometre across, centred near the origin.
    radius = np.hypot(xy[:, 0], xy[:, 1])
    assert 450.0 < radius.max() < 700.0
    assert np.hypot(*xy.mean(axis=0)) < 60.0


def test_ic86_standard_depths() -> None:
    geo = ic86()
    for s in (1, 36, 78):
        depth = _depths(geo, s)
        assert depth[0] == pytest.approx(1450.0, abs=0.05) and depth[-1] == pytest.approx(2450.0, abs=0.05)
        step = np.diff(depth)
        assert np.all(step > 0), "om 1 is the top DOM, numbers grow downwards"
        np.testing.assert_allclose(step, 1000.0 / 59.0, atol=0.05)  # ~17 m
    assert np.all(geo.efficiency[geo.string <= 78] == 1.0)


def test_ic86_deepcore_in_centre_and_denser() -> None:
    geo = ic86()
    std, dc = _string_xy(geo, STANDARD), _string_xy(geo, DEEPCORE)
    assert np.hypot(dc[:, 0], dc[:, 1]).max() < 150.0
    to_standard = np.hypot(dc[:, None, 0] - std[None, :, 0], dc[:, None, 1] - std[None, :, 1]).min(axis=1)
    assert np.all(to_standard > 40.0)  # between standard strings, not on top of one
    for s in DEEPCORE:
        depth = _depths(geo, s)
        assert np.all(np.diff(depth) > 0)
        deep = depth[depth > 2100.0]
        assert deep.size >= 40 and np.diff(deep).max() < 10.0  # denser than the ~17 m of standard strings
        assert deep.max() < 2460.0
        assert np.all(geo.efficiency[geo.string == s] > 1.0)  # high-quantum-efficiency PMTs


def test_index_of_finds_rows_and_rejects_unknown_doms() -> None:
    geo = ic86()
    rows = np.array([0, 59, 60, 4000, len(geo) - 1])
    np.testing.assert_array_equal(geo.index_of(geo.string[rows], geo.om[rows]), rows)
    with pytest.raises(InputError, match="string 87 om 1"):
        geo.index_of([87], [1])
    with pytest.raises(InputError, match="om 61"):
        geo.index_of([5, 5], [60, 61])


def test_index_of_rejects_om_beyond_999() -> None:
    with pytest.raises(InputError):
        ic86().index_of([1], [1001])


def test_unknown_builtin_named() -> None:
    with pytest.raises(InputError, match=r"'ic40'.*ic86"):
        builtin("ic40")


# --- CSV --------------------------------------------------------------------------------------------------------
def test_csv_round_trip(ic86_csv: Path) -> None:
    geo, back = ic86(), read_csv(ic86_csv)
    assert ic86_csv.read_text(encoding="utf-8").splitlines()[0] == "string,om,x,y,z,efficiency"
    np.testing.assert_array_equal(back.string, geo.string)
    np.testing.assert_array_equal(back.om, geo.om)
    np.testing.assert_allclose(back.pos, geo.pos, atol=0.005)
    np.testing.assert_allclose(back.efficiency, geo.efficiency)
    assert back.keys == geo.keys
    assert back.name == ic86_csv.name


def test_csv_optional_efficiency_and_any_column_order(tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_text(" z , x ,om,string,y\n-10.5,1,2,7,3\n\n20,4,1,7,6\n", encoding="utf-8")
    geo = read_csv(path)
    assert len(geo) == 2
    row = int(geo.index_of([7], [2])[0])
    np.testing.assert_allclose(geo.pos[row], [1.0, 3.0, -10.5])
    np.testing.assert_array_equal(geo.efficiency, [1.0, 1.0])  # default efficiency


def test_csv_written_by_hand_matches_generated(tmp_path: Path) -> None:
    """A table typed in by hand (with a zero efficiency: a dead DOM) reads as expected."""
    path = tmp_path / "tiny.csv"
    path.write_text("string,om,x,y,z,efficiency\n1,1,0,0,100,1.0\n1,2,0,0,83,0\n2,1,125,0,100,1.35\n", encoding="utf-8")
    geo = read_csv(path)
    assert geo.keys == {(1, 1), (1, 2), (2, 1)}
    np.testing.assert_allclose(geo.efficiency[geo.index_of([1, 2], [2, 1])], [0.0, 1.35])
    assert "string,om,x,y,z,efficiency" in to_csv(geo)
    again = tmp_path / "again.csv"
    again.write_text(to_csv(geo), encoding="utf-8")
    np.testing.assert_allclose(read_csv(again).pos, geo.pos)


def test_bad_csv_is_rejected(bad_geometry: tuple[Path, BadInput]) -> None:
    path, case = bad_geometry
    with pytest.raises(InputError) as info:
        read_csv(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for word in case.expect:
        assert word in message, (word, message)


def test_geometry_positions_finite() -> None:
    geo = ic86()
    assert np.all(np.isfinite(geo.pos))
    # The coordinate origin sits near the middle of the instrumented depth range.
    assert abs(float(np.median(geo.pos[:, 2]))) < 50.0
    assert math.isclose(float(geo.pos[:, 2].max() - geo.pos[:, 2].min()), 1000.0, abs_tol=0.1)
