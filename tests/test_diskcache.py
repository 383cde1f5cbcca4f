"""The per-user cache of computed tables: same numbers as building them, and never trusted blindly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skyscan.reco import diskcache
from skyscan.reco import photonics as ph

SIGMA = 3.0


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKYSCAN_CACHE_DIR", str(folder))
    return folder


def _no_build(*args: object) -> None:
    raise AssertionError("the table was built, not read from the cache")


def test_a_cached_table_has_the_numbers_of_a_built_one(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = ph.ConvolvedPandel(SIGMA)
    (stored,) = cache.glob("pandel-table-*.npy")
    monkeypatch.setattr(ph.ConvolvedPandel, "_build", _no_build)
    read = ph.ConvolvedPandel(SIGMA)
    np.testing.assert_array_equal(read.logpdf_flat, built.logpdf_flat)
    np.testing.assert_array_equal(read.logsf_flat, built.logsf_flat)
    np.testing.assert_array_equal(read.cells, built.cells)
    assert read.cells.ctypes.data % 64 == 0  # the kernel's cache-line layout survives
    assert stored.stat().st_mode & 0o077 == 0  # private to the user
    assert not list(cache.glob("*.part"))


def test_each_jitter_and_each_version_of_the_code_has_its_own_file() -> None:
    assert ph._table_file(3.0, ph.RHO_PER_NS) != ph._table_file(5.0, ph.RHO_PER_NS)
    assert ph._table_file(3.0, ph.RHO_PER_NS) != ph._table_file(3.0, ph.RHO_PER_NS * 1.01)
    assert diskcache.digest("ab", "c") != diskcache.digest("a", "bc")
    assert diskcache.digest(b"source v1", "3.0") != diskcache.digest(b"source v2", "3.0")


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not an array"),
        lambda p: p.write_bytes(p.read_bytes()[:1000]),  # truncated
        lambda p: np.save(p, np.zeros((2, 10))),  # wrong shape
        lambda p: np.save(p, np.full((2, np.load(p).shape[1]), np.nan)),  # not finite
    ],
    ids=["garbage", "truncated", "shape", "nan"],
)
def test_a_damaged_cache_file_is_rebuilt_not_used(cache: Path, damage: object) -> None:
    good = ph.ConvolvedPandel(SIGMA)
    (stored,) = cache.glob("pandel-table-*.npy")
    damage(stored)  # type: ignore[operator]
    again = ph.ConvolvedPandel(SIGMA)
    np.testing.assert_array_equal(again.logpdf_flat, good.logpdf_flat)
    np.testing.assert_array_equal(again.logsf_flat, good.logsf_flat)
    assert diskcache.load_array(stored.name, (2, good.logpdf_flat.size)) is not None  # repaired


def test_an_unusable_cache_folder_only_means_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("SKYSCAN_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    table = ph.ConvolvedPandel(SIGMA)
    assert np.all(np.isfinite(table.logpdf_flat))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to hand a file to another user")
def test_a_file_of_another_user_is_not_read(cache: Path) -> None:
    ph.ConvolvedPandel(SIGMA)
    (stored,) = cache.glob("pandel-table-*.npy")
    size = np.load(stored).shape
    os.chown(stored, 12345, -1)
    assert diskcache.load_array(stored.name, size) is None


def test_a_scan_process_with_a_warm_cache_does_not_import_scipy_special(cache: Path) -> None:
    code = (
        "import sys; import skyscan.reco.llh as l; l.preload_tables(); "
        "print('scipy.special' in sys.modules)"
    )
    env = dict(os.environ, SKYSCAN_CACHE_DIR=str(cache))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "True"  # built: the Pandel functions need it
    assert second.stdout.strip() == "False"  # read: ~0.25 s of a fresh scan node saved
