"""Detector and ice systematics of the simulator: seeded variations the likelihood does not know.

The likelihood (docs/likelihood.md) assumes one fixed light model: bulk-ice Pandel delays with
lambda = 33.3 m and lambda_a = 98 m, the nominal DOM efficiencies, one noise rate and a 3 ns PMT jitter.
A simulator that uses the very same model makes the likelihood look better than it is on real ice. A
:class:`Systematics` describes how far the *simulated* detector may depart from that model; :meth:`Systematics.draw`
turns it into the concrete values of one event (:class:`DrawnSystematics`), which
:func:`skyscan.reco.simulate.simulate_track` applies and records in the event's truth.

This is an approximate, illustrative detector model (docs/simulation.md, section "Systematics"), not IceCube's
ice model: its purpose is an honest, reproducible mismatch between simulation and reconstruction, so that error
regions can be calibrated against it.

Every scale factor is drawn from a log-normal distribution with mean exactly 1 and standard deviation exactly the
configured fraction (always positive, close to a Gaussian for spreads of 10-20 %). The draws of one event always
consume the same random numbers in the same order, whatever the spreads are, so changing one spread leaves the
others' draws of a seed unchanged.

Pure: no files are written here; :func:`load_systematics` reads a YAML file through the untrusted-text rules of
:mod:`skyscan.reco.untrusted`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from skyscan.reco import photonics as ph
from skyscan.reco import untrusted
from skyscan.reco.errors import InputError

FloatArray = npt.NDArray[np.float64]

SCHEMA = "skyscan-systematics/1"
DELAY_MODELS = ("pandel", "two_component")
MAX_SPREAD = 1.0
"""Largest accepted spread (a fraction): beyond 100 % the variation no longer describes a detector."""
MAX_JITTER_NS = 50.0

# --- the two-component photon-delay model (the simulator's own constants; the likelihood never sees them) ---------
DIRECT_LENGTH_M = 25.0
"""Distance scale (m of effective distance) over which the unscattered ("direct") fraction of the light falls:
f_direct = exp(-d_eff / DIRECT_LENGTH_M)."""
DIRECT_MEAN_NS = 1.5
"""Mean (ns) of the exponential delay of direct photons: narrow, from small deviations of the photon path."""
SCATTER_LENGTH_M = 50.0
"""Scattered photons: gamma shape 1 + d_eff / SCATTER_LENGTH_M (at least 1: no divergence at zero delay)."""
SCATTER_TAU_NS = 300.0
"""Scattered photons: gamma rate 1/SCATTER_TAU_NS + c_ice / absorption length (absorption cuts long delays)."""


def _jitter(value: Any) -> tuple[float, float] | None:
    """``null`` (the track's own), one number (fixed) or ``[low, high]`` (uniform per event), ns."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value, value]
    if len(items) != 2:
        raise InputError(f"jitter_ns: expected a number or [LOW, HIGH] (ns), got {untrusted.shown(value)}")
    out: list[float] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise InputError(f"jitter_ns: expected finite numbers (ns), got {untrusted.shown(value)}")
        out.append(float(item))
    return out[0], out[1]


@dataclass(frozen=True)
class Systematics:
    """The spread of each variation of the simulated detector (fractions, except the jitter in ns).

    * ``absorption_scale_sigma``: spread of the absorption-length scale a (one per event). It shortens or lengthens
      the light's attenuation length and the absorption term of the delay distribution.
    * ``scattering_scale_sigma``: spread of the scattering-length scale s (one per event): the delay distribution's
      distance scale (Pandel lambda, or the two-component model's lengths) and, with a, the attenuation length.
    * ``efficiency_sigma``: spread of one overall efficiency factor of every DOM (one per event).
    * ``dom_efficiency_sigma``: spread of an independent efficiency factor per DOM (drawn anew for each event).
    * ``noise_rate_sigma``: spread of one factor on the dark-noise rate of the event.
    * ``jitter_ns``: the PMT jitter sigma (ns) is drawn uniformly from this (low, high) range per event; ``None``
      keeps the track's own jitter (3 ns, the likelihood's).
    * ``delay_model``: ``"pandel"`` (the likelihood's shape) or ``"two_component"`` (a direct + scattered
      mixture with constants of its own, see this module's constants).
    """

    absorption_scale_sigma: float = 0.0
    scattering_scale_sigma: float = 0.0
    efficiency_sigma: float = 0.0
    dom_efficiency_sigma: float = 0.0
    noise_rate_sigma: float = 0.0
    jitter_ns: tuple[float, float] | None = None
    delay_model: str = "pandel"

    def __post_init__(self) -> None:
        if self.jitter_ns is not None:  # any pair of numbers becomes a tuple of floats (hashable, comparable)
            object.__setattr__(self, "jitter_ns", _jitter(list(self.jitter_ns)))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad value."""
        for name in _SPREADS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name}: expected a finite number, got {untrusted.shown(value)}")
            if not 0.0 <= value <= MAX_SPREAD:
                raise InputError(f"{name}: must lie in [0, {MAX_SPREAD:g}] (a fraction), got {value!r}")
        if self.jitter_ns is not None:
            lo, hi = self.jitter_ns
            if not (math.isfinite(lo) and math.isfinite(hi)) or not 0.0 <= lo <= hi <= MAX_JITTER_NS:
                raise InputError(f"jitter_ns: need 0 <= LOW <= HIGH <= {MAX_JITTER_NS:g} ns, got {lo!r} {hi!r}")
        if self.delay_model not in DELAY_MODELS:
            raise InputError(
                f"delay_model: must be one of {', '.join(DELAY_MODELS)}, got {untrusted.shown(self.delay_model)}"
            )

    @property
    def is_null(self) -> bool:
        """True when nothing varies: the simulator then behaves exactly as without systematics."""
        return self == NO_SYSTEMATICS

    @property
    def label(self) -> str:
        """A few words for log lines and summaries: 'none', 'default', or the spreads and the delay model."""
        if self.is_null:
            return "none"
        if self == DEFAULT_SYSTEMATICS:
            return "default"
        jitter = "track's own" if self.jitter_ns is None else f"{self.jitter_ns[0]:g}-{self.jitter_ns[1]:g} ns"
        return (
            f"absorption {self.absorption_scale_sigma:g}, scattering {self.scattering_scale_sigma:g}, "
            f"efficiency {self.efficiency_sigma:g}, per-DOM {self.dom_efficiency_sigma:g}, "
            f"noise {self.noise_rate_sigma:g}, jitter {jitter}, {self.delay_model} delays"
        )

    def to_dict(self) -> dict[str, Any]:
        """The document form (``skyscan-systematics/1``), as :func:`load_systematics` reads it back."""
        doc: dict[str, Any] = {"schema": SCHEMA}
        for name in _SPREADS:
            doc[name] = float(getattr(self, name))
        doc["jitter_ns"] = None if self.jitter_ns is None else [float(self.jitter_ns[0]), float(self.jitter_ns[1])]
        doc["delay_model"] = self.delay_model
        return doc

    def draw(self, rng: np.random.Generator, n_doms: int) -> DrawnSystematics:
        """The concrete values for one event, from its random stream.

        Always consumes, in this order: five standard normals (absorption, scattering, efficiency, noise; one
        unused spare kept for future variations), one uniform (jitter) and one 63-bit integer (the seed of the
        per-DOM efficiencies), whatever the spreads are.
        """
        if n_doms < 0:
            raise InputError(f"n_doms: must be >= 0, got {n_doms}")
        z = rng.standard_normal(5)
        u = float(rng.uniform())
        dom_seed = int(rng.integers(0, 2**63 - 1))
        jitter = None if self.jitter_ns is None else self.jitter_ns[0] + (self.jitter_ns[1] - self.jitter_ns[0]) * u
        return DrawnSystematics(
            absorption_scale=lognormal_factor(self.absorption_scale_sigma, float(z[0])),
            scattering_scale=lognormal_factor(self.scattering_scale_sigma, float(z[1])),
            efficiency_scale=lognormal_factor(self.efficiency_sigma, float(z[2])),
            noise_rate_scale=lognormal_factor(self.noise_rate_sigma, float(z[3])),
            jitter_ns=jitter,
            delay_model=self.delay_model,
            dom_efficiency_seed=dom_seed,
            dom_efficiency=dom_efficiency_factors(dom_seed, n_doms, self.dom_efficiency_sigma),
            spreads=self,
        )


_SPREADS = ("absorption_scale_sigma", "scattering_scale_sigma", "efficiency_sigma", "dom_efficiency_sigma",
            "noise_rate_sigma")  # fmt: skip
_KEYS = ("schema", "base", *_SPREADS, "jitter_ns", "delay_model")

NO_SYSTEMATICS = Systematics()
"""Nothing varies: the simulator uses the likelihood's own model (today's events, bit for bit)."""

DEFAULT_SYSTEMATICS = Systematics(
    absorption_scale_sigma=0.10,
    scattering_scale_sigma=0.10,
    efficiency_sigma=0.10,
    dom_efficiency_sigma=0.10,
    noise_rate_sigma=0.20,
    jitter_ns=(3.0, 5.0),
    delay_model="two_component",
)
"""The default variations (docs/simulation.md): +-10 % ice lengths and efficiencies, 20 % noise rate, a jitter of
3-5 ns instead of the likelihood's 3 ns and the two-component delay model instead of Pandel."""


