"""A calibration directory and its graph: one node per batch of pseudo-events, a collect node at the end.

CALDIR holds ``request.json`` (what to do: the source track, N, seeds, systematics), ``calibration.dag`` (written
with ``skyscan.workflow`` and ``skyscan.condor.dagwriter`` like every other graph), ``batch.sub`` / ``collect.sub``
(filled from the site profile like the scans' merge node), the ``skyscan-calibrate`` wrapper, one
``batches/batch-NNNN.json`` per batch and, last, ``calibration.json``. The local executor and DAGMan run the same
files; both resume (run-state file, rescue DAG), and a batch node whose file is already written exits at once.
"""

from __future__ import annotations

import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json, write_text
from skyscan.calibrate.source import SourceTrack, digest_of, source_from_dict
from skyscan.errors import InputError
from skyscan.workflow import Workflow

REQUEST_SCHEMA = "skyscan-calibration-request/1"
BATCH_SCHEMA = "skyscan-calibration-batch/1"
REQUEST_FILE = "request.json"
CALIBRATION_FILE = "calibration.json"
CALIBRATION_DAG = "calibration.dag"
BATCH_SUB = "batch.sub"
COLLECT_SUB = "collect.sub"
WRAPPER = "skyscan-calibrate"
BATCH_DIR = "batches"
LOGS_DIR = "logs"
COLLECT_NODE = "collect"
BAD_INPUT_EXIT = 2
DEFAULT_BATCH_SIZE = 10

_WRAPPER_TEXT = """#!/usr/bin/env bash
# skyscan-calibrate: the executable of a calibration's nodes; runs `python -m skyscan.calibrate.node ARGS...`.
# Written by skyscan calibrate. Environment, as for the scan nodes' wrapper:
#   SKYSCAN_SETUP   optional: a script sourced first (e.g. one that activates a Python environment)
#   SKYSCAN_PYTHON  optional: the interpreter (default: python3 from PATH)
set -eu
if [ -n "${SKYSCAN_SETUP:-}" ]; then
    set +u
    # shellcheck disable=SC1090
    . "$SKYSCAN_SETUP"
    set -u
fi
exec "${SKYSCAN_PYTHON:-python3}" -m skyscan.calibrate.node "$@"
"""

_SUBMIT_TEMPLATE = """# skyscan calibration node ({what}); rendered from the site profile like a scan's merge node.
universe                = $(SKYSCAN_UNIVERSE)
executable              = {wrapper}
arguments               = "{arguments}"
batch_name              = $(SKYSCAN_BATCH_NAME)
log                     = {logs}/$(JOB).log
output                  = {logs}/$(JOB).out
error                   = {logs}/$(JOB).err
request_cpus            = $(SKYSCAN_REQUEST_CPUS)
request_memory          = $(SKYSCAN_REQUEST_MEMORY)
request_disk            = $(SKYSCAN_REQUEST_DISK)
should_transfer_files   = $(SKYSCAN_SHOULD_TRANSFER_FILES)
container_image         = $(SKYSCAN_CONTAINER_IMAGE)
+SingularityImage       = $(SKYSCAN_SINGULARITY_IMAGE)
accounting_group        = $(SKYSCAN_ACCOUNTING_GROUP)
requirements            = $(SKYSCAN_REQUIREMENTS)
environment             = $(SKYSCAN_ENVIRONMENT)
on_exit_hold            = $(SKYSCAN_ON_EXIT_HOLD)
on_exit_hold_subcode    = $(SKYSCAN_ON_EXIT_HOLD_SUBCODE)
on_exit_hold_reason     = $(SKYSCAN_ON_EXIT_HOLD_REASON)
periodic_release        = $(SKYSCAN_PERIODIC_RELEASE)
periodic_remove         = $(SKYSCAN_PERIODIC_REMOVE)
$(SKYSCAN_EXTRA)
queue
"""


@dataclass(frozen=True)
class Request:
    """request.json: the source track, how many pseudo-events in batches of what size, the seed, the systematics."""

    source: SourceTrack
    n: int
    batch_size: int
    seed: int
    systematics: str  # none | default | an absolute YAML path
    systematics_record: Any
    software_version: str
    site: str

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def batch_indices(self, batch: int) -> range:
        return range(batch * self.batch_size, min(self.n, (batch + 1) * self.batch_size))

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": REQUEST_SCHEMA,
            "source": self.source.as_dict(),
            "n": self.n,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "systematics": self.systematics,
            "systematics_record": self.systematics_record,
            "software_version": self.software_version,
            "site": self.site,
        }

    @property
    def digest(self) -> str:
        """What a batch file must match to be reused: everything but the software version and site."""
        doc = self.as_dict()
        doc.pop("software_version")
        doc.pop("site")
        return digest_of(doc)


