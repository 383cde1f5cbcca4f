"""The submission record: what ``skyscan submit`` leaves in the scan directory once DAGMan has the DAG.

``OUTDIR/submission.json`` (schema ``skyscan-submission/1``) names the DAGMan job: its cluster id, the
schedd holding it, the batch name and the time of the submission. It is written atomically after each
successful submit (a resubmission replaces it), so the alert watcher reads the cluster id from a document
instead of from the command's human output. :func:`cluster_from_text` remains for a custom
``submit_command`` that prints a cluster id but writes no record.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json
from skyscan.errors import InputError
from skyscan.timestamps import utcnow

__all__ = [
    "SUBMISSION_FILE",
    "SUBMISSION_SCHEMA",
    "Submission",
    "cluster_from_text",
    "read_submission",
    "record_submission",
    "submission_path",
]

SUBMISSION_FILE = "submission.json"
SUBMISSION_SCHEMA = "skyscan-submission/1"


@dataclass(frozen=True)
class Submission:
    """One submission of a scan directory's DAG to HTCondor."""

    cluster_id: int  # the DAGMan job's cluster id
    schedd: str  # the schedd holding the job: the submit host, whose local schedd skyscan submits to
    batch_name: str  # JobBatchName of the DAGMan job and its node jobs
    submitted: str  # UTC ISO 8601, whole seconds, trailing Z

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SUBMISSION_SCHEMA,
            "cluster_id": self.cluster_id,
            "schedd": self.schedd,
            "batch_name": self.batch_name,
            "submitted": self.submitted,
        }

    @classmethod
    def from_json(cls, doc: Any, where: str = SUBMISSION_FILE) -> Submission:
        """Check a parsed record; InputError naming ``where`` if it is not a ``skyscan-submission/1`` document."""
        if not isinstance(doc, dict) or doc.get("schema") != SUBMISSION_SCHEMA:
            raise InputError(f"{where}: not a {SUBMISSION_SCHEMA} document")
        cluster = doc.get("cluster_id")
        if isinstance(cluster, bool) or not isinstance(cluster, int) or cluster < 0:
            raise InputError(f"{where}: cluster_id: expected a non-negative integer, got {cluster!r}")
        texts = {key: doc.get(key) for key in ("schedd", "batch_name", "submitted")}
        for key, value in texts.items():
            if not isinstance(value, str):
                raise InputError(f"{where}: {key}: expected a string, got {value!r}")
        return cls(cluster_id=cluster, schedd=str(texts["schedd"]), batch_name=str(texts["batch_name"]),
                   submitted=str(texts["submitted"]))


def submission_path(outdir: str | os.PathLike[str]) -> Path:
    return Path(outdir) / SUBMISSION_FILE


def record_submission(outdir: str | os.PathLike[str], cluster_id: int, batch_name: str, *,
                      schedd: str | None = None, submitted: str | None = None) -> Submission:
    """Write ``OUTDIR/submission.json`` atomically; ``schedd`` defaults to this host (its local schedd)."""
    record = Submission(cluster_id=int(cluster_id), schedd=schedd or socket.gethostname(), batch_name=batch_name,
                        submitted=submitted or utcnow())
    write_json(submission_path(outdir), record.as_json())
    return record


def read_submission(outdir: str | os.PathLike[str]) -> Submission | None:
    """The scan directory's submission record; None if there is none, InputError if it is unreadable."""
    path = submission_path(outdir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the submission record ({exc.__class__.__name__})") from None
    try:
        doc = json.loads(text)
    except ValueError:
        raise InputError(f"{path}: not valid JSON") from None
    return Submission.from_json(doc, str(path))


def cluster_from_text(text: str) -> int | None:
    """The DAGMan job's cluster id in the output of ``skyscan submit`` (or of condor_submit_dag)."""
    found = re.findall(r"(?:DAGMan job|cluster)\s+(\d+)", text, flags=re.IGNORECASE)
    return int(found[-1]) if found else None
