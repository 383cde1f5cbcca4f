"""HTCondor submit files: the shipped templates, filled from a site profile and the scan configuration, then checked.

A template (``submit_templates/<kind>.sub``) holds ``$(SKYSCAN_<NAME>)`` macros; ``submit_macros`` gives their
values for one node kind and site, and ``render_template`` drops every line whose macro has no value, so one
template serves every site profile. Each written file is parsed by the bindings (``check_submit``) before it is
used: a bad site setting fails when the graph is written, not when the job is queued.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from skyscan.errors import InputError
from skyscan.resources import data_text
from skyscan.settings.scan import ScanConfig
from skyscan.settings.site import SiteProfile, resolve_python

SUBMIT_KINDS = ("prepare", "scan", "merge", "final")
#: Environment variables DAGMan passes on to the PRE scripts (``ENV GET``; the wrapper reads them).
WRAPPER_ENV = ("SKYSCAN_PYTHON", "SKYSCAN_SETUP")

_MACRO = re.compile(r"\$\(SKYSCAN_([A-Z0-9_]+)\)")


def template_text(kind: str) -> str:
    """The shipped template ``submit_templates/<kind>.sub``."""
    if kind not in SUBMIT_KINDS:
        raise InputError(f"no submit template for node kind {kind!r}")
    return data_text("submit_templates", f"{kind}.sub")


def environment_value(env: Mapping[str, str]) -> str:
    """An ``environment`` value in HTCondor's new syntax: ``"A=1 B='x y'"``."""
    words = []
    for key, value in env.items():
        text = value.replace('"', '""')
        if any(c.isspace() for c in value) or "'" in value or not value:
            text = "'" + text.replace("'", "''") + "'"
        words.append(f"{key}={text}")
    return '"' + " ".join(words) + '"'


def submit_macros(
    kind: str, site: SiteProfile, config: ScanConfig, batch_name: str, python: str | None = None
) -> dict[str, str | None]:
    """The SKYSCAN_* values of one node kind; None leaves the template line out.

    ``python`` stands for the interpreter writing the graph (the profiles' ``current``); tests pass a
    fixed name so that the written files do not depend on the machine.
    """
    universe = site.universe_of(kind)
    on_submit_host = universe == "local"
    transfer = not site.shared_filesystem and not on_submit_host
    res = site.resources_of(kind, config)
    env: dict[str, str] = {}
    py = resolve_python(site.submit_python if on_submit_host else site.job_python, python)
    setup = site.submit_setup if on_submit_host else site.job_setup
    if py:
        env["SKYSCAN_PYTHON"] = py
    if setup:
        env["SKYSCAN_SETUP"] = setup
    env.update(site.environment)
    scan_transfer = transfer and kind == "scan"
    if transfer and kind != "scan":
        raise InputError(f"site {site.name}: the {kind} node cannot run without the scan directory")
    hold = site.on_exit_hold
    return {
        "UNIVERSE": universe,
        "BATCH_NAME": batch_name,
        "BATCH": "$Fnx(batch)" if scan_transfer else "$(batch)",
        "OUT": "$Fnx(out)" if scan_transfer else "$(out)",
        "REQUEST_CPUS": None if on_submit_host else str(res.request_cpus),
        "REQUEST_MEMORY": None if on_submit_host else f"{res.request_memory_mb}MB",
        "REQUEST_DISK": None if on_submit_host else f"{res.request_disk_mb}MB",
        "SHOULD_TRANSFER_FILES": None if on_submit_host else ("YES" if transfer else "NO"),
        "WHEN_TO_TRANSFER_OUTPUT": "ON_EXIT" if scan_transfer else None,
        "TRANSFER_INPUT_FILES": "event.json, config.yaml, $(batch)" if scan_transfer else None,
        "TRANSFER_OUTPUT_FILES": "$Fnx(out)" if scan_transfer else None,
        "TRANSFER_OUTPUT_REMAPS": '"$Fnx(out) = $(out)"' if scan_transfer else None,
        "CONTAINER_IMAGE": site.container_image if universe == "container" else None,
        "SINGULARITY_IMAGE": (
            f'"{site.singularity_image}"' if site.singularity_image and universe == "vanilla" else None
        ),
        "ACCOUNTING_GROUP": site.accounting_group,
        "REQUIREMENTS": None if on_submit_host else site.requirements_of(kind),
        "ENVIRONMENT": environment_value(env) if env else None,
        "ON_EXIT_HOLD": hold,
        "ON_EXIT_HOLD_SUBCODE": (
            str(site.on_exit_hold_subcode) if hold and site.on_exit_hold_subcode is not None else None
        ),
        "ON_EXIT_HOLD_REASON": f'"{site.on_exit_hold_reason}"' if hold and site.on_exit_hold_reason else None,
        "PERIODIC_RELEASE": site.periodic_release,
        "PERIODIC_REMOVE": site.periodic_remove,
        "EXTRA": "\n".join(f"{key:<23} = {value}" for key, value in site.extra.items()) or None,
    }


def render_template(text: str, macros: Mapping[str, str | None], source: str = "template") -> str:
    """Fill the SKYSCAN_* macros of a template; drop each line that uses a macro without a value."""
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        names = _MACRO.findall(line)
        if not names:
            out.append(line)
            continue
        unknown = [n for n in names if n not in macros]
        if unknown:
            raise InputError(f"{source}:{lineno}: unknown macro $(SKYSCAN_{unknown[0]})")
        if any(macros[n] is None for n in names):
            continue
        out.append(_MACRO.sub(lambda m: str(macros[m.group(1)]), line))
    return "\n".join(out) + "\n"


def render_submit(
    kind: str, site: SiteProfile, config: ScanConfig, batch_name: str, python: str | None = None
) -> str:
    """The submit file of one node kind for a site, checked by the bindings' parser."""
    body = render_template(template_text(kind), submit_macros(kind, site, config, batch_name, python), f"{kind}.sub")
    text = f"# Written by skyscan from submit_templates/{kind}.sub for site profile {site.name!r}.\n" + body
    check_submit(text, f"{kind}.sub")
    return text


def check_submit(text: str, name: str) -> Any:
    """Parse a submit description with ``htcondor2.Submit``; InputError naming the file if it does not."""
    import htcondor2

    try:
        return htcondor2.Submit(text)
    except Exception as exc:  # the bindings raise several exception types
        raise InputError(f"{name}: HTCondor cannot parse the submit description ({exc})") from None
