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

import yaml

from skyscan.errors import InputError

__all__ = ["BACKENDS", "KNOWN_KEYS", "WATCH_SCHEMA", "WatchConfig", "config_from_mapping", "load_watch_config"]

BACKENDS = ("local", "condor")


def _default_scan_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "run")


def _default_submit_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "skyscan.cli", "submit")


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
    scan_command: tuple[str, ...] = field(default_factory=_default_scan_command)
    submit_command: tuple[str, ...] = field(default_factory=_default_submit_command)
    submit_timeout_seconds: float = 300.0
    notify_command: tuple[str, ...] | None = None
    notify_timeout_seconds: float = 60.0
    notify_max_attempts: int = 10


_PATH_KEYS = ("archive", "quarantine", "outbox", "scans", "database", "lock_file", "log_file")
_PATH_DEFAULTS = {
    "archive": "archive", "quarantine": "quarantine", "outbox": "outbox", "scans": "scans",
    "database": "catalog.sqlite", "lock_file": "watch.lock", "log_file": "watch.log",
}
_INT_KEYS = {"log_max_bytes": 0, "log_backups": 0, "max_running": 1, "max_attempts": 1, "notify_max_attempts": 1}
_FLOAT_KEYS = {"settle_seconds": 0.0, "poll_seconds": 0.1, "retry_delay_seconds": 0.0, "stall_seconds": 1.0,
               "kill_grace_seconds": 0.0, "submit_timeout_seconds": 1.0, "notify_timeout_seconds": 1.0}
_COMMAND_KEYS = ("scan_command", "submit_command", "notify_command")
KNOWN_KEYS = ("schema", "inbox", "state_dir", *_PATH_KEYS, *_INT_KEYS, *_FLOAT_KEYS, *_COMMAND_KEYS,
              "backend", "site", "scan_config", "jobs")
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
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise InputError(f"{source}: {key}: expected an integer >= {minimum}, got {v!r}")
            values[key] = v
    for key, fminimum in _FLOAT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= fminimum:
                raise InputError(f"{source}: {key}: expected a number >= {fminimum:g}, got {v!r}")
            values[key] = float(v)
    backend = raw.get("backend", "local")
    if backend not in BACKENDS:
        raise InputError(f"{source}: backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    values["backend"] = backend
    site = raw.get("site")
    if site is not None and (not isinstance(site, str) or not site):
        raise InputError(f"{source}: site: expected a site name or profile path")
    values["site"] = site
    if raw.get("scan_config") is not None:
        values["scan_config"] = path("scan_config", None)
        if not values["scan_config"].is_file():
            raise InputError(f"{source}: scan_config: {values['scan_config']}: no such file")
    jobs = raw.get("jobs")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise InputError(f"{source}: jobs: expected a positive integer, got {jobs!r}")
    values["jobs"] = jobs
    for key in _COMMAND_KEYS:
        if raw.get(key) is not None:
            values[key] = _command(raw[key], f"{source}: {key}")
    return WatchConfig(**values)


def load_watch_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read watch.yaml; any problem is an :class:`InputError` naming it (the CLI exits 2)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such watch configuration") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the watch configuration ({exc.__class__.__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{p}: invalid YAML{where}") from None
    return config_from_mapping(raw, p.absolute().parent, str(p))
