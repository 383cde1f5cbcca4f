"""Site profiles: everything site-specific in the submit files (config/sites/*.yaml or a file; docs/site-profiles.md).

A profile is validated key by key like the scan configuration: one ``InputError`` line naming the key path.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyscan.errors import InputError
from skyscan.resources import data_dir
from skyscan.settings.scan import NODE_KINDS, RESOURCE_KEYS, Resources, ScanConfig, parse_resources
from skyscan.settings.yamlio import (
    as_bool,
    as_int,
    as_mapping,
    as_optional_str,
    as_str,
    read_shipped_yaml,
    read_yaml,
    shown,
)

#: Kinds that read or write the whole scan directory: without a shared file system they run on the submit host.
DIRECTORY_KINDS = ("prepare", "merge", "final")
UNIVERSES = ("vanilla", "container", "local")


@dataclass(frozen=True)
class KindSettings:
    """Per-node-kind overrides of a site profile."""

    universe: str | None = None
    request_cpus: int | None = None
    request_memory_mb: int | None = None
    request_disk_mb: int | None = None
    requirements: str | None = None


@dataclass(frozen=True)
class SiteProfile:
    """Everything site-specific in the submit files (docs/site-profiles.md)."""

    name: str
    description: str
    shared_filesystem: bool
    universe: str
    container_image: str | None = None
    singularity_image: str | None = None
    accounting_group: str | None = None
    requirements: str | None = None
    periodic_release: str | None = None
    periodic_remove: str | None = None
    on_exit_hold: str | None = None
    on_exit_hold_subcode: int | None = None
    on_exit_hold_reason: str | None = None
    job_python: str | None = None
    submit_python: str | None = None
    job_setup: str | None = None
    submit_setup: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, KindSettings] = field(default_factory=dict)

    def universe_of(self, kind: str) -> str:
        setting = self.kinds.get(kind)
        return setting.universe if setting and setting.universe else self.universe

    def resources_of(self, kind: str, config: ScanConfig) -> Resources:
        """The configuration's resources for ``kind``, with this site's overrides applied."""
        base = config.jobs[kind]
        setting = self.kinds.get(kind, KindSettings())
        return Resources(
            request_cpus=setting.request_cpus or base.request_cpus,
            request_memory_mb=setting.request_memory_mb or base.request_memory_mb,
            request_disk_mb=setting.request_disk_mb or base.request_disk_mb,
        )

    def requirements_of(self, kind: str) -> str | None:
        setting = self.kinds.get(kind)
        return setting.requirements if setting and setting.requirements else self.requirements


_SITE_KEYS = (
    "description",
    "shared_filesystem",
    "universe",
    "container_image",
    "singularity_image",
    "accounting_group",
    "requirements",
    "periodic_release",
    "periodic_remove",
    "on_exit_hold",
    "on_exit_hold_subcode",
    "on_exit_hold_reason",
    "job_python",
    "submit_python",
    "job_setup",
    "submit_setup",
    "environment",
    "extra",
    "kinds",
)
_EXPRESSION_KEYS = ("requirements", "periodic_release", "periodic_remove", "on_exit_hold")
_KIND_KEYS = ("universe", "requirements", *RESOURCE_KEYS)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SUBMIT_KEY = re.compile(r"(\+|MY\.|My\.|my\.)?[A-Za-z_][A-Za-z0-9_.]*\Z")
_RESERVED_ENV = ("SKYSCAN_PYTHON", "SKYSCAN_SETUP")


def _expression(value: Any, path: str) -> str | None:
    """A ClassAd expression, checked with the bindings' parser so a typo fails at write time."""
    if value is None:
        return None
    text = as_str(value, path).strip()
    from skyscan.dagman.classads import is_valid_expression

    if not is_valid_expression(text):
        raise InputError(f"{path}: not a valid ClassAd expression: {shown(text)}")
    return text


def _python_setting(value: Any, path: str) -> str | None:
    if value is None:
        return None
    return as_str(value, path)


