"""The batch files and result files of a scan: the contract between the scan nodes and everything after them.

A scan node reads ``stage<k>/batch-NNNN.txt`` (one NESTED pixel index per line) and writes
``stage<k>/scan-s<k>-NNNN.h5`` (names: ``skyscan.graph.layout``). The result file holds, per pixel, the datasets
``RESULT_DATASETS`` (``nside`` a scalar; ``ipix`` int64 NESTED; ``llh`` -ln L; ``x``, ``y``, ``z`` the vertex in
metres; ``t`` the vertex time in ns; ``status`` int32, 0 for a converged fit; ``seconds`` the fit's wall time)
plus ``evaluations`` (int32) from the scan node, and provenance attributes ending with ``complete = True``.
It is written atomically, so a file that exists is whole.

This module alone writes and reads them: the scan node, the plan step (earlier stages), the merge and the
campaign report all come here. h5py is imported inside the functions: a node that only plans or reports the
status of a scan does not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from skyscan.atomic import atomic_path, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import ScanLayout
from skyscan.timestamps import utcnow
from skyscan.version import __version__

if TYPE_CHECKING:
    from skyscan.products.moc import StageResult

RESULT_DATASETS = ("nside", "ipix", "llh", "x", "y", "z", "t", "status", "seconds")
#: The datasets a multi-order map is built from (``skyscan.products.moc.StageResult``).
FIT_DATASETS = ("ipix", "llh", "x", "y", "z", "t", "status")
ORDERING = "NESTED"
COORDINATES = "equatorial J2000 (theta = 90 deg - Dec, phi = RA)"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError)  # what h5py raises for a missing or damaged file


@dataclass(frozen=True)
class BatchResult:
    """One batch's fits, one entry per pixel. Read back, the arrays are as stored (see the module docstring)."""

    nside: int
    ipix: npt.NDArray[Any]
    llh: npt.NDArray[Any]
    x: npt.NDArray[Any]
    y: npt.NDArray[Any]
    z: npt.NDArray[Any]
    t: npt.NDArray[Any]
    status: npt.NDArray[Any]
    seconds: npt.NDArray[Any] | None = None  # None: not read (map_from_stages) or not known
    evaluations: npt.NDArray[Any] | None = None  # likelihood evaluations per fit; only scan nodes record them

    def stage_result(self) -> StageResult:
        """The fits as a multi-order-map input (InputError if nside or the pixels are invalid)."""
        from skyscan.products.moc import StageResult

        return StageResult(self.nside, self.ipix, self.llh, self.x, self.y, self.z, self.t, self.status)


@dataclass(frozen=True)
class ResultProvenance:
    """The attributes of a result file besides ``complete``.

    Test fixtures write no ``reconstruction`` (and then no ``ordering``/``coordinates``) and no ``created``.
    """

    run_id: int
    event_id: int
    config_digest: str
    reconstruction: str | None = None
    created: str | None = None  # ISO 8601 UTC

    @staticmethod
    def now() -> str:
        return utcnow()


# ---------------------------------------------------------------------------------------------------------------
# Result files
# ---------------------------------------------------------------------------------------------------------------
def write_result(path: Path, result: BatchResult, provenance: ResultProvenance) -> None:
    """Write a result file atomically (a reader sees no file or the whole file)."""
    import h5py

    if result.seconds is None:
        raise ValueError(f"{path}: a result file records every fit's wall time (seconds)")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("nside", data=np.int64(result.nside))
            f.create_dataset("ipix", data=np.asarray(result.ipix).astype(np.int64))
            for name in ("llh", "x", "y", "z", "t"):
                f.create_dataset(name, data=np.asarray(getattr(result, name)).astype(np.float64))
            f.create_dataset("status", data=np.asarray(result.status).astype(np.int32))
            f.create_dataset("seconds", data=np.asarray(result.seconds).astype(np.float64))
            if result.evaluations is not None:
                f.create_dataset("evaluations", data=np.asarray(result.evaluations).astype(np.int32))
            f.attrs["run_id"] = provenance.run_id
            f.attrs["event_id"] = provenance.event_id
            f.attrs["software_version"] = __version__
            f.attrs["config_digest"] = provenance.config_digest
            if provenance.reconstruction is not None:
                f.attrs["reconstruction"] = provenance.reconstruction
                f.attrs["ordering"] = ORDERING
                f.attrs["coordinates"] = COORDINATES
            if provenance.created is not None:
                f.attrs["created"] = provenance.created
            f.attrs["complete"] = True


