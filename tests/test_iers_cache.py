"""The Earth-orientation cache is used when present and never breaks a conversion."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from skyscan import iers_cache
from skyscan.reco import coords


def test_cache_is_built_then_used_and_results_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSCAN_CACHE_DIR", str(tmp_path))
    when = datetime(2026, 3, 14, 15, 9, 26, tzinfo=timezone.utc)
    assert iers_cache.install() is False  # first call builds it
    files = list(tmp_path.glob("iers-*.pickle"))
    assert len(files) == 1 and files[0].stat().st_size > 100_000
    first = coords.pixel_directions(8, np.arange(10), when)
    assert iers_cache.install() is True
    second = coords.pixel_directions(8, np.arange(10), when)
    np.testing.assert_allclose(first, second, atol=1e-12)


def test_corrupt_cache_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYSCAN_CACHE_DIR", str(tmp_path))
    iers_cache.install()
    for f in tmp_path.glob("iers-*.pickle"):
        f.write_bytes(b"garbage")
    assert iers_cache.install() is False
    zen, _ = coords.pixel_directions(8, np.arange(3), datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert np.all(np.isfinite(zen))
