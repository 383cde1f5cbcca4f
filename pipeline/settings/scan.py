"""The scan configuration: config/default.yaml merged with ``--config FILE`` and the command-line flags, validated.

Every bad value raises one ``InputError`` line that names its key path (``scan.stages[1].nside: ...``). The site
profiles are :mod:`skyscan.settings.site`; the ``merge:`` section is :mod:`skyscan.settings.merge`.

This module is ``skyscan.settings.scan``, not ``skyscan.config``: that name belongs to the data package built
from ``config/`` (the YAML files), which a module of the same name would hide.
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skyscan.errors import InputError
from skyscan.products.summary import RESOLVE_MAX_NSIDE, RESOLVE_MIN_PIXELS
from skyscan.settings.yamlio import as_float, as_int, as_mapping, as_str, read_shipped_yaml, read_yaml, shown

CONFIG_SCHEMA = "skyscan-config/1"
RULES = ("fixed", "adaptive")
#: The kinds of graph node, each with its ``jobs.<kind>`` resources.
NODE_KINDS = ("prepare", "scan", "merge", "final")
MAX_NSIDE = 2**29
MAX_RETRIES = 100
"""DAGMan RETRY per node: more than a hundred retries of one batch is a configuration mistake, not a policy."""
RESOURCE_KEYS = ("request_cpus", "request_memory_mb", "request_disk_mb")


@functools.cache
def _shipped_defaults() -> dict[str, Any]:
    """config/default.yaml, parsed once per process: it ships with the package, and parsing it in pure Python cost
    ~4 ms on every status read of the service's and the watcher's scheduler."""
    doc = read_shipped_yaml("default.yaml")
    if not isinstance(doc, dict):
        raise InputError("default.yaml: expected a mapping at the top level")
    return doc


def default_mapping() -> dict[str, Any]:
    """The built-in defaults (config/default.yaml) as a fresh mapping (a deep copy: callers may change it)."""
    return copy.deepcopy(_shipped_defaults())


def merge_mappings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key, anything else (lists too) is replaced whole."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_mappings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def is_valid_nside(nside: int) -> bool:
    """A HEALPix nside skyscan can scan: a power of two from 1 to 2**29."""
    return 1 <= nside <= MAX_NSIDE and not nside & (nside - 1)


def validate_nside(nside: Any, path: str) -> int:
    """The one nside check: an integer power of two from 1 to 2**29; InputError naming ``path`` otherwise."""
    n = as_int(nside, path)
    if not is_valid_nside(n):
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

    @property
    def resolve(self) -> Resolve:
        """``scan.resolve``: refine past the last stage until the region is resolved (see ``Resolve``)."""
        return parse_resolve(self.doc.get("scan", {}).get("resolve"))

    def threshold(self, label: str) -> float:
        """The 2*delta-llh of a containment level."""
        return self.containment[label]

    def to_yaml(self) -> str:
        """config.yaml: the resolved configuration, stable for the same input."""
        header = "# skyscan resolved scan configuration (defaults merged with --config and flags)\n"
        return header + yaml.safe_dump(self.doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


_TOP_KEYS = ("schema", "scan", "containment", "dag", "jobs", "merge", "reco")
_SCAN_KEYS = ("rule", "stages", "adaptive", "resolve")
_STAGE_KEYS = ("nside", "pixels_per_job", "refine")
_ADAPTIVE_KEYS = ("level", "margin", "max_refine")
_DAG_KEYS = ("retries", "maxjobs")
_CATEGORIES = ("scan",)


def _parse_stages(raw: Any, rule: str) -> tuple[Stage, ...]:
    if not isinstance(raw, list) or not raw:
        raise InputError(f"scan.stages: expected a non-empty list of stages, got {shown(raw)}")
    stages: list[Stage] = []
    for i, item in enumerate(raw):
        path = f"scan.stages[{i}]"
        d = as_mapping(item, path, _STAGE_KEYS)
        if "nside" not in d:
            raise InputError(f"{path}.nside: missing")
        nside = validate_nside(d["nside"], f"{path}.nside")
        if stages and nside <= stages[-1].nside:
            raise InputError(
                f"{path}.nside: nsides must ascend from stage to stage, got {nside} after {stages[-1].nside}"
            )
        ppj = as_int(d.get("pixels_per_job", 64), f"{path}.pixels_per_job", minimum=1)
        refine: int | None = None
        if i == 0:
            if d.get("refine") is not None:
                raise InputError(f"{path}.refine: the first stage covers the whole sky and refines nothing")
        else:
            prev = stages[-1]
            if d.get("refine") is not None:
                refine = as_int(d["refine"], f"{path}.refine", minimum=1)
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
                raise InputError(f"containment: level label {shown(key)} must be a string or number")
    try:
        levels: dict[str, float] = resolve_levels(raw)
    except InputError as exc:
        raise InputError(f"containment: {exc}") from None
    check_levels_ordered(raw, levels)
    if not isinstance(raw, Mapping) and len(levels) == 2 and not {"50", "90"} <= set(levels):
        low, high = sorted(levels.values())  # two bare numbers are the 50% and the 90% level, as for the merge
        levels = {"50": low, "90": high}
    return levels


def check_levels_ordered(raw: Any, levels: Mapping[str, float]) -> None:
    """Wider regions have higher 2*delta-llh: numbers are given in ascending order (``"1.39,4.61"``: the 50% then
    the 90% level), and in a mapping whose labels are percentages a higher percentage has a higher level."""
    if isinstance(raw, Mapping):
        numeric: list[tuple[float, str]] = []
        for label in levels:
            try:
                numeric.append((float(label), label))
            except ValueError:
                return  # named labels carry no order
        pairs = [(levels[label], label) for _, label in sorted(numeric)]
    elif isinstance(raw, str) and "," not in raw:
        return
    else:
        pairs = [(value, label) for label, value in levels.items()]
        if len(pairs) != (len(raw) if isinstance(raw, (list, tuple)) else len(str(raw).split(","))):
            raise InputError(f"containment: levels {shown(raw)} repeat a value")
    for (low, low_label), (high, high_label) in itertools.pairwise(pairs):
        if not high > low:
            raise InputError(f"containment: levels must ascend (the wider region has the higher 2*delta-llh), "
                             f"got {high_label} = {high:g} after {low_label} = {low:g}")


def parse_resources(raw: Any, path: str, partial: bool) -> dict[str, int]:
    """The ``request_*`` keys of a mapping; ``partial``: each may be missing (a site profile's overrides)."""
    d = as_mapping(raw, path, RESOURCE_KEYS)
    out: dict[str, int] = {}
    for key in RESOURCE_KEYS:
        if key not in d:
            if partial:
                continue
            raise InputError(f"{path}.{key}: missing")
        out[key] = as_int(d[key], f"{path}.{key}", minimum=1)
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


#: ``reco.compiled_kernel`` when a configuration does not set it: the compiled likelihood kernel (numba) is
#: the default of a scan since the local executor runs scan nodes in warm processes, where its load cost
#: (~1 s per fresh process) is paid once per run; the numpy path (``compiled_kernel: false``) stays the oracle.
COMPILED_KERNEL_DEFAULT = True


def parse_config(doc: Mapping[str, Any]) -> ScanConfig:
    """Validate a complete (merged) configuration mapping."""
    top = as_mapping(dict(doc), "", _TOP_KEYS)
    if top.get("schema", CONFIG_SCHEMA) != CONFIG_SCHEMA:
        raise InputError(f"schema: unsupported {shown(top['schema'])} (this software reads {CONFIG_SCHEMA})")
    scan = as_mapping(top.get("scan"), "scan", _SCAN_KEYS)
    rule = as_str(scan.get("rule", "fixed"), "scan.rule", RULES)
    stages = _parse_stages(scan.get("stages"), rule)
    parse_resolve(scan.get("resolve"))

    containment = _parse_containment(top.get("containment", "wilks"))
    ad = as_mapping(scan.get("adaptive", {}), "scan.adaptive", _ADAPTIVE_KEYS)
    level_raw = ad.get("level", "90")
    if isinstance(level_raw, bool) or not isinstance(level_raw, (str, int, float)):
        raise InputError(f"scan.adaptive.level: expected a containment label, got {shown(level_raw)}")
    level = level_raw if isinstance(level_raw, str) else f"{level_raw:g}"
    if level not in containment:
        raise InputError(
            f"scan.adaptive.level: {level!r} is not a containment level (have: {', '.join(containment)})"
        )
    adaptive = Adaptive(
        level=level,
        margin=as_float(ad.get("margin", 2.0), "scan.adaptive.margin", minimum=0.0),
        max_refine=as_int(ad.get("max_refine", 48), "scan.adaptive.max_refine", minimum=1),
    )

    dag = as_mapping(top.get("dag", {}), "dag", _DAG_KEYS)
    retries = as_int(dag.get("retries", 3), "dag.retries", minimum=0, maximum=MAX_RETRIES)
    maxjobs_raw = as_mapping(dag.get("maxjobs", {}), "dag.maxjobs", _CATEGORIES)
    maxjobs = {cat: as_int(v, f"dag.maxjobs.{cat}", minimum=0) for cat, v in maxjobs_raw.items()}

    jobs_raw = as_mapping(top.get("jobs", {}), "jobs", NODE_KINDS)
    jobs: dict[str, Resources] = {}
    for kind in NODE_KINDS:
        if kind not in jobs_raw:
            raise InputError(f"jobs.{kind}: missing")
        jobs[kind] = Resources(**parse_resources(jobs_raw[kind], f"jobs.{kind}", partial=False))

    reco_raw = top.get("reco", {})
    from skyscan.reco.settings import RecoSettings

    RecoSettings.from_mapping(reco_raw)  # raises InputError("reco.<key>: ...")
    if reco_raw is None or (isinstance(reco_raw, dict) and "compiled_kernel" not in reco_raw):
        # the scan's default, written into config.yaml so that every node (local or grid) uses the same path
        reco_raw = {**(reco_raw or {}), "compiled_kernel": COMPILED_KERNEL_DEFAULT}
        top = {**top, "reco": reco_raw}
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
# scan.resolve: refining until the containment region is resolved (docs/graph.md, "Resolving the region")
# ---------------------------------------------------------------------------------------------------------------
_RESOLVE_KEYS = ("min_pixels", "max_nside")


@dataclass(frozen=True)
class Resolve:
    """``scan.resolve``: after the last configured stage, keep refining around the best fit while the
    ``scan.adaptive.level`` region (the 90% one by default) holds fewer than ``min_pixels`` pixels of the finest
    scanned nside, up to ``max_nside``. ``min_pixels`` 0 turns it off. The defaults are skyscan.products.summary's (the flags of summary.json use them too)."""

    min_pixels: int = RESOLVE_MIN_PIXELS
    max_nside: int = RESOLVE_MAX_NSIDE


def parse_resolve(raw: Any) -> Resolve:
    """Validate ``scan.resolve`` (absent or null: the defaults); InputError naming the key otherwise."""
    if raw is None:
        return Resolve()
    d = as_mapping(raw, "scan.resolve", _RESOLVE_KEYS)
    return Resolve(
        min_pixels=as_int(d.get("min_pixels", RESOLVE_MIN_PIXELS), "scan.resolve.min_pixels", minimum=0),
        max_nside=validate_nside(d.get("max_nside", RESOLVE_MAX_NSIDE), "scan.resolve.max_nside"),
    )