def parse_site(doc: Mapping[str, Any], name: str) -> SiteProfile:
    """Validate a site profile mapping."""
    d = as_mapping(dict(doc), "", _SITE_KEYS)
    for key in ("shared_filesystem", "universe"):
        if key not in d:
            raise InputError(f"{key}: missing")
    shared = as_bool(d["shared_filesystem"], "shared_filesystem")
    universe = as_str(d["universe"], "universe", UNIVERSES)

    kinds: dict[str, KindSettings] = {}
    for kind, raw in as_mapping(d.get("kinds") or {}, "kinds", NODE_KINDS).items():
        path = f"kinds.{kind}"
        k = as_mapping(raw, path, _KIND_KEYS)
        res = parse_resources({r: k[r] for r in RESOURCE_KEYS if r in k}, path, partial=True)
        kinds[kind] = KindSettings(
            universe=None if k.get("universe") is None else as_str(k["universe"], f"{path}.universe", UNIVERSES),
            requirements=_expression(k.get("requirements"), f"{path}.requirements"),
            request_cpus=res.get("request_cpus"),
            request_memory_mb=res.get("request_memory_mb"),
            request_disk_mb=res.get("request_disk_mb"),
        )

    container_image = as_optional_str(d.get("container_image"), "container_image")
    singularity_image = as_optional_str(d.get("singularity_image"), "singularity_image")
    if container_image and singularity_image:
        raise InputError("singularity_image: set either container_image or singularity_image, not both")
    for kind in NODE_KINDS:
        setting = kinds.get(kind)
        uni = setting.universe if setting and setting.universe else universe
        where = f"kinds.{kind}.universe" if setting and setting.universe else "universe"
        if uni == "container" and not container_image:
            raise InputError(f"{where}: the container universe needs container_image (node kind {kind})")
        if not shared and kind in DIRECTORY_KINDS and uni != "local":
            raise InputError(
                f"kinds.{kind}.universe: without a shared file system the {kind} node reads the whole scan "
                "directory and must run in the local universe"
            )
    if container_image and not any(
        ((kinds.get(k) and kinds[k].universe) or universe) == "container" for k in NODE_KINDS
    ):
        raise InputError("container_image: set, but no node kind runs in the container universe")

    env_raw = as_mapping(d.get("environment") or {}, "environment")
    environment: dict[str, str] = {}
    for key, value in env_raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InputError(f"environment.{key}: not a valid environment variable name")
        if key in _RESERVED_ENV:
            raise InputError(f"environment.{key}: set it with job_python/submit_python or job_setup/submit_setup")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"environment.{key}: expected a string, got {shown(value)}")
        environment[key] = str(value)

    extra_raw = as_mapping(d.get("extra") or {}, "extra")
    extra: dict[str, str] = {}
    for key, value in extra_raw.items():
        if not isinstance(key, str) or not _SUBMIT_KEY.match(key):
            raise InputError(f"extra.{key}: not a valid submit command name")
        if key.lower() in ("queue", "executable", "arguments", "universe", "environment", "batch_name"):
            raise InputError(f"extra.{key}: skyscan writes this command itself")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise InputError(f"extra.{key}: expected a string or number, got {shown(value)}")
        text = str(value)
        if "\n" in text:
            raise InputError(f"extra.{key}: must be a single line")
        extra[key] = text

    subcode = d.get("on_exit_hold_subcode")
    reason = as_optional_str(d.get("on_exit_hold_reason"), "on_exit_hold_reason")
    if reason is not None and '"' in reason:
        raise InputError("on_exit_hold_reason: must not contain double quotes")
    exprs = {key: _expression(d.get(key), key) for key in _EXPRESSION_KEYS}
    return SiteProfile(
        name=name,
        description=as_str(d.get("description", name), "description"),
        shared_filesystem=shared,
        universe=universe,
        container_image=container_image,
        singularity_image=singularity_image,
        accounting_group=as_optional_str(d.get("accounting_group"), "accounting_group"),
        requirements=exprs["requirements"],
        periodic_release=exprs["periodic_release"],
        periodic_remove=exprs["periodic_remove"],
        on_exit_hold=exprs["on_exit_hold"],
        on_exit_hold_subcode=None if subcode is None else as_int(subcode, "on_exit_hold_subcode", minimum=0),
        on_exit_hold_reason=reason,
        job_python=_python_setting(d.get("job_python"), "job_python"),
        submit_python=_python_setting(d.get("submit_python"), "submit_python"),
        job_setup=as_optional_str(d.get("job_setup"), "job_setup"),
        submit_setup=as_optional_str(d.get("submit_setup"), "submit_setup"),
        environment=environment,
        extra=extra,
        kinds=kinds,
    )


def site_names() -> list[str]:
    """The shipped site profiles (config/sites/*.yaml)."""
    folder = data_dir("config").joinpath("sites")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_site(name_or_path: str) -> SiteProfile:
    """A shipped profile by name (``local``, ``osg``) or a profile file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file() or "/" in name_or_path:
        doc = read_yaml(p)
        where, name = str(p), p.stem
    else:
        names = site_names()
        if name_or_path not in names:
            raise InputError(f"--site: no site profile {name_or_path!r} (shipped: {', '.join(names)}; or a FILE)")
        raw = read_shipped_yaml(f"sites/{name_or_path}.yaml")
        doc = raw if isinstance(raw, dict) else {}
        where, name = f"site profile {name_or_path}", name_or_path
    try:
        return parse_site(doc, name)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


def resolve_python(setting: str | None, current: str | None = None) -> str | None:
    """SKYSCAN_PYTHON for a profile's ``*_python`` value: ``current`` means the running interpreter."""
    if setting is None:
        return None
    if setting == "current":
        return current if current is not None else sys.executable
    return setting