@dataclass(frozen=True)
class DrawnSystematics:
    """The values of one event. Scales are factors on the nominal model (1 = the likelihood's value)."""

    absorption_scale: float
    scattering_scale: float
    efficiency_scale: float
    noise_rate_scale: float
    jitter_ns: float | None  # None: the track's own jitter
    delay_model: str
    dom_efficiency_seed: int
    dom_efficiency: FloatArray = field(compare=False, repr=False)  # one factor per DOM, geometry row order
    spreads: Systematics = NO_SYSTEMATICS

    @property
    def attenuation_scale(self) -> float:
        """Factor on the attenuation length of the expected charge: sqrt(a s).

        Diffusion theory gives an attenuation length ~ sqrt(lambda_a lambda_e / 3); the nominal 98 m is scaled
        by the geometric mean of the two drawn scales (an approximation, documented).
        """
        return math.sqrt(self.absorption_scale * self.scattering_scale)

    def to_dict(self) -> dict[str, Any]:
        """What the event's truth records: the drawn values, a summary of the per-DOM factors and the spreads.

        The per-DOM factors themselves are not written (one per DOM); :func:`dom_efficiency_factors` regenerates
        them from ``dom_efficiency_seed``, ``n_doms`` and the spread.
        """
        n = int(self.dom_efficiency.size)
        return {
            "absorption_scale": self.absorption_scale,
            "scattering_scale": self.scattering_scale,
            "efficiency_scale": self.efficiency_scale,
            "noise_rate_scale": self.noise_rate_scale,
            "jitter_ns": self.jitter_ns,
            "delay_model": self.delay_model,
            "dom_efficiency_seed": self.dom_efficiency_seed,
            "n_doms": n,
            "dom_efficiency_mean": float(self.dom_efficiency.mean()) if n else 1.0,
            "dom_efficiency_std": float(self.dom_efficiency.std()) if n else 0.0,
            "spreads": self.spreads.to_dict(),
        }


