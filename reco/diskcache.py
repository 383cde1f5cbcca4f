"""A per-user folder for arrays that cost a fresh process more to compute than to read.

The jitter-convolved Pandel table (:mod:`skyscan.reco.photonics`) takes a fresh scan node about a quarter
of a second to build, most of it importing ``scipy.special``; read from this folder it takes milliseconds.
Every file is named by a digest of everything that determines its content (the parameters, the source of
the code that computes it, the versions of the libraries it calls), so changing any of them makes a new
file instead of reusing a stale one. Files are written under a temporary name and renamed, so a reader
never sees half a file; only files owned by this user are read, and they are read without pickle. Anything
wrong with the folder (missing, unwritable, full, a damaged file) only means the array is computed as if
there were no cache.

Location: ``$SKYSCAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/skyscan``, else ``~/.cache/skyscan`` (the same
folder holds the pipeline's Earth-orientation cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def cache_dir() -> Path:
    """The per-user cache folder (it need not exist yet)."""
    explicit = os.environ.get("SKYSCAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "skyscan"


def digest(*parts: str | bytes) -> str:
    """A short content digest of ``parts`` for a file name (each part delimited, so ("ab", "c") != ("a", "bc"))."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:24]


def load_array(name: str, shape: tuple[int, ...]) -> FloatArray | None:
    """The cached float64 array ``name`` if it exists, is this user's, has ``shape`` and is all finite; else None."""
    path = cache_dir() / name
    try:
        if path.stat().st_uid != os.getuid():
            return None
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.dtype != np.float64 or array.shape != shape or not np.all(np.isfinite(array)):
        return None
    return np.ascontiguousarray(array)


def save_array(name: str, array: FloatArray) -> None:
    """Store ``array`` as ``name`` (atomically); any failure leaves the cache as it was and is not an error."""
    folder = cache_dir()
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.asarray(array, dtype=np.float64), allow_pickle=False)
        os.replace(tmp, folder / name)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
