"""``skyscan catalog export``: a citable snapshot of the catalog, with the done scans' skymaps and a manifest.

The snapshot holds ``catalog.csv``, ``catalog.json`` (``skyscan-catalog/1``), ``skymaps/`` and
``manifest.json`` (``skyscan-catalog-manifest/1``: every file with its size and sha256). An alert whose rescan was
cancelled keeps its done scan (and its skymaps); the rows and the manifest name the cancelled scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from skyscan.errors import InputError
from skyscan.graph.layout import ScanLayout
from skyscan.ops.catalog.listing import CATALOG_SCHEMA, catalog_document, catalog_rows, format_csv, software_record
from skyscan.products.summary import PRODUCT_FILES
from skyscan.timestamps import utcnow

__all__ = ["MANIFEST_SCHEMA", "SKYMAP_PRODUCTS", "export_catalog"]

MANIFEST_SCHEMA = "skyscan-catalog-manifest/1"
#: The merge products (``PRODUCT_FILES`` keys) a snapshot carries for each done scan.
SKYMAP_PRODUCTS = ("multiorder_fits", "skymap_h5")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_entry(root: Path, rel: Path | str) -> dict[str, Any]:
    """A manifest entry: the file's path in the snapshot, its size (bytes) and its sha256."""
    path = root / rel
    return {"path": Path(rel).as_posix(), "bytes": path.stat().st_size, "sha256": _sha256_file(path)}


def _copy_skymaps(rows: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """Copy the done scans' skymaps into ``tmp/skymaps`` as ``<alert>-s<scan id>.<extension>``."""
    included: list[dict[str, Any]] = []
    for row in rows:
        if row["state"] != "done" or not row["outdir"]:
            continue
        layout = ScanLayout.at(row["outdir"])
        for key in SKYMAP_PRODUCTS:
            name = PRODUCT_FILES[key]
            source = layout.product(key)
            if not source.is_file():
                continue
            rel = Path("skymaps") / f"{row['alert']}-s{row['scan_id']}.{name.split('.', 1)[1]}"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp / rel)
            entry = _file_entry(tmp, rel)
            item = {"alert": row["alert"], "scan_id": row["scan_id"], "kind": name, **entry}
            if row.get("cancelled_scan_id") is not None:  # a later rescan was cancelled: this done scan stands
                item["cancelled_scan_id"] = row["cancelled_scan_id"]
            included.append(item)
    return included


def export_catalog(conn: sqlite3.Connection, outdir: str | os.PathLike[str], *, since: str | None = None,
                   state: str | None = None, all_revisions: bool = False, skymaps: bool = True) -> Path:
    """Write a citable snapshot: catalog.csv, catalog.json, the done scans' skymaps and manifest.json.

    The snapshot is assembled in a hidden sibling folder and renamed into place, so ``outdir`` either
    holds a complete snapshot or nothing. ``outdir`` must not exist or be empty.
    """
    final = Path(outdir)
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise InputError(f"{final}: exists and is not an empty folder (an export never overwrites)")
    rows = catalog_rows(conn, since=since, state=state, all_revisions=all_revisions)
    created = utcnow()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent))
    try:
        included = _copy_skymaps(rows, tmp) if skymaps else []
        (tmp / "catalog.csv").write_text(format_csv(rows), encoding="utf-8")
        (tmp / "catalog.json").write_text(json.dumps(catalog_document(rows, created), indent=1) + "\n",
                                          encoding="utf-8")
        manifest = {
            "schema": MANIFEST_SCHEMA,
            "catalog_schema": CATALOG_SCHEMA,
            "created": created,
            "software": software_record(),
            "selection": {"since": since, "state": state, "all_revisions": all_revisions},
            "rows": len(rows),
            "files": [_file_entry(tmp, name) for name in ("catalog.csv", "catalog.json")],
            "skymaps": included,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            final.rmdir()
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
