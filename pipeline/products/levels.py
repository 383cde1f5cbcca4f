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
    """Containment levels (label -> 2*delta-llh) from a name in LEVELS, "2.3,5.9", one number, a list or a mapping."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() in LEVELS:
            return dict(LEVELS[text.lower()])
        parts = [p.strip() for p in text.split(",")]
        if not text or any(not p for p in parts):
            raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '2.3,5.9'")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise InputError(
                f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '2.3,5.9'"
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
    raise InputError(f"containment levels {spec!r}: use {' or '.join(LEVELS)} or numbers like '2.3,5.9'")
