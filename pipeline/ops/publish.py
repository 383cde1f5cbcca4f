"""Publishing a done scan: its products copied into the outbox folder of the alert, replaced whole.

Downstream systems read ``<outbox>/<alert name>/``; the folder is assembled beside it and renamed into place,
so a reader sees the previous complete set of products or the new one, never a mixture.

With an outbox base URL (the address at which the outbox folder is served), the multi-order FITS map is
published too and the published notice.json gains ``healpix_url``, ``<base>/<alert name>/skymap.multiorder.fits``
(docs/gcn-drafts.md): only the outbox knows where the map can be downloaded, so the scan's own notice has none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from skyscan.atomic import write_json
from skyscan.graph.layout import ScanLayout
from skyscan.products.summary import PRODUCT_FILES

__all__ = ["BASE_URL_ENV", "PLOTS_DIR", "PRODUCT_KEYS", "publish_outbox"]

#: The products copied to the outbox (``PRODUCT_FILES`` keys), besides the plots.
PRODUCT_KEYS = ("summary", "circular", "notice")
#: The folder of the plot products; every ``*.png`` in it is published.
PLOTS_DIR = str(PurePosixPath(PRODUCT_FILES["plot_fullsky"]).parent)
#: The environment variable that gives the outbox base URL when the caller passes none.
BASE_URL_ENV = "SKYSCAN_OUTBOX_BASE_URL"


def _publish_map(layout: ScanLayout, tmp: Path, base_url: str, folder: str, missing: list[str]) -> None:
    """Copy the multi-order map and write the notice with its ``healpix_url`` (both inside ``tmp``)."""
    from skyscan.products.gcn import NOTICE_FIELDS, healpix_url

    fits_name = PRODUCT_FILES["multiorder_fits"]
    if not layout.product("multiorder_fits").is_file():
        missing.append(fits_name)
        return
    shutil.copy2(layout.product("multiorder_fits"), tmp / fits_name)
    notice_path = tmp / PRODUCT_FILES["notice"]
    if not notice_path.is_file():
        return
    doc = json.loads(notice_path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        return
    doc["healpix_url"] = healpix_url(base_url, folder, fits_name)
    ordered = {k: doc[k] for k in NOTICE_FIELDS if k in doc} | {k: v for k, v in doc.items() if k not in NOTICE_FIELDS}
    write_json(notice_path, ordered)


def publish_outbox(outdir: Path, dest: Path, base_url: str | None = None,
                   extra: Mapping[str, Any] | None = None) -> list[str]:
    """Copy circular, notice, summary and plots into ``dest`` (replaced whole); return the missing products.

    ``base_url`` (else the environment variable ``SKYSCAN_OUTBOX_BASE_URL``; empty: none) is the address at
    which the outbox is served: then the multi-order map is published too and the published notice gets its
    ``healpix_url``. A malformed base URL is an InputError, raised before anything is copied. ``extra`` maps
    file names to JSON documents written into the folder with the products (a re-issue's ``reissue.json``), so
    a reader sees them together with the products they describe, never apart.
    """
    from skyscan.products.gcn import healpix_url

    given = base_url if base_url is not None else os.environ.get(BASE_URL_ENV, "")
    base = given.strip() or None
    if base is not None:
        healpix_url(base, dest.name)  # validates it
    layout = ScanLayout.at(outdir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    missing = []
    try:
        for key in PRODUCT_KEYS:
            name = PRODUCT_FILES[key]
            if layout.product(key).is_file():
                shutil.copy2(layout.product(key), tmp / name)
            else:
                missing.append(name)
        plots = sorted((layout.root / PLOTS_DIR).glob("*.png"))
        if plots:
            (tmp / PLOTS_DIR).mkdir()
            for plot in plots:
                shutil.copy2(plot, tmp / PLOTS_DIR / plot.name)
        else:
            missing.append(f"{PLOTS_DIR}/*.png")
        if base is not None:
            _publish_map(layout, tmp, base, dest.name, missing)
        for name, doc in (extra or {}).items():
            if PurePosixPath(name).name != name or name.startswith("."):
                raise ValueError(f"publish_outbox: extra file {name!r} is not a plain file name")
            write_json(tmp / name, doc)
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return missing
