"""The watcher's configuration: ``watch.yaml`` (schema ``skyscan-watch/1``) read into a checked :class:`WatchConfig`.

Every setting is documented in ``config/watch.example.yaml`` (a test checks that each known key is there).
A bad file is an :class:`~skyscan.errors.InputError` naming it, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.errors import InputError
from skyscan.reco import untrusted

__all__ = [
    "BACKENDS",
    "CALIBRATION_KEYS",
    "KNOWN_KEYS",
    "SERVICE_KEYS",
    "WATCH_BACKENDS",
    "WATCH_SCHEMA",
    "CalibrationSettings",
    "WatchConfig",
    "calibration_from_mapping",
    "config_from_mapping",
    "load_watch_config",
]

BACKENDS = ("local", "condor")  # the backends that run a scan's graph on this host (the scan service's too)
WATCH_BACKENDS = (*BACKENDS, "service")  # the watcher may also hand its scans to a scan service


def default_scan_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "run")


def default_submit_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "submit")


def default_calibrate_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "calibrate")


def default_merge_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "merge")


@dataclass(frozen=True)
class CalibrationSettings:
    """The ``calibration:`` block of a watch.yaml or serve.yaml: which done scans are calibrated, and how.

    A done scan of one of ``streams`` is calibrated once by resimulation (``skyscan calibrate``, N pseudo-events
    with the simulator's systematics varied) and then re-merged with its calibration.json; the watcher
    re-publishes the products as a calibrated re-issue (docs/operations.md, "Calibration after a scan").
    """

    streams: tuple[str, ...]  # the alert streams (the event's ``stream``) whose done scans are calibrated
    n: int = 100  # pseudo-events per calibration (``--n``)
    systematics: str = "default"  # none | default | an absolute path to a systematics YAML file
    batch_size: int | None = None  # pseudo-events per graph node (None: skyscan calibrate's default)
    disc_deg: float | None = None  # radius of the reconstructed disc in degrees (None: from the 99% region)
    max_running: int = 1  # calibrations running at once (each is as heavy as several scans)
    max_attempts: int = 2  # tries of a calibration (a retry resumes in the same CALDIR) before it is failed
    command: tuple[str, ...] = field(default_factory=default_calibrate_command)  # local: SCANDIR -o CALDIR ...
    merge_command: tuple[str, ...] = field(default_factory=default_merge_command)  # SCANDIR --containment FILE

    def wants(self, stream: str | None) -> bool:
        """True when a done scan of an alert of ``stream`` is to be calibrated."""
        return stream is not None and stream in self.streams


@dataclass(frozen=True)
class WatchConfig:
    """A resolved watch.yaml: absolute paths, checked values (see config/watch.example.yaml)."""

    inbox: Path
    state_dir: Path
    archive: Path
    quarantine: Path
    outbox: Path
    scans: Path
    database: Path
    lock_file: Path
    log_file: Path
    log_max_bytes: int = 10_000_000
    log_backups: int = 5
    settle_seconds: float = 5.0
    poll_seconds: float = 60.0
    backend: str = "local"
    site: str | None = None
    scan_config: Path | None = None
    jobs: int | None = None
    max_running: int = 2
    max_attempts: int = 3
    retry_delay_seconds: float = 300.0
    stall_seconds: float = 6 * 3600.0
    kill_grace_seconds: float = 10.0
    scan_command: tuple[str, ...] = field(default_factory=default_scan_command)
    submit_command: tuple[str, ...] = field(default_factory=default_submit_command)
    submit_timeout_seconds: float = 300.0
    notify_command: tuple[str, ...] | None = None
    notify_timeout_seconds: float = 60.0
    notify_max_attempts: int = 10
    service_url: str | None = None  # backend service: the scan service's base URL
    outbox_base_url: str | None = None  # where the outbox is served (http/https): notices get healpix_url
    service_token_file: Path | None = None  # backend service: a file holding a submit token
    calibration: CalibrationSettings | None = None  # automatic calibration of done scans (None: off)


_PATH_KEYS = ("archive", "quarantine", "outbox", "scans", "database", "lock_file", "log_file")
_PATH_DEFAULTS = {
    "archive": "archive", "quarantine": "quarantine", "outbox": "outbox", "scans": "scans",
    "database": "catalog.sqlite", "lock_file": "watch.lock", "log_file": "watch.log",
}
_INT_KEYS = {"log_max_bytes": 0, "log_backups": 0, "max_running": 1, "max_attempts": 1, "notify_max_attempts": 1}
_FLOAT_KEYS = {"settle_seconds": 0.0, "poll_seconds": 0.1, "retry_delay_seconds": 0.0, "stall_seconds": 1.0,
               "kill_grace_seconds": 0.0, "submit_timeout_seconds": 1.0, "notify_timeout_seconds": 1.0}
_INT_MAX = 2**31 - 1  # counts and byte sizes; larger is a typo (and overflows sqlite/time arithmetic)
_SECONDS_MAX = 366 * 86400.0  # a year: longer delays and timeouts are typos, and overflow time arithmetic
_COMMAND_KEYS = ("scan_command", "submit_command", "notify_command")
SERVICE_KEYS = ("service_url", "service_token_file")
KNOWN_KEYS = ("schema", "inbox", "state_dir", *_PATH_KEYS, *_INT_KEYS, *_FLOAT_KEYS, *_COMMAND_KEYS,
              "backend", "site", "scan_config", "jobs", "outbox_base_url", *SERVICE_KEYS, "calibration")
CALIBRATION_KEYS = ("streams", "n", "systematics", "batch_size", "disc_deg", "max_running", "max_attempts",
                    "command", "merge_command")
_CAL_INTS = {"n": (2, 1_000_000), "batch_size": (1, 100_000), "max_running": (1, 10_000), "max_attempts": (1, 100)}
WATCH_SCHEMA = "skyscan-watch/1"


def _command(value: Any, key: str) -> tuple[str, ...]:
    """A command as a YAML list or a shell-like string; ``{python}`` stands for the current interpreter."""
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise InputError(f"{key}: cannot split the command: {exc}") from None
    elif isinstance(value, list) and all(isinstance(w, (str, int, float)) for w in value):
        words = [str(w) for w in value]
    else:
        raise InputError(f"{key}: expected a command (a list of words or a string)")
    if not words or not words[0]:
        raise InputError(f"{key}: empty command")
    return tuple(w.replace("{python}", sys.executable) for w in words)


def calibration_from_mapping(raw: Any, base_dir: Path, source: str) -> CalibrationSettings | None:
    """Check a ``calibration:`` block (shared by watch.yaml and serve.yaml); None when it is absent or null.

    ``streams`` is required (a list of stream names, or one name); a relative ``systematics`` file is taken from
    ``base_dir``. Every problem is one InputError naming ``source: calibration.KEY``.
    """
    from skyscan.reco.event import STREAM_PATTERN

    if raw is None:
        return None
    where = f"{source}: calibration"
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping (streams, n, systematics, ...), got {untrusted.shown(raw)}")
    unknown = sorted(str(k) for k in raw if k not in CALIBRATION_KEYS)
    if unknown:
        raise InputError(f"{where}.{unknown[0]}: unknown setting (one of {', '.join(CALIBRATION_KEYS)})")
    streams = raw.get("streams")
    if isinstance(streams, str):
        streams = [streams]
    if (not isinstance(streams, list) or not streams
            or not all(isinstance(x, str) and STREAM_PATTERN.fullmatch(x) for x in streams)):
        raise InputError(f"{where}.streams: expected a list of stream names (e.g. [gold, bronze]), "
                         f"got {untrusted.shown(streams)}")
    values: dict[str, Any] = {"streams": tuple(dict.fromkeys(streams))}
    for key, (low, high) in _CAL_INTS.items():
        if raw.get(key) is not None:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise InputError(f"{where}.{key}: expected an integer from {low} to {high}, got {untrusted.shown(v)}")
            values[key] = v
    if raw.get("disc_deg") is not None:
        v = raw["disc_deg"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 180.0:
            raise InputError(f"{where}.disc_deg: expected degrees in (0, 180], got {untrusted.shown(v)}")
        values["disc_deg"] = float(v)
    spec = raw.get("systematics", "default")
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{where}.systematics: expected none, default or a YAML file, got {untrusted.shown(spec)}")
    if spec.strip() in ("none", "default"):
        values["systematics"] = spec.strip()
    else:
        file = Path(os.path.expanduser(spec.strip()))
        file = (file if file.is_absolute() else base_dir / file).absolute()
        if not file.is_file():
            raise InputError(f"{where}.systematics: {file}: no such file (none, default or a YAML file)")
        values["systematics"] = str(file)
    for key in ("command", "merge_command"):
        if raw.get(key) is not None:
            values[key] = _command(raw[key], f"{where}.{key}")
    return CalibrationSettings(**values)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_inbox_apart(values: dict[str, Any], source: str) -> None:
    """The inbox must be a folder of its own: every file in it is taken and moved away, so ``inbox: .`` would
    quarantine the catalog database, its lock and the config itself.

    It may not be or contain the state directory, and may not be, contain or lie inside the archive, quarantine,
    outbox or scans folders, nor contain the database, lock or log file. A sub-folder of the state directory
    (``state_dir/inbox``, the documented layout) is allowed: the watcher writes nothing there.
    """
    inbox = Path(os.path.realpath(values["inbox"]))
    if inbox.exists() and not inbox.is_dir():
        raise InputError(f"{source}: inbox: {values['inbox']} is not a folder")
    for key in ("state_dir", "archive", "quarantine", "outbox", "scans"):
        other = Path(os.path.realpath(values[key]))
        if _inside(other, inbox) or (key != "state_dir" and _inside(inbox, other)):
            relation = "is" if inbox == other else ("lies inside" if _inside(inbox, other) else "contains")
            raise InputError(f"{source}: inbox: {values['inbox']} {relation} the {key.replace('_', ' ')} {values[key]}; "
                             "the inbox must be a folder of its own")
    for key in ("database", "lock_file", "log_file"):
        other = Path(os.path.realpath(values[key]))
        if _inside(other, inbox):
            raise InputError(f"{source}: inbox: {values['inbox']} contains the {key.replace('_', ' ')} {values[key]}")


def config_from_mapping(raw: Any, base_dir: Path, source: str = "watch config") -> WatchConfig:
    """Check a decoded watch.yaml; relative paths are taken from ``base_dir`` (the file's folder)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of settings")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        raise InputError(f"{source}: {unknown[0]}: unknown setting (the settings are listed in watch.example.yaml)")
    if raw.get("schema", WATCH_SCHEMA) != WATCH_SCHEMA:
        raise InputError(f"{source}: schema: expected {WATCH_SCHEMA!r}, got {raw.get('schema')!r}")

    def path(key: str, default: Path | str | None) -> Path | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if not isinstance(value, (str, Path)) or not str(value).strip():
            raise InputError(f"{source}: {key}: expected a path")
        p = Path(os.path.expanduser(str(value)))
        return (p if p.is_absolute() else base_dir / p).absolute()

    if raw.get("inbox") is None:
        raise InputError(f"{source}: inbox: missing (the folder upstream systems drop event files into)")
    values: dict[str, Any] = {"inbox": path("inbox", None)}
    state_dir = path("state_dir", ".")
    assert state_dir is not None
    values["state_dir"] = state_dir
    for key in _PATH_KEYS:
        values[key] = path(key, None) if raw.get(key) is not None else state_dir / _PATH_DEFAULTS[key]
    for key, minimum in _INT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= _INT_MAX:
                raise InputError(f"{source}: {key}: expected an integer >= {minimum} (at most {_INT_MAX}), "
                                 f"got {untrusted.shown(v)}")
            values[key] = v
    for key, fminimum in _FLOAT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not fminimum <= v <= _SECONDS_MAX:
                raise InputError(f"{source}: {key}: expected a number >= {fminimum:g} (at most {_SECONDS_MAX:g}), "
                                 f"got {untrusted.shown(v)}")
            values[key] = float(v)
    backend = raw.get("backend", "local")
    if backend not in WATCH_BACKENDS:
        raise InputError(f"{source}: backend: expected one of {', '.join(WATCH_BACKENDS)}, got {backend!r}")
    values["backend"] = backend
    url = raw.get("service_url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))
                            or any(c.isspace() for c in url)):
        raise InputError(f"{source}: service_url: expected an http:// or https:// URL, got {untrusted.shown(url)}")
    values["service_url"] = url
    base = raw.get("outbox_base_url")
    if base is not None:
        from skyscan.products.gcn import healpix_url

        if not isinstance(base, str):
            raise InputError(f"{source}: outbox_base_url: expected an http:// or https:// URL, got {untrusted.shown(base)}")
        try:
            healpix_url(base, "alert")  # the check publish_outbox makes, now rather than after a scan
        except InputError as exc:
            raise InputError(f"{source}: outbox_base_url: {exc}") from None
        values["outbox_base_url"] = base
    if raw.get("service_token_file") is not None:
        values["service_token_file"] = path("service_token_file", None)
    if backend == "service":
        if url is None:
            raise InputError(f"{source}: service_url: missing (backend service hands scans to a scan service)")
        if values.get("service_token_file") is None or not values["service_token_file"].is_file():
            raise InputError(f"{source}: service_token_file: "
                             + ("missing" if values.get("service_token_file") is None
                                else f"{values['service_token_file']}: no such file")
                             + " (a file holding a submit token of the service)")
    site = raw.get("site")
    if site is not None and (not isinstance(site, str) or not site):
        raise InputError(f"{source}: site: expected a site name or profile path")
    values["site"] = site
    if raw.get("scan_config") is not None:
        values["scan_config"] = path("scan_config", None)
        if not values["scan_config"].is_file():
            raise InputError(f"{source}: scan_config: {values['scan_config']}: no such file")
    _check_inbox_apart(values, source)
    jobs = raw.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"{source}: jobs: expected a positive integer, got {jobs!r}")
    values["jobs"] = jobs
    for key in _COMMAND_KEYS:
        if raw.get(key) is not None:
            values[key] = _command(raw[key], f"{source}: {key}")
    values["calibration"] = calibration_from_mapping(raw.get("calibration"), base_dir, source)
    if values["calibration"] is not None and backend == "service":
        raise InputError(f"{source}: calibration: not with backend service (the scan's results stay at the "
                         "service: give the calibration: block in the service's serve.yaml)")
    return WatchConfig(**values)


def load_watch_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read watch.yaml; any problem is an :class:`InputError` naming it (the CLI exits 2)."""
    from skyscan.settings.yamlio import parse_yaml_text

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such watch configuration")
    text = untrusted.read_text(p, "watch configuration")
    raw = parse_yaml_text(text, str(p))
    with untrusted.guarded(str(p)):
        return config_from_mapping(raw, p.absolute().parent, str(p))
