"""The FINAL node's PRE script (``skyscan node final``): record how the DAG ended in end_state.json.

DAGMan expands ``$DAG_STATUS`` and ``$FAILED_COUNT`` in scripts only, so the PRE script is where the outcome can
be written. The document's schema and its reader are ``skyscan.graph.endstate`` (status, runs and campaigns read
it below this layer); this module is its one writer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from skyscan.atomic import write_json
from skyscan.errors import InputError
from skyscan.graph.endstate import END_STATE_SCHEMA
from skyscan.graph.layout import ScanLayout
from skyscan.timestamps import utcnow


def end_state(dag_status: int, failed_count: int) -> dict[str, Any]:
    """The end_state.json document: done only when DAGMan reports success and no node failed."""
    state = "done" if dag_status == 0 and failed_count == 0 else "failed"
    return {
        "schema": END_STATE_SCHEMA,
        "state": state,
        "dag_status": dag_status,
        "failed_count": failed_count,
        "time": utcnow(),
    }


def write_end_state(outdir: str | os.PathLike[str], dag_status: int, failed_count: int) -> dict[str, Any]:
    """`skyscan node final`: record how the DAG ended (end_state.json)."""
    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    doc = end_state(dag_status, failed_count)
    write_json(ScanLayout(folder).end_state, doc)
    return doc