def is_complete(path: Path) -> bool:
    """A result file written to the end (written atomically, so existence mostly suffices)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return all(name in f for name in RESULT_DATASETS) and bool(f.attrs.get("complete", False))
    except (OSError, KeyError):
        return False


def read_result(path: Path, run_id: int, event_id: int, label: str | None = None) -> BatchResult:
    """A result file checked whole (datasets, ``complete``, the event's ids, equal lengths) for the merge.

    Anything wrong is an InputError naming the file as ``label`` (default: the path).
    """
    import h5py

    name = label or str(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [d for d in RESULT_DATASETS if d not in f]
            if missing:
                raise InputError(f"{name}: corrupt result file (dataset {missing[0]!r} missing)")
            if "complete" in f.attrs and not bool(f.attrs["complete"]):
                raise InputError(f"{name}: corrupt result file (marked incomplete)")
            for key, want in (("run_id", run_id), ("event_id", event_id)):
                if key in f.attrs and int(f.attrs[key]) != want:
                    raise InputError(f"{name}: result of {key} {int(f.attrs[key])}, but the event has {want}")
            nside_arr = np.asarray(f["nside"][()])
            if nside_arr.size != 1:
                raise InputError(f"{name}: corrupt result file ('nside' must be a scalar)")
            data = {d: np.asarray(f[d][()]) for d in RESULT_DATASETS if d != "nside"}
    except InputError:
        raise
    except _READ_ERRORS as exc:
        raise InputError(f"{name}: corrupt result file ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    lengths = {d: a.size for d, a in data.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"{name}: corrupt result file (datasets of unequal length {lengths})")
    if lengths["ipix"] == 0:
        raise InputError(f"{name}: corrupt result file (no pixels)")
    return BatchResult(nside=int(nside_arr.reshape(-1)[0]), **data)


def read_fits(path: Path) -> BatchResult:
    """The fit datasets of a result file, unchecked (a map rebuilt for a report); InputError if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            values = {k: np.asarray(f[k][()]) for k in FIT_DATASETS}
            nside = int(np.asarray(f["nside"][()]))
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: unreadable scan result ({exc.__class__.__name__})") from None
    return BatchResult(nside=nside, **values)


def read_planned_result(path: Path, nside: int, expected: IntArray) -> tuple[IntArray, FloatArray]:
    """(ipix, llh) of the result of a planned batch (``expected``: its pixels) for the next stage's plan.

    A SkyscanError names the file if it is missing, corrupt, of another nside or of other pixels (stale).
    """
    import h5py

    if not path.is_file():
        raise SkyscanError(f"{path}: missing result file (its scan node has not produced it)")
    try:
        with h5py.File(path, "r") as f:
            file_nside = int(np.asarray(f["nside"][()]))
            ipix = np.asarray(f["ipix"][()], dtype=np.int64).reshape(-1)
            llh = np.asarray(f["llh"][()], dtype=np.float64).reshape(-1)
    except _READ_ERRORS as exc:
        raise SkyscanError(f"{path}: corrupt result file ({exc.__class__.__name__}: {exc})") from None
    if file_nside != nside:
        raise SkyscanError(f"{path}: corrupt result file (nside {file_nside}, expected {nside})")
    if ipix.size != llh.size:
        raise SkyscanError(f"{path}: corrupt result file (ipix and llh differ in length)")
    if not np.array_equal(np.sort(ipix), np.sort(expected)):
        raise SkyscanError(f"{path}: its pixels do not match its batch file (stale result?)")
    return ipix, llh


# ---------------------------------------------------------------------------------------------------------------
# Batch files
# ---------------------------------------------------------------------------------------------------------------
def batch_text(pixels: npt.ArrayLike) -> str:
    """A batch file's text: one NESTED pixel index per line."""
    return "".join(f"{int(p)}\n" for p in np.asarray(pixels).reshape(-1))


def write_batch(path: Path, pixels: npt.ArrayLike) -> bool:
    """Write a batch file atomically unless it already holds these pixels (a re-plan keeps its mtime); True if
    written."""
    text = batch_text(pixels)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def write_stage_batches(outdir: Path, stage: int, batches: Sequence[IntArray]) -> None:
    """Write stage<k>/batch-*.txt (the prepare and plan nodes) and delete stale ones beyond them."""
    layout = ScanLayout(outdir)
    layout.stage_dir(stage).mkdir(parents=True, exist_ok=True)
    wanted = set()
    for b, pixels in enumerate(batches):
        path = layout.batch_file(stage, b)
        wanted.add(path.name)
        write_batch(path, pixels)  # unchanged files are left alone
    for old in layout.list_batch_files(stage):
        if old.name not in wanted:
            old.unlink()


def read_batch(path: Path) -> IntArray:
    """The pixels of a batch file; a SkyscanError names the file if it is unreadable."""
    try:
        words = path.read_text(encoding="utf-8").split()
        return np.asarray([int(w) for w in words], dtype=np.int64)
    except (OSError, ValueError) as exc:
        raise SkyscanError(f"{path}: unreadable batch file ({exc.__class__.__name__})") from None
