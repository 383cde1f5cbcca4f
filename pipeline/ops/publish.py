"""Publishing a done scan: its products copied into the outbox folder of the alert, replaced whole.

Downstream systems read ``<outbox>/<alert name>/``; the folder is assembled beside it and renamed into place,
so a reader sees the previous complete set of products or the new one, never a mixture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from skyscan.graph.layout import ScanLayout
from skyscan.products.summary import PRODUCT_FILES

__all__ = ["PLOTS_DIR", "PRODUCT_KEYS", "publish_outbox"]

#: The products copied to the outbox (``PRODUCT_FILES`` keys), besides the plots.
PRODUCT_KEYS = ("summary", "circular", "notice")
#: The folder of the plot products; every ``*.png`` in it is published.
PLOTS_DIR = str(PurePosixPath(PRODUCT_FILES["plot_fullsky"]).parent)


def publish_outbox(outdir: Path, dest: Path) -> list[str]:
    """Copy circular, notice, summary and plots into ``dest`` (replaced whole); return the missing products."""
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
