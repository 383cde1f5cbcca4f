"""Containment levels in 2*delta-llh: the named sets and the parser of user specifications.

Kept apart from :mod:`skyscan.products.containment` (which needs healpy) so that configuration
validation stays cheap to import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from skyscan.errors import InputError

LEVELS: dict[str, dict[str, float]] = {
    # Wilks' theorem for 2 degrees of freedom: chi2 quantiles at 50% and 90%.
    "wilks": {"50": 1.39, "90": 4.61},
    # IceCube's levels calibrated with simulations of the IC160427A event (much wider than Wilks).
    "calibrated": {"50": 22.2, "90": 64.2},
}

LevelSpec = str | float | Mapping[str, float] | Sequence[float]

PRODUCT_LABELS = ("50", "90")


def check_product_levels(spec: LevelSpec) -> tuple[str, dict[str, float]]:
    """(method, levels with at least the labels '50' and '90') of a specification, as every merge needs them.

    Named sets and mappings must provide those labels; two bare numbers are the 50% and the 90% level (the smaller
    first). Cheap (no healpy): `skyscan run` and `submit` call it before anything is scanned.
    """
    levels = resolve_levels(spec)
    if isinstance(spec, str) and spec.strip().lower() in LEVELS:
        method = spec.strip().lower()
    else:
        method = "explicit"
    if all(label in levels for label in PRODUCT_LABELS):
        return method, levels
    if not isinstance(spec, Mapping) and len(levels) == 2:
        low, high = sorted(levels.values())
        return method, {"50": low, "90": high}
    raise InputError(
        f"containment {spec!r}: give the 50% and 90% levels (a name such as 'wilks', two numbers like '1.39,4.61', "
        "or a mapping with keys 50 and 90)"
    )


def level_value(value: Any, where: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise InputError(f"containment level {where} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"containment level {where} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0.0 or (number == 0.0 and not allow_zero):
        raise InputError(f"containment level {where} must be a positive finite 2*delta-llh, got {value!r}")
    return number


def resolve_levels(spec: LevelSpec) -> dict[str, float]:
    """Containment levels (label -> 2*delta-llh) from a name in LEVELS, "1.39,4.61", one number, a list or a mapping."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in LEVELS:
            return dict(LEVELS[text.lower()])
        parts = [p.strip() for p in text.split(",")]
        if not text or any(not p for p in parts):
            raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise InputError(
                f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'"
            ) from None
        return {f"{v:g}": level_value(v, repr(p)) for v, p in zip(numbers, parts, strict=True)}
    if isinstance(spec, Mapping):
        if not spec:
            raise InputError("containment levels: the mapping is empty")
        return {str(k): level_value(v, repr(k)) for k, v in spec.items()}
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        value = level_value(spec, repr(spec))
        return {f"{value:g}": value}
    if isinstance(spec, Sequence) and not isinstance(spec, (bytes, bytearray)):
        if len(spec) == 0:
            raise InputError("containment levels: the list is empty")
        values = [level_value(v, repr(v)) for v in spec]
        return {f"{v:g}": v for v in values}
    raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '1.39,4.61'")
