"""The ``merge:`` section of the scan configuration.

Separate from :mod:`skyscan.nodes.merge` so that validating a configuration does not import healpy,
matplotlib and astropy.io.fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skyscan.errors import InputError

MAX_FLAT_NSIDE = 2048
AUTO_FLAT_NSIDE_CAP = 512


@dataclass
class MergeOptions:
    """The `merge:` section of the configuration (all keys optional)."""

    flat_nside: int | None = None  # None: the finest nside of the map, at most AUTO_FLAT_NSIDE_CAP
    plots: bool = True
    zoom_plot: bool = True
    circular_template: str | None = None  # a path; relative paths are relative to OUTDIR


_OPTION_KEYS = ("flat_nside", "plots", "zoom_plot", "circular_template")


def merge_options(config: Mapping[str, Any]) -> MergeOptions:
    """Validated `merge:` options of a configuration mapping; unknown keys are rejected (they are likely typos)."""
    raw = config.get("merge")
    if raw is None:
        return MergeOptions()
    if not isinstance(raw, Mapping):
        raise InputError("config merge: expected a mapping of options")
    unknown = sorted(str(k) for k in raw if k not in _OPTION_KEYS)
    if unknown:
        raise InputError(f"config merge.{unknown[0]}: unknown option (known: {', '.join(_OPTION_KEYS)})")
    opts = MergeOptions()
    if "flat_nside" in raw and raw["flat_nside"] not in (None, "auto"):
        value = raw["flat_nside"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value & (value - 1):
            raise InputError(f"config merge.flat_nside: must be 'auto' or a power of two, got {value!r}")
        if value > MAX_FLAT_NSIDE:
            raise InputError(f"config merge.flat_nside: at most {MAX_FLAT_NSIDE}, got {value}")
        opts.flat_nside = value
    for key in ("plots", "zoom_plot"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise InputError(f"config merge.{key}: expected true or false, got {raw[key]!r}")
            setattr(opts, key, raw[key])
    if raw.get("circular_template") is not None:
        if not isinstance(raw["circular_template"], str) or not raw["circular_template"]:
            raise InputError("config merge.circular_template: expected a file path")
        opts.circular_template = raw["circular_template"]
    return opts
