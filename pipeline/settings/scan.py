"""The scan configuration (config/default.yaml merged with ``--config FILE``) and the site profiles.

Both are YAML mappings validated key by key: every bad value raises one ``InputError`` line that names its
key path (``scan.stages[1].nside: ...``), so an operator can fix a file without reading code.

This module is ``skyscan.settings.scan``, not ``skyscan.config``: that name belongs to the data package built
from ``config/`` (the YAML files), which a module of the same name would hide.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from skyscan.errors import InputError

CONFIG_SCHEMA = "skyscan-config/1"
RULES = ("fixed", "adaptive")
NODE_KINDS = ("prepare", "scan", "merge", "final")
#: Kinds that read or write the whole scan directory: without a shared file system they run on the submit host.
DIRECTORY_KINDS = ("prepare", "merge", "final")
UNIVERSES = ("vanilla", "container", "local")
MAX_NSIDE = 2**29
RESOURCE_KEYS = ("request_cpus", "request_memory_mb", "request_disk_mb")

_SOURCE_DIRS = {"config": "config", "submit_templates": "submit_templates", "scripts": "scripts"}


# ---------------------------------------------------------------------------------------------------------------
# Data files
# ---------------------------------------------------------------------------------------------------------------
def data_dir(package: str) -> Traversable:
    """The folder of a data package (``config``, ``submit_templates``, ``scripts``).

    An installed wheel has them as ``skyscan/<package>/``. An editable install maps ``skyscan`` to
    ``pipeline/`` and cannot import the data folders (they have no ``__init__.py``), so fall back to the
    source tree beside ``pipeline/``.
    """
    try:
        root = resources.files(f"skyscan.{package}")
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    import skyscan

    source = Path(skyscan.__file__).resolve().parent.parent / _SOURCE_DIRS[package]
    if not source.is_dir():
        raise FileNotFoundError(f"skyscan data folder {package!r} not found (broken installation?)")
    return source


def _read_yaml_text(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise InputError(f"{where}: invalid YAML ({first})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file holding a mapping (an empty file is an empty mapping)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc.__class__.__name__})") from None
    doc = _read_yaml_text(text, str(p))
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{p}: expected a mapping at the top level")
    return doc


def default_mapping() -> dict[str, Any]:
    """The built-in defaults (config/default.yaml) as a fresh mapping."""
    text = data_dir("config").joinpath("default.yaml").read_text(encoding="utf-8")
    doc = _read_yaml_text(text, "default.yaml")
    if not isinstance(doc, dict):
        raise InputError("default.yaml: expected a mapping at the top level")
    return doc


def merge_mappings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, anything else (lists too) is replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Validation helpers: each names the key path of the bad value
# ---------------------------------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _mapping(value: Any, path: str, known: tuple[str, ...] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a mapping, got {_show(value)}")
    if known is not None:
        for key in value:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                raise InputError(f"{where}: unknown key (known: {', '.join(known)})")
    return value


def _int(value: Any, path: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{path}: expected an integer, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{path}: must be >= {minimum}, got {value}")
    return value


def _float(value: Any, path: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{path}: expected a finite number, got {_show(value)}")
    if minimum is not None and value < minimum:
        raise InputError(f"{path}: must be >= {minimum:g}, got {value}")
    return float(value)


def _str(value: Any, path: str, choices: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: expected a non-empty string, got {_show(value)}")
    if choices is not None and value not in choices:
        raise InputError(f"{path}: must be one of {', '.join(choices)}, got {_show(value)}")
    return value


def _opt_str(value: Any, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{path}: expected true or false, got {_show(value)}")
    return value


def check_nside(nside: Any, path: str) -> int:
    """An nside: a power of two from 1 to 2**29."""
    n = _int(nside, path)
    if n < 1 or n > MAX_NSIDE or n & (n - 1):
        raise InputError(f"{path}: nside must be a power of two from 1 to 2**29, got {n}")
    return n


# ---------------------------------------------------------------------------------------------------------------
# The scan configuration
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One stage of the nside progression; ``refine`` = previous-stage pixels refined by the fixed rule."""

    index: int
    nside: int
    pixels_per_job: int
    refine: int | None = None

    @property
    def npix_sky(self) -> int:
        return 12 * self.nside * self.nside


