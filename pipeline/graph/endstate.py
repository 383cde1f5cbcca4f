"""end_state.json (schema ``skyscan-end-state/1``): how a scan's DAG ended, as its FINAL node recorded it.

The FINAL node (``skyscan.nodes.final``) writes the document; ``skyscan status``, ``skyscan run`` and campaigns
read it here, below the node layer, so the schema has one owner that every reader can import.
"""

from __future__ import annotations

import json
import os
from typing import Any

from skyscan.graph.layout import ScanLayout

END_STATE_SCHEMA = "skyscan-end-state/1"


def read_end_state(outdir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The end state recorded in ``outdir``; None when there is none yet, or it is unreadable or of another schema."""
    path = ScanLayout.at(outdir).end_state
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == END_STATE_SCHEMA else None