def lognormal_factor(sigma: float, z: float) -> float:
    """A positive factor with mean 1 and standard deviation ``sigma`` from a standard normal ``z``.

    ln f ~ N(-s^2/2, s^2) with s^2 = ln(1 + sigma^2); exactly 1.0 when sigma is 0.
    """
    if sigma == 0.0:
        return 1.0
    s = math.sqrt(math.log1p(sigma * sigma))
    return math.exp(s * z - 0.5 * s * s)


def dom_efficiency_factors(seed: int, n_doms: int, sigma: float) -> FloatArray:
    """The per-DOM efficiency factors (mean 1, standard deviation ``sigma``) of one event, from their own seed."""
    if sigma == 0.0:
        return np.ones(n_doms)
    z = np.random.default_rng(seed).standard_normal(n_doms)
    s = math.sqrt(math.log1p(sigma * sigma))
    return np.asarray(np.exp(s * z - 0.5 * s * s), dtype=np.float64)


def attenuated_charge(distance_m: npt.ArrayLike, attenuation_scale: float) -> FloatArray:
    """Expected photoelectrons per unit light yield (efficiency 1) with the attenuation length scaled.

    The nominal model of :func:`skyscan.reco.photonics.charge_per_yield` with 98 m replaced by
    98 m * ``attenuation_scale``.
    """
    d = np.asarray(distance_m, dtype=np.float64)
    length = ph.ABSORPTION_M * attenuation_scale
    return np.asarray(ph.CHARGE_NORM * np.exp(-d / length) / (d + ph.CHARGE_SOFT_M), dtype=np.float64)


def pandel_rate(absorption_scale: float) -> float:
    """The Pandel rate rho (1/ns) with the absorption length scaled: 1/tau + c_ice / (98 m * a)."""
    return 1.0 / ph.TAU_NS + ph.C_ICE / (ph.ABSORPTION_M * absorption_scale)


