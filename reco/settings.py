"""Reconstruction settings: the ``reco:`` section of the scan configuration."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from skyscan.reco.errors import InputError


@dataclass(frozen=True)
class RecoSettings:
    """Knobs of the per-pixel fit; defaults suit the built-in ic86 geometry."""

    noise_rate_hz: float = 500.0  # per-DOM dark rate assumed by the noise floor
    jitter_ns: float = 3.0  # PMT transit-time jitter (Gaussian sigma)
    use_hit_no_hit: bool = True
    use_mpe: bool = True
    max_iterations: int = 200
    # -ln L by the compiled kernel (skyscan.reco.kernel, numba) instead of numpy: the same numbers, faster per
    # pixel. False here keeps library callers on the numpy reference; a scan configuration defaults to True
    # (skyscan.settings.scan: scan nodes run in warm processes, docs/likelihood.md)
    compiled_kernel: bool = False

    @classmethod
    def from_mapping(cls, raw: Any) -> RecoSettings:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise InputError("reco: expected a mapping")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in known:
                raise InputError(f"reco.{key}: unknown setting (known: {', '.join(known)})")
            default = getattr(cls(), key)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InputError(f"reco.{key}: expected true or false")
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise InputError(f"reco.{key}: expected a positive integer")
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise InputError(f"reco.{key}: expected a finite number")
                if value < 0 or (key == "jitter_ns" and value == 0):
                    raise InputError(f"reco.{key}: must be positive")
                value = float(value)
            values[key] = value
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        return asdict(self)