def read_request(caldir: str | Path) -> Request:
    path = Path(caldir) / REQUEST_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing (not a calibration directory?)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the calibration request ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or doc.get("schema") != REQUEST_SCHEMA:
        raise InputError(f"{path}: not a {REQUEST_SCHEMA} file")
    try:
        return Request(
            source=source_from_dict(doc["source"]),
            n=int(doc["n"]),
            batch_size=int(doc["batch_size"]),
            seed=int(doc["seed"]),
            systematics=str(doc["systematics"]),
            systematics_record=doc.get("systematics_record"),
            software_version=str(doc.get("software_version", "")),
            site=str(doc.get("site", "local")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: bad calibration request ({exc})") from None


def batch_file(caldir: Path, batch: int) -> Path:
    return caldir / BATCH_DIR / f"batch-{batch:04d}.json"


def batch_node_name(batch: int) -> str:
    return f"batch-{batch:04d}"


def calibration_workflow(n_batches: int, retries: int) -> Workflow:
    """One job per batch (RETRY, never after exit 2: bad input), the collect job as their only child."""
    wf = Workflow(getenv=("SKYSCAN_PYTHON", "SKYSCAN_SETUP"))
    wf.add_job(COLLECT_NODE, COLLECT_SUB, retries=retries or None,
               retry_unless_exit=BAD_INPUT_EXIT if retries else None)  # fmt: skip
    for b in range(n_batches):
        name = batch_node_name(b)
        wf.add_job(name, BATCH_SUB, vars={"batch": str(b)}, retries=retries or None,
                   retry_unless_exit=BAD_INPUT_EXIT if retries else None)  # fmt: skip
        wf.add_edge(name, COLLECT_NODE)
    return wf


def _submit_text(what: str, arguments: str, site: Any, config: Any, batch_name: str) -> str:
    from skyscan.condor.submit import check_submit, render_template, submit_macros

    macros = submit_macros("merge", site, config, batch_name, None)
    template = _SUBMIT_TEMPLATE.format(what=what, wrapper=WRAPPER, arguments=arguments, logs=LOGS_DIR)
    text = render_template(template, macros, what)
    check_submit(text, what)
    return text


def write_caldir(caldir: Path, request: Request, retries: int = 2) -> None:
    """Write (or rewrite, when resuming) every file of the calibration graph; refuses a different request."""
    from skyscan.condor.dagwriter import dag_text
    from skyscan.settings.scan import load_config
    from skyscan.settings.site import load_site

    caldir.mkdir(parents=True, exist_ok=True)
    req_path = caldir / REQUEST_FILE
    if req_path.is_file():
        old = read_request(caldir)
        if old.digest != request.digest:
            raise InputError(
                f"{caldir}: holds a different calibration (other source, N, seed or systematics); "
                "use another -o CALDIR"
            )
    (caldir / BATCH_DIR).mkdir(exist_ok=True)
    (caldir / LOGS_DIR).mkdir(exist_ok=True)
    write_json(req_path, request.as_dict())
    site = load_site(request.site)
    scan_config = Path(request.source.scandir) / "config.yaml"
    config = load_config(scan_config if scan_config.is_file() else None)
    name = f"calibrate-{request.source.run_id}-{request.source.event_id}"
    write_text(caldir / BATCH_SUB, _submit_text(BATCH_SUB, "batch . $(batch)", site, config, name))
    write_text(caldir / COLLECT_SUB, _submit_text(COLLECT_SUB, "collect .", site, config, name))
    wrapper = caldir / WRAPPER
    write_text(wrapper, _WRAPPER_TEXT)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    header = (
        f"# skyscan calibration DAG: {request.n} pseudo-events of run {request.source.run_id} event "
        f"{request.source.event_id} in {request.n_batches} batches, then collect.\n"
        "# Written by skyscan calibrate; regenerate it rather than editing it (docs/containment.md).\n"
    )
    write_text(caldir / CALIBRATION_DAG, dag_text(calibration_workflow(request.n_batches, retries), header))


def node_environment(site_name: str) -> dict[str, str]:
    """SKYSCAN_PYTHON / SKYSCAN_SETUP for the local executor and DAGMan (the submit host's interpreter)."""
    from skyscan.condor.schedd import submit_environment
    from skyscan.settings.site import load_site

    env = submit_environment(load_site(site_name), None)
    env.setdefault("SKYSCAN_PYTHON", sys.executable)
    return env


__all__ = [
    "BATCH_SCHEMA",
    "CALIBRATION_DAG",
    "CALIBRATION_FILE",
    "COLLECT_NODE",
    "DEFAULT_BATCH_SIZE",
    "REQUEST_FILE",
    "REQUEST_SCHEMA",
    "Request",
    "batch_file",
    "calibration_workflow",
    "node_environment",
    "read_request",
    "write_caldir",
]
