"""The scan service's configuration: ``serve.yaml`` (schema ``skyscan-serve/1``) read into a checked :class:`ServeConfig`.

The minimal file is ``{schema: skyscan-serve/1, database: PATH, data_dir: PATH}``; every other key has a default.
Every key is documented in docs/service.md (a test checks that each known key is there). A bad file is an
:class:`~skyscan.errors.InputError` naming it and the key, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.errors import InputError
from skyscan.ops.scheduler import SchedulerSettings
from skyscan.ops.watchconfig import (
    BACKENDS,
    CalibrationSettings,
    calibration_from_mapping,
    default_scan_command,
    default_submit_command,
)
from skyscan.reco import untrusted

__all__ = ["KNOWN_KEYS", "SERVE_SCHEMA", "ServeConfig", "config_from_mapping", "load_serve_config"]

SERVE_SCHEMA = "skyscan-serve/1"


@dataclass(frozen=True)
class ServeConfig:
    """A resolved serve.yaml: absolute paths and checked values (docs/service.md lists every key)."""

    database: Path  # the catalog database (SQLite), shared with `skyscan catalog`
    data_dir: Path  # the service's files: archive/ (posted events), configs/ (resolved configurations), scans/
    host: str = "127.0.0.1"
    port: int = 8765
    backend: str = "local"
    site: str | None = None
    scan_config: Path | None = None  # the base scan configuration every posted partial one is merged over
    jobs: int | None = None
    max_running: int = 2
    max_attempts: int = 3
    retry_delay_seconds: float = 60.0
    stall_seconds: float = 6 * 3600.0
    kill_grace_seconds: float = 5.0
    poll_seconds: float = 2.0  # the scheduler's pass interval
    submit_timeout_seconds: float = 300.0
    scan_command: tuple[str, ...] = field(default_factory=default_scan_command)
    submit_command: tuple[str, ...] = field(default_factory=default_submit_command)
    anonymous_read: bool = False
    max_event_bytes: int = 8 * 1024 * 1024  # a request body larger than this answers 413
    max_page_size: int = 500  # the largest `limit` of a list (larger answers 422)
    default_page_size: int = 50
    calibration: CalibrationSettings | None = None  # automatic calibration of done scans (docs/service.md)
    source: str = "serve config"  # where the configuration came from (for messages)

    @property
    def archive(self) -> Path:
        return self.data_dir / "archive"

    @property
    def configs(self) -> Path:
        return self.data_dir / "configs"

    @property
    def scans(self) -> Path:
        return self.data_dir / "scans"

    @property
    def lock_file(self) -> Path:
        return self.data_dir / "serve.lock"

    def scheduler_settings(self) -> SchedulerSettings:
        """The scheduler's part (the service publishes nothing to an outbox: products are served from OUTDIR)."""
        return SchedulerSettings(
            scans=self.scans, backend=self.backend, site=self.site, scan_config=self.scan_config, jobs=self.jobs,
            max_running=self.max_running, max_attempts=self.max_attempts,
            retry_delay_seconds=self.retry_delay_seconds, stall_seconds=self.stall_seconds,
            kill_grace_seconds=self.kill_grace_seconds, scan_command=self.scan_command,
            submit_command=self.submit_command, submit_timeout_seconds=self.submit_timeout_seconds,
            calibration=self.calibration,
        )


_INT_KEYS = {"port": (0, 65535), "max_running": (1, 10_000), "max_attempts": (1, 1000),
             "max_event_bytes": (1024, 1 << 30), "max_page_size": (1, 100_000), "default_page_size": (1, 100_000),
             "jobs": (1, 10_000)}
_SECONDS_MAX = 366 * 86400.0
_FLOAT_KEYS = {"retry_delay_seconds": 0.0, "stall_seconds": 1.0, "kill_grace_seconds": 0.0, "poll_seconds": 0.05,
               "submit_timeout_seconds": 1.0}
_COMMAND_KEYS = ("scan_command", "submit_command")
KNOWN_KEYS = ("schema", "database", "data_dir", "host", "backend", "site", "scan_config", "anonymous_read",
              *_INT_KEYS, *_FLOAT_KEYS, *_COMMAND_KEYS, "calibration")


