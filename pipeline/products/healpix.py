"""healpy for the products, imported without its plotting half where nothing is plotted.

healpy's package imports matplotlib (for ``mollview`` and friends) whenever matplotlib is installed: about a
quarter of a second of a merge's CPU time, and the merge process itself draws nothing (its plots are drawn in a
child process, ``skyscan.products.write``). The products use only the pixel functions, so :func:`healpy` imports
the package with matplotlib hidden from it; matplotlib itself imports normally afterwards. Where matplotlib is
imported already, or healpy is, the package is imported as usual.
"""

from __future__ import annotations

import sys
from typing import Any


def healpy() -> Any:
    """The healpy module (pixel functions only when this process had not imported matplotlib before it)."""
    module = sys.modules.get("healpy")
    if module is not None:
        return module
    if "matplotlib" in sys.modules:
        import healpy as hp

        return hp
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # `import matplotlib` raises ImportError
    try:
        import healpy as hp
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]
    return hp


__all__ = ["healpy"]