def sample_delays(
    rng: np.random.Generator,
    model: str,
    d_eff_m: float,
    n: int,
    *,
    absorption_scale: float = 1.0,
    scattering_scale: float = 1.0,
) -> FloatArray:
    """``n`` photon delays (ns after the direct Cherenkov time) at effective distance ``d_eff_m`` (m).

    ``pandel``: the gamma distribution of the likelihood, with lambda scaled by s and the absorption length by a.
    ``two_component``: with probability exp(-x / 25 m) an exponential delay of mean 1.5 ns (direct light),
    otherwise a gamma delay of shape 1 + x / 50 m and rate 1/300 ns + c_ice / (98 m * a) (scattered light),
    x = d_eff / s: a shape the Pandel PDF cannot take (a narrow peak plus a broad hump, no divergence at 0).
    """
    x = d_eff_m / scattering_scale
    if model == "pandel":
        rho = pandel_rate(absorption_scale)
        return np.asarray(rng.gamma(shape=x / ph.LAMBDA_M, scale=1.0 / rho, size=n), dtype=np.float64)
    if model != "two_component":
        raise InputError(f"delay_model: must be one of {', '.join(DELAY_MODELS)}, got {untrusted.shown(model)}")
    direct = rng.uniform(size=n) < math.exp(-x / DIRECT_LENGTH_M)
    rate = 1.0 / SCATTER_TAU_NS + ph.C_ICE / (ph.ABSORPTION_M * absorption_scale)
    shape = 1.0 + x / SCATTER_LENGTH_M
    fast = rng.exponential(DIRECT_MEAN_NS, size=n)
    slow = rng.gamma(shape=shape, scale=1.0 / rate, size=n)
    return np.asarray(np.where(direct, fast, slow), dtype=np.float64)


# --- reading -------------------------------------------------------------------------------------------------------
class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader refusing duplicate keys (a second value would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML reports it
                continue
            if duplicate:
                raise InputError(f"duplicate key {untrusted.shown(key)} at line {key_node.start_mark.line + 1}")
        return super().construct_mapping(node, deep=deep)


def load_systematics(spec: str) -> Systematics:
    """``"none"``, ``"default"`` or the path of a YAML file (schema ``skyscan-systematics/1``).

    The file's keys are those of :meth:`Systematics.to_dict` plus an optional ``base: none|default`` (the values
    a missing key takes; ``none`` unless given). Every problem is one :class:`InputError` line naming the file.
    """
    if spec == "none":
        return NO_SYSTEMATICS
    if spec == "default":
        return DEFAULT_SYSTEMATICS
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: not 'none', 'default' or an existing systematics file")
    text = untrusted.read_text(path, "systematics file")
    try:
        with untrusted.guarded(str(path)):
            try:
                doc = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
            except yaml.YAMLError as exc:
                raise InputError(f"invalid YAML ({untrusted.one_line(str(exc), 200)})") from None
            untrusted.check_strings(doc, str(path))
            return systematics_from_dict(doc)
    except InputError as exc:
        message = str(exc)
        raise InputError(message if message.startswith(f"{path}:") else f"{path}: {message}") from None


def systematics_from_dict(doc: Any) -> Systematics:
    """Validate a decoded ``skyscan-systematics/1`` document (every key checked, unknown keys refused)."""
    if not isinstance(doc, dict):
        raise InputError("expected a mapping with schema: skyscan-systematics/1")
    for key in doc:
        if key not in _KEYS:
            raise InputError(f"{untrusted.shown(key)}: unknown key (known: {', '.join(_KEYS)})")
    if doc.get("schema") != SCHEMA:
        got = "missing" if "schema" not in doc else f"got {untrusted.shown(doc['schema'])}"
        raise InputError(f"schema: expected {SCHEMA!r}, {got}")
    base_name = doc.get("base", "none")
    if base_name not in ("none", "default"):
        raise InputError(f"base: must be none or default, got {untrusted.shown(base_name)}")
    base = NO_SYSTEMATICS if base_name == "none" else DEFAULT_SYSTEMATICS
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(Systematics)}
    for name in _SPREADS:
        if name in doc:
            value = doc[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{name}: expected a finite number, got {untrusted.shown(value)}")
            if value < 0:
                raise InputError(f"{name}: must be >= 0 (a spread), got {value!r}")
            values[name] = float(value)
    if "jitter_ns" in doc:
        values["jitter_ns"] = _jitter(doc["jitter_ns"])
    if "delay_model" in doc:
        model = doc["delay_model"]
        if not isinstance(model, str) or model not in DELAY_MODELS:
            raise InputError(f"delay_model: must be one of {', '.join(DELAY_MODELS)}, got {untrusted.shown(model)}")
        values["delay_model"] = model
    return Systematics(**values)