def _command(value: Any, key: str) -> tuple[str, ...]:
    """A command as a YAML list of words; ``{python}`` stands for the current interpreter."""
    import shlex

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


def check_host(value: Any, where: str) -> str:
    """A bind address: an IP address or a host name (letters, digits, dots and dashes)."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected an IP address or host name, got {untrusted.shown(value)}")
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if len(value) > 253 or not all(part and part.replace("-", "").isalnum() for part in value.split(".")):
        raise InputError(f"{where}: not an IP address or host name: {untrusted.shown(value)}")
    return value


def config_from_mapping(raw: Any, base_dir: Path, source: str = "serve config") -> ServeConfig:
    """Check a decoded serve.yaml; relative paths are taken from ``base_dir`` (the file's folder)."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of settings")
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        raise InputError(f"{source}: {unknown[0]}: unknown setting (the settings are listed in docs/service.md)")
    if raw.get("schema") != SERVE_SCHEMA:
        raise InputError(f"{source}: schema: expected {SERVE_SCHEMA!r}, got {untrusted.shown(raw.get('schema'))}")

    def path(key: str) -> Path:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"{source}: {key}: expected a path" + (" (missing)" if value is None else ""))
        p = Path(os.path.expanduser(value))
        return (p if p.is_absolute() else base_dir / p).absolute()

    values: dict[str, Any] = {"database": path("database"), "data_dir": path("data_dir"), "source": source}
    if values["data_dir"].exists() and not values["data_dir"].is_dir():
        raise InputError(f"{source}: data_dir: {values['data_dir']} is not a folder")
    if values["database"].is_dir():
        raise InputError(f"{source}: database: {values['database']} is a folder, not a database file")
    if "host" in raw:
        values["host"] = check_host(raw["host"], f"{source}: host")
    for key, (low, high) in _INT_KEYS.items():
        if key in raw and not (key == "jobs" and raw[key] is None):
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise InputError(f"{source}: {key}: expected an integer from {low} to {high}, "
                                 f"got {untrusted.shown(v)}")
            values[key] = v
    for key, fminimum in _FLOAT_KEYS.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not fminimum <= v <= _SECONDS_MAX:
                raise InputError(f"{source}: {key}: expected a number >= {fminimum:g} (at most {_SECONDS_MAX:g}), "
                                 f"got {untrusted.shown(v)}")
            values[key] = float(v)
    if values.get("default_page_size", 50) > values.get("max_page_size", 500):
        raise InputError(f"{source}: default_page_size: larger than max_page_size")
    backend = raw.get("backend", "local")
    if backend not in BACKENDS:
        raise InputError(f"{source}: backend: expected one of {', '.join(BACKENDS)}, got {untrusted.shown(backend)}")
    values["backend"] = backend
    site = raw.get("site")
    if site is not None and (not isinstance(site, str) or not site):
        raise InputError(f"{source}: site: expected a site name or profile path")
    values["site"] = site
    if raw.get("scan_config") is not None:
        values["scan_config"] = path("scan_config")
        if not values["scan_config"].is_file():
            raise InputError(f"{source}: scan_config: {values['scan_config']}: no such file")
    anonymous = raw.get("anonymous_read", False)
    if not isinstance(anonymous, bool):
        raise InputError(f"{source}: anonymous_read: expected true or false, got {untrusted.shown(anonymous)}")
    values["anonymous_read"] = anonymous
    for key in _COMMAND_KEYS:
        if raw.get(key) is not None:
            values[key] = _command(raw[key], f"{source}: {key}")
    values["calibration"] = calibration_from_mapping(raw.get("calibration"), base_dir, source)
    return ServeConfig(**values)


def load_serve_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read serve.yaml; any problem is an :class:`InputError` naming it (the CLI exits 2)."""
    from skyscan.settings.yamlio import parse_yaml_text

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such serve configuration")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not a serve configuration")
    text = untrusted.read_text(p, "serve configuration")
    raw = parse_yaml_text(text, str(p))
    with untrusted.guarded(str(p)):
        return config_from_mapping(raw, p.absolute().parent, str(p))
