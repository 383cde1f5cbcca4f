"""The batch files and result files of a scan: the contract between the scan nodes and everything after them.

A scan node reads ``stage<k>/batch-NNNN.txt`` (one NESTED pixel index per line) and writes
``stage<k>/scan-s<k>-NNNN.h5`` (names: ``skyscan.graph.layout``). The result file holds, per pixel, the datasets
``RESULT_DATASETS`` (``nside`` a scalar; ``ipix`` int64 NESTED; ``llh`` -ln L; ``x``, ``y``, ``z`` the vertex in
metres; ``t`` the vertex time in ns; ``status`` int32, 0 for a converged fit; ``seconds`` the fit's wall time)
plus ``evaluations`` (int32) from the scan node, and provenance attributes ending with ``complete = True``.
It is written atomically, so a file that exists was whole when written.

Verified results: the attribute ``sha256`` is a checksum of the data and of the node's inputs (``run_id``,
``event_id``, ``config_digest``, ``event_digest`` of the scan's event.json, ``pixels_digest`` of its pixel list;
see :func:`result_checksum`), so a file damaged later (truncated, overwritten in place, ``complete`` unset) is
recognised: the merge refuses it naming it, the plan step too, and the local executor runs its node again on
resume (:func:`verify_result`, the check the graph declares for every scan node's output,
``skyscan.graph.layout.RESULT_CHECK``).

This module alone writes and reads them: the scan node, the plan step (earlier stages), the merge and the
campaign report all come here. h5py is imported inside the functions: a node that only plans or reports the
status of a scan does not pay for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from skyscan.atomic import atomic_path, remove_stale_parts, write_text
from skyscan.errors import InputError, SkyscanError
from skyscan.graph.layout import ScanLayout
from skyscan.timestamps import utcnow
from skyscan.version import __version__

if TYPE_CHECKING:
    from skyscan.products.moc import StageResult

RESULT_DATASETS = ("nside", "ipix", "llh", "x", "y", "z", "t", "status", "seconds")
#: Datasets a result file may hold besides RESULT_DATASETS; the checksum covers them when present.
OPTIONAL_DATASETS = ("evaluations",)
#: The input attributes the checksum covers when present (the node's inputs).
CHECKED_ATTRS = ("run_id", "event_id", "config_digest", "event_digest", "pixels_digest")
CHECKSUM_ATTR = "sha256"
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
    #: "sha256:<hex>" of the scan's event.json; None: found beside the result (``event_digest_for``)
    event_digest: str | None = None

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
    data: dict[str, npt.NDArray[Any]] = {"nside": np.asarray(np.int64(result.nside))}
    data["ipix"] = np.asarray(result.ipix).astype(np.int64)
    for name in ("llh", "x", "y", "z", "t"):
        data[name] = np.asarray(getattr(result, name)).astype(np.float64)
    data["status"] = np.asarray(result.status).astype(np.int32)
    data["seconds"] = np.asarray(result.seconds).astype(np.float64)
    if result.evaluations is not None:
        data["evaluations"] = np.asarray(result.evaluations).astype(np.int32)
    inputs: dict[str, int | str] = {
        "run_id": int(provenance.run_id),
        "event_id": int(provenance.event_id),
        "config_digest": str(provenance.config_digest),
        "pixels_digest": pixels_digest(data["ipix"]),
    }
    event_digest = provenance.event_digest or event_digest_for(path)
    if event_digest is not None:
        inputs["event_digest"] = event_digest
    remove_stale_parts(path)  # what a killed earlier attempt of this node left behind
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for name, array in data.items():
                f.create_dataset(name, data=array)
            for key, value in inputs.items():
                f.attrs[key] = value
            f.attrs["software_version"] = __version__
            if provenance.reconstruction is not None:
                f.attrs["reconstruction"] = provenance.reconstruction
                f.attrs["ordering"] = ORDERING
                f.attrs["coordinates"] = COORDINATES
            if provenance.created is not None:
                f.attrs["created"] = provenance.created
            f.attrs[CHECKSUM_ATTR] = result_checksum(data, inputs)
            f.attrs["complete"] = True


def pixels_digest(ipix: npt.ArrayLike) -> str:
    """"sha256:<hex>" of a pixel list as its batch file spells it, sorted (the scan node's pixel input)."""
    text = batch_text(np.sort(np.asarray(ipix, dtype=np.int64).reshape(-1)))
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def event_digest_for(path: Path) -> str | None:
    """"sha256:<hex>" of the event.json of the scan directory ``path`` (``stage<k>/<result>``) lies in, if any."""
    layout = ScanLayout(path.parent.parent)
    if not path.parent.name.startswith("stage"):
        return None
    try:
        return "sha256:" + hashlib.sha256(layout.event.read_bytes()).hexdigest()
    except OSError:
        return None


def result_checksum(data: Mapping[str, npt.NDArray[Any]], inputs: Mapping[str, Any]) -> str:
    """"sha256:<hex>" over every dataset (name, dtype, shape, little-endian bytes, in name order) and the input
    attributes (``CHECKED_ATTRS`` present, as sorted JSON): what a verified reader recomputes."""
    h = hashlib.sha256()
    for name in sorted(data):
        arr = np.ascontiguousarray(data[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    attrs = {k: (int(v) if isinstance(v, (int, np.integer)) else str(v)) for k, v in inputs.items()}
    h.update(json.dumps(attrs, sort_keys=True).encode())
    return "sha256:" + h.hexdigest()


def _attr_value(value: Any) -> int | str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (int, np.integer)):
        return int(value)
    return str(value)


def _verify_open(f: Any, require_checksum: bool = True) -> str | None:
    """Why an open result file is not whole and verified (None: it is); reads every dataset."""
    missing = [d for d in RESULT_DATASETS if d not in f]
    if missing:
        return f"dataset {missing[0]!r} missing"
    if not bool(f.attrs.get("complete", False)):
        return "marked incomplete" if "complete" in f.attrs else "not marked complete"
    stored = f.attrs.get(CHECKSUM_ATTR)
    if stored is None:
        return "no checksum (written by an earlier skyscan; scan it again)" if require_checksum else None
    data = {d: np.asarray(f[d][()]) for d in (*RESULT_DATASETS, *OPTIONAL_DATASETS) if d in f}
    inputs = {k: _attr_value(f.attrs[k]) for k in CHECKED_ATTRS if k in f.attrs}
    if _attr_value(stored) != result_checksum(data, inputs):
        return "checksum mismatch: its data or inputs changed after it was written"
    return None


def verify_result(path: Path) -> str | None:
    """None if ``path`` is a whole result file whose checksum matches, else the reason (no exception).

    The check the graph declares for a scan node's output (``layout.RESULT_CHECK``): the local executor runs a node
    marked done again when this fails, ``skyscan status`` does not count it done.
    """
    import h5py

    if not path.is_file():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            return _verify_open(f)
    except _READ_ERRORS as exc:
        return f"unreadable ({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]})"


def is_complete(path: Path) -> bool:
    """A result file written to the end whose checksum matches (a damaged one is redone by its scan node)."""
    return verify_result(path) is None


def read_result(path: Path, run_id: int, event_id: int, label: str | None = None) -> BatchResult:
    """A result file checked whole (datasets, ``complete``, the event's ids, its checksum, equal lengths) for the
    merge.

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
            problem = _verify_open(f)
            if problem is not None:
                raise InputError(f"{name}: result file fails verification ({problem})")
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

    A SkyscanError names the file if it is missing, corrupt, fails verification (a file that records a checksum
    or ``complete``, as every scan node's does), of another nside or of other pixels (stale).
    """
    import h5py

    if not path.is_file():
        raise SkyscanError(f"{path}: missing result file (its scan node has not produced it)")
    try:
        with h5py.File(path, "r") as f:
            file_nside = int(np.asarray(f["nside"][()]))
            ipix = np.asarray(f["ipix"][()], dtype=np.int64).reshape(-1)
            llh = np.asarray(f["llh"][()], dtype=np.float64).reshape(-1)
            if CHECKSUM_ATTR in f.attrs or "complete" in f.attrs:  # files of the scan node; fixtures may be bare
                problem = _verify_open(f)
                if problem is not None:
                    raise SkyscanError(f"{path}: result file fails verification ({problem})")
    except SkyscanError:
        raise
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