@dataclass(frozen=True)
class Adaptive:
    """The adaptive rule: follow the ``level`` contour, widened by ``margin`` (2*delta-llh)."""

    level: str
    margin: float
    max_refine: int


@dataclass(frozen=True)
class Resources:
    request_cpus: int
    request_memory_mb: int
    request_disk_mb: int


@dataclass(frozen=True)
class ScanConfig:
    """The validated configuration; ``doc`` is the resolved mapping that is written as config.yaml."""

    rule: str
    stages: tuple[Stage, ...]
    adaptive: Adaptive
    containment: dict[str, float]  # label -> 2*delta-llh
    retries: int
    maxjobs: dict[str, int]
    jobs: dict[str, Resources]
    reco: dict[str, Any]
    doc: dict[str, Any] = field(repr=False)

    def threshold(self, label: str) -> float:
        """The 2*delta-llh of a containment level."""
        return self.containment[label]

    def to_yaml(self) -> str:
        """config.yaml: the resolved configuration, stable for the same input."""
        header = "# skyscan resolved scan configuration (defaults merged with --config and flags)\n"
        return header + yaml.safe_dump(self.doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


_TOP_KEYS = ("schema", "scan", "containment", "dag", "jobs", "merge", "reco")
_SCAN_KEYS = ("rule", "stages", "adaptive")
_STAGE_KEYS = ("nside", "pixels_per_job", "refine")
_ADAPTIVE_KEYS = ("level", "margin", "max_refine")
_DAG_KEYS = ("retries", "maxjobs")
_CATEGORIES = ("scan",)


def _parse_stages(raw: Any, rule: str) -> tuple[Stage, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError(f"scan.stages: expected a non-empty list of stages, got {_show(raw)}")
    stages: list[Stage] = []
    for i, item in enumerate(raw):
        path = f"scan.stages[{i}]"
        d = _mapping(item, path, _STAGE_KEYS)
        if "nside" not in d:
            raise InputError(f"{path}.nside: missing")
        nside = check_nside(d["nside"], f"{path}.nside")
        if stages and nside <= stages[-1].nside:
            raise InputError(
                f"{path}.nside: nsides must ascend from stage to stage, got {nside} after {stages[-1].nside}"
            )
        ppj = _int(d.get("pixels_per_job", 64), f"{path}.pixels_per_job", minimum=1)
        refine: int | None = None
        if i == 0:
            if d.get("refine") is not None:
                raise InputError(f"{path}.refine: the first stage covers the whole sky and refines nothing")
        else:
            prev = stages[-1]
            if d.get("refine") is not None:
                refine = _int(d["refine"], f"{path}.refine", minimum=1)
                if refine > prev.npix_sky:
                    raise InputError(
                        f"{path}.refine: {refine} is more than the {prev.npix_sky} pixels at nside {prev.nside}"
                    )
            elif rule == "fixed":
                raise InputError(f"{path}.refine: missing (the fixed rule needs the number of pixels to refine)")
        stages.append(Stage(index=i, nside=nside, pixels_per_job=ppj, refine=refine))
    return tuple(stages)


def _parse_containment(raw: Any) -> dict[str, float]:
    from skyscan.products.levels import resolve_levels

    if isinstance(raw, dict):
        for key in raw:
            if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                raise InputError(f"containment: level label {_show(key)} must be a string or number")
    try:
        levels: dict[str, float] = resolve_levels(raw)
    except InputError as exc:
        raise InputError(f"containment: {exc}") from None
    return levels


def _parse_resources(raw: Any, path: str, partial: bool) -> dict[str, int]:
    d = _mapping(raw, path, RESOURCE_KEYS)
    out: dict[str, int] = {}
    for key in RESOURCE_KEYS:
        if key not in d:
            if partial:
                continue
            raise InputError(f"{path}.{key}: missing")
        out[key] = _int(d[key], f"{path}.{key}", minimum=1)
    return out


def _check_merge(top: Mapping[str, Any]) -> None:
    """The ``merge:`` section belongs to the merge node (skyscan.nodes.merge); validate it here so a typo fails early."""
    if top.get("merge") is None:
        return
    from skyscan.settings.merge import merge_options

    try:
        merge_options(top)
    except InputError as exc:
        text = str(exc)
        raise InputError(text[len("config ") :] if text.startswith("config ") else text) from None


def parse_config(doc: Mapping[str, Any]) -> ScanConfig:
    """Validate a complete (merged) configuration mapping."""
    top = _mapping(dict(doc), "", _TOP_KEYS)
    if top.get("schema", CONFIG_SCHEMA) != CONFIG_SCHEMA:
        raise InputError(f"schema: unsupported {_show(top['schema'])} (this software reads {CONFIG_SCHEMA})")
    scan = _mapping(top.get("scan"), "scan", _SCAN_KEYS)
    rule = _str(scan.get("rule", "fixed"), "scan.rule", RULES)
    stages = _parse_stages(scan.get("stages"), rule)

    containment = _parse_containment(top.get("containment", "wilks"))
    ad = _mapping(scan.get("adaptive", {}), "scan.adaptive", _ADAPTIVE_KEYS)
    level_raw = ad.get("level", "90")
    if isinstance(level_raw, bool) or not isinstance(level_raw, (str, int, float)):
        raise InputError(f"scan.adaptive.level: expected a containment label, got {_show(level_raw)}")
    level = level_raw if isinstance(level_raw, str) else f"{level_raw:g}"
    if level not in containment:
        raise InputError(
            f"scan.adaptive.level: {level!r} is not a containment level (have: {', '.join(containment)})"
        )
    adaptive = Adaptive(
        level=level,
        margin=_float(ad.get("margin", 2.0), "scan.adaptive.margin", minimum=0.0),
        max_refine=_int(ad.get("max_refine", 48), "scan.adaptive.max_refine", minimum=1),
    )

    dag = _mapping(top.get("dag", {}), "dag", _DAG_KEYS)
    retries = _int(dag.get("retries", 3), "dag.retries", minimum=0)
    maxjobs_raw = _mapping(dag.get("maxjobs", {}), "dag.maxjobs", _CATEGORIES)
    maxjobs = {cat: _int(v, f"dag.maxjobs.{cat}", minimum=0) for cat, v in maxjobs_raw.items()}

    jobs_raw = _mapping(top.get("jobs", {}), "jobs", NODE_KINDS)
    jobs: dict[str, Resources] = {}
    for kind in NODE_KINDS:
        if kind not in jobs_raw:
            raise InputError(f"jobs.{kind}: missing")
        jobs[kind] = Resources(**_parse_resources(jobs_raw[kind], f"jobs.{kind}", partial=False))

    reco_raw = top.get("reco", {})
    from skyscan.reco.settings import RecoSettings

    RecoSettings.from_mapping(reco_raw)  # raises InputError("reco.<key>: ...")
    _check_merge(top)
    return ScanConfig(
        rule=rule,
        stages=stages,
        adaptive=adaptive,
        containment=containment,
        retries=retries,
        maxjobs=maxjobs,
        jobs=jobs,
        reco=dict(reco_raw or {}),
        doc=copy.deepcopy(dict(top)),
    )


def flag_overrides(
    rule: str | None = None, maxjobs: int | None = None, retries: int | None = None
) -> dict[str, Any]:
    """The mapping that the command-line flags merge over the configuration."""
    out: dict[str, Any] = {}
    if rule is not None:
        out.setdefault("scan", {})["rule"] = rule
    if maxjobs is not None:
        out.setdefault("dag", {})["maxjobs"] = {"scan": maxjobs}
    if retries is not None:
        out.setdefault("dag", {})["retries"] = retries
    return out


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ScanConfig:
    """Defaults, merged with the file ``path`` (if any), merged with ``overrides``; validated.

    Errors name the file the override came from, then the key path.
    """
    doc = default_mapping()
    source = "configuration"
    if path is not None:
        source = str(path)
        doc = merge_mappings(doc, read_yaml(path))
    if overrides:
        doc = merge_mappings(doc, overrides)
    try:
        return parse_config(doc)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------------
# Site profiles
# ---------------------------------------------------------------------------------------------------------------
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
    text = _str(value, path).strip()
    import classad2

    try:
        classad2.ExprTree(text)
    except Exception:  # the bindings raise their own exception types
        raise InputError(f"{path}: not a valid ClassAd expression: {_show(text)}") from None
    return text


def _python_setting(value: Any, path: str) -> str | None:
    if value is None:
        return None
    return _str(value, path)


def parse_site(doc: Mapping[str, Any], name: str) -> SiteProfile:
    """Validate a site profile mapping."""
    d = _mapping(dict(doc), "", _SITE_KEYS)
    for key in ("shared_filesystem", "universe"):
        if key not in d:
            raise InputError(f"{key}: missing")
    shared = _bool(d["shared_filesystem"], "shared_filesystem")
    universe = _str(d["universe"], "universe", UNIVERSES)

    kinds: dict[str, KindSettings] = {}
    for kind, raw in _mapping(d.get("kinds") or {}, "kinds", NODE_KINDS).items():
        path = f"kinds.{kind}"
        k = _mapping(raw, path, _KIND_KEYS)
        res = _parse_resources({r: k[r] for r in RESOURCE_KEYS if r in k}, path, partial=True)
        kinds[kind] = KindSettings(
            universe=None if k.get("universe") is None else _str(k["universe"], f"{path}.universe", UNIVERSES),
            requirements=_expression(k.get("requirements"), f"{path}.requirements"),
            request_cpus=res.get("request_cpus"),
            request_memory_mb=res.get("request_memory_mb"),
            request_disk_mb=res.get("request_disk_mb"),
        )

    container_image = _opt_str(d.get("container_image"), "container_image")
    singularity_image = _opt_str(d.get("singularity_image"), "singularity_image")
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

    env_raw = _mapping(d.get("environment") or {}, "environment")
    environment: dict[str, str] = {}
    for key, value in env_raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InputError(f"environment.{key}: not a valid environment variable name")
        if key in _RESERVED_ENV:
            raise InputError(f"environment.{key}: set it with job_python/submit_python or job_setup/submit_setup")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InputError(f"environment.{key}: expected a string, got {_show(value)}")
        environment[key] = str(value)

    extra_raw = _mapping(d.get("extra") or {}, "extra")
    extra: dict[str, str] = {}
    for key, value in extra_raw.items():
        if not isinstance(key, str) or not _SUBMIT_KEY.match(key):
            raise InputError(f"extra.{key}: not a valid submit command name")
        if key.lower() in ("queue", "executable", "arguments", "universe", "environment", "batch_name"):
            raise InputError(f"extra.{key}: skyscan writes this command itself")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise InputError(f"extra.{key}: expected a string or number, got {_show(value)}")
        text = str(value)
        if "\n" in text:
            raise InputError(f"extra.{key}: must be a single line")
        extra[key] = text

    subcode = d.get("on_exit_hold_subcode")
    reason = _opt_str(d.get("on_exit_hold_reason"), "on_exit_hold_reason")
    if reason is not None and '"' in reason:
        raise InputError("on_exit_hold_reason: must not contain double quotes")
    exprs = {key: _expression(d.get(key), key) for key in _EXPRESSION_KEYS}
    return SiteProfile(
        name=name,
        description=_str(d.get("description", name), "description"),
        shared_filesystem=shared,
        universe=universe,
        container_image=container_image,
        singularity_image=singularity_image,
        accounting_group=_opt_str(d.get("accounting_group"), "accounting_group"),
        requirements=exprs["requirements"],
        periodic_release=exprs["periodic_release"],
        periodic_remove=exprs["periodic_remove"],
        on_exit_hold=exprs["on_exit_hold"],
        on_exit_hold_subcode=None if subcode is None else _int(subcode, "on_exit_hold_subcode", minimum=0),
        on_exit_hold_reason=reason,
        job_python=_python_setting(d.get("job_python"), "job_python"),
        submit_python=_python_setting(d.get("submit_python"), "submit_python"),
        job_setup=_opt_str(d.get("job_setup"), "job_setup"),
        submit_setup=_opt_str(d.get("submit_setup"), "submit_setup"),
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
        text = data_dir("config").joinpath("sites").joinpath(f"{name_or_path}.yaml").read_text(encoding="utf-8")
        raw = _read_yaml_text(text, f"{name_or_path}.yaml")
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
