"""A per-user cache of astropy's Earth-orientation table.

Parsing the bundled IERS tables costs every process over a second, more than a scan node spends
fitting a dozen pixels. The parsed table is pickled once into the user's cache folder (keyed by
the astropy-iers-data version) and later processes load it in milliseconds. Any problem with
the cache silently falls back to astropy's own loading; nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

from astropy.utils import iers

from skyscan.atomic import atomic_path


def cache_dir() -> Path:
    """The per-user cache folder, shared with the physics' cached tables (one rule, in skyscan.reco.diskcache)."""
    from skyscan.reco.diskcache import cache_dir as folder

    return folder()


def _cache_file() -> Path:
    try:
        import astropy_iers_data

        version = str(astropy_iers_data.__version__)
    except (ImportError, AttributeError):
        version = "unknown"
    return cache_dir() / f"iers-{version}.pickle"


def install() -> bool:
    """Make astropy use the cached table; build the cache if missing. True if the cache was used."""
    iers.conf.auto_download = False
    path = _cache_file()
    try:
        if path.is_file() and path.stat().st_uid == os.getuid():
            with path.open("rb") as fh:
                table = pickle.load(fh)  # our own file in the user's private cache folder
            if isinstance(table, iers.IERS):
                iers.earth_orientation_table.set(table)
                return True
    except Exception:
        pass
    with contextlib.suppress(Exception):
        table = iers.earth_orientation_table.get()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            pickle.dump(table, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return False
