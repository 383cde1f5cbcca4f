"""Read what DAGMan writes while it runs: the node status file and the jobstate log.

Both are DAGMan's formats, not skyscan's: this module knows nothing about skyscan's node names or buckets
beyond the table that maps DAGMan's NodeStatus codes onto them. ``skyscan.graph.status`` turns the parsed
files into a scan's progress.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["CONDOR_NODE_STATES", "parse_jobstate_log", "parse_node_status"]

#: DAGMan's NodeStatus codes (node status file) -> skyscan's buckets. FUTILE nodes (an ancestor failed) never
#: run: they stay "waiting" and the scan's state says "failed".
CONDOR_NODE_STATES = {
    0: "waiting",  # STATUS_NOT_READY
    1: "waiting",  # STATUS_READY
    2: "running",  # STATUS_PRERUN
    3: "running",  # STATUS_SUBMITTED
    4: "running",  # STATUS_POSTRUN
    5: "done",  # STATUS_DONE
    6: "failed",  # STATUS_ERROR
    7: "waiting",  # STATUS_FUTILE
}
_JOBSTATE = re.compile(r"^(\d+)\s+INTERNAL\s+\*\*\*\s+(DAGMAN_STARTED|DAGMAN_FINISHED)\s+(\S+)")


def parse_node_status(text: str) -> tuple[dict[str, Any] | None, dict[str, int]]:
    """DAGMan's node status file -> (the DagStatus ad, {node: NodeStatus code}).

    Reads the ClassAd form (with /* comments */) and the JSON form; the ad type is in ``Type`` (newer
    DAGMan) or ``MyType``. A file being rewritten may be partial: what parses is used.
    """
    ads: list[dict[str, Any]] = []
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("[{"):
        ads = _json_ads(stripped)
    else:
        import classad2

        try:
            for ad in classad2.parseAds(text):
                ads.append({str(k): _plain(v) for k, v in ad.items()})
        except Exception:  # a truncated file: keep the complete ads before the damage
            pass
    dag_ad: dict[str, Any] | None = None
    nodes: dict[str, int] = {}
    for ad in ads:
        kind = ad.get("Type", ad.get("MyType"))
        if kind == "DagStatus":
            dag_ad = ad
        elif kind == "NodeStatus" and isinstance(ad.get("Node"), str):
            try:
                nodes[ad["Node"]] = int(ad.get("NodeStatus", 0))
            except (TypeError, ValueError):
                continue
    return dag_ad, nodes


def _plain(value: Any) -> Any:
    """A ClassAd value as plain JSON-like Python (expressions become their text)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def _json_ads(text: str) -> list[dict[str, Any]]:
    """The ads of the JSON form: one document, or (while DAGMan rewrites it) whatever lines parse."""
    try:
        doc = json.loads(text)
        return [ad for ad in (doc if isinstance(doc, list) else [doc]) if isinstance(ad, dict)]
    except ValueError:
        pass
    ads = []
    for line in text.splitlines():
        line = line.strip().rstrip(",")
        if line.startswith("{"):
            try:
                ad = json.loads(line)
            except ValueError:
                continue
            if isinstance(ad, dict):
                ads.append(ad)
    return ads


def parse_jobstate_log(text: str) -> tuple[int | None, int | None, int | None]:
    """(last DAGMAN_STARTED time, last DAGMAN_FINISHED time, its exit status) from a jobstate log (Unix seconds)."""
    started = finished = status = None
    for line in text.splitlines():
        m = _JOBSTATE.match(line.strip())
        if not m:
            continue
        when = int(m.group(1))
        if m.group(2) == "DAGMAN_STARTED":
            started = when
        else:
            finished = when
            try:
                status = int(m.group(3))
            except ValueError:
                status = None
    return started, finished, status
