"""Commands of the physics side: simulate, coords, geometry export, node scan."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from skyscan.atomic import write_json, write_text
from skyscan.cli.core import FINITE, NON_NEGATIVE_ID, Int64
from skyscan.errors import InputError
from skyscan.reco import untrusted

if TYPE_CHECKING:
    from skyscan.reco.systematics import Systematics


def checked_event_doc(event: Any, truth: Any) -> dict[str, Any]:
    """The event document to write, validated as `skyscan run` will read it: simulate never writes an event that
    skyscan then rejects (an id past int64, a stream that is not a stream name, a time out of range)."""
    from skyscan.reco.event import event_from_dict, event_to_dict

    doc = event_to_dict(event, truth)
    try:
        with untrusted.guarded("event"):
            event_from_dict(doc)
    except InputError as exc:
        raise InputError(f"simulated event: {exc}") from None
    return doc


@click.command()
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(),
    required=True,
    help="Event file to write (JSON); with --count, the directory to write the events into.",
)
@click.option("--preset", type=click.Choice(["benchmark"]), help="A fixed standard event (ignores the track options).")
@click.option("--zenith", type=float, default=120.0, show_default=True, help="Zenith (deg) the muon comes from.")
@click.option("--azimuth", type=float, default=200.0, show_default=True, help="Azimuth (deg), detector frame.")
@click.option("--energy", "energy_gev", type=float, default=2e5, show_default=True, help="Muon energy (GeV).")
@click.option(
    "--vertex", nargs=3, type=float, default=(0.0, 0.0, 0.0), show_default=True, help="A point on the track, x y z (m)."
)
@click.option("--time-ns", type=FINITE, default=10_000.0, show_default=True, help="Time at the vertex (ns).")
@click.option("--starting", is_flag=True, help="The muon starts at the vertex instead of passing through.")
@click.option(
    "--noise-rate", "noise_rate_hz", type=float, default=500.0, show_default=True, help="Dark rate per DOM (Hz)."
)
@click.option("--seed", type=Int64(0), default=1, show_default=True, help="Random seed (same seed, same event).")
@click.option("--run-id", type=NON_NEGATIVE_ID, default=1, show_default=True)
@click.option("--event-id", type=NON_NEGATIVE_ID, default=1, show_default=True, help="Event id (with --count: the first one).")
@click.option(
    "--event-time",
    default="2026-01-01T00:00:00Z",
    show_default=True,
    help="Event time, ISO 8601 UTC (with --count: the earliest).",
)
@click.option("--stream", default="gold", show_default=True, help="Alert stream name recorded in the event.")
@click.option("--geometry", "geometry_arg", help="Geometry CSV (default: built-in ic86).")
@click.option("--count", type=int, help="Simulate N events with a spread of energies, directions, vertices and times.")
@click.option(
    "--energy-range",
    nargs=2,
    type=float,
    help="With --count: energies log-uniform between MIN and MAX GeV  [default: 1e4 1e6].",
)
@click.option(
    "--directions",
    type=click.Choice(["isotropic", "upgoing"]),
    help="With --count: isotropic, or up-going only (zenith > 90 deg)  [default: isotropic].",
)
@click.option(
    "--time-span",
    "time_span_days",
    type=float,
    help="With --count: days the event times spread over  [default: 365.25].",
)
@click.option(
    "--systematics",
    "systematics_arg",
    default="none",
    show_default=True,
    metavar="none|default|FILE.yaml",
    help="Detector and ice variations the likelihood does not know (docs/simulation.md, Systematics); "
    "the values drawn for each event go into its truth.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    output: str,
    preset: str | None,
    zenith: float,
    azimuth: float,
    energy_gev: float,
    vertex: tuple[float, float, float],
    time_ns: float,
    starting: bool,
    noise_rate_hz: float,
    seed: int,
    run_id: int,
    event_id: int,
    event_time: str,
    stream: str,
    geometry_arg: str | None,
    count: int | None,
    energy_range: tuple[float, float] | None,
    directions: str | None,
    time_span_days: float | None,
    systematics_arg: str,
) -> None:
    """Simulate a muon-track event and write it as a skyscan-event/1 file with its truth.

    With --count N, simulate N events (seeded, deterministic: event i depends only on --seed and i)
    into the directory given with -o, as run<RUN>-evt<EVENT>.json with distinct event ids, plus
    truth.csv (run_id, event_id, ra, dec, ...: usable as `skyscan campaign report --reference`).

    \b
    Examples:
      skyscan simulate --preset benchmark -o benchmark.json
      skyscan simulate --zenith 100 --azimuth 40 --energy 3e5 --seed 7 -o ev.json
      skyscan simulate --count 30 --energy-range 1e5 1e7 --directions upgoing --seed 3 -o events/
      skyscan simulate --preset benchmark --systematics default -o varied.json
    """
    from skyscan.graph.event import load_geometry
    from skyscan.reco.event import parse_time
    from skyscan.reco.simulate import BENCHMARK_SEED, BENCHMARK_TIME, TrackSpec, benchmark_spec, simulate_track
    from skyscan.reco.systematics import load_systematics

    systematics = load_systematics(systematics_arg)

    batch_only = {"--energy-range": energy_range, "--directions": directions, "--time-span": time_span_days}
    if count is None:
        given = [name for name, value in batch_only.items() if value is not None]
        if given:
            raise InputError(f"{given[0]}: goes with --count")
        if Path(output).is_dir():
            raise InputError(f"-o/--output: {output} is a directory (a directory is for --count)")
    else:
        _simulate_count(
            ctx, output, count, energy_range, directions, time_span_days, time_ns, starting, noise_rate_hz, seed,
            run_id, event_id, event_time, stream, geometry_arg, systematics,
        )  # fmt: skip
        return
    geo = load_geometry(geometry_arg)
    if preset == "benchmark":
        spec = benchmark_spec()
        rng = np.random.default_rng(BENCHMARK_SEED)
        when = BENCHMARK_TIME
        run_id, event_id = 138632, 31747601
    else:
        for name, value in (("--zenith", zenith), ("--energy", energy_gev), ("--noise-rate", noise_rate_hz)):
            if not math.isfinite(value):
                raise InputError(f"{name}: must be finite")
        if not 0.0 <= zenith <= 180.0:
            raise InputError(f"--zenith: must lie in [0, 180], got {zenith:g}")
        if energy_gev <= 0 or noise_rate_hz < 0:
            raise InputError("--energy must be positive and --noise-rate non-negative")
        if run_id < 0 or event_id < 0:
            raise InputError("--run-id and --event-id must be >= 0")
        spec = TrackSpec(
            zenith_deg=zenith,
            azimuth_deg=azimuth % 360.0,
            energy_gev=energy_gev,
            vertex=vertex,
            time_ns=time_ns,
            starting=starting,
            noise_rate_hz=noise_rate_hz,
        )
        rng = np.random.default_rng(seed)
        when = parse_time(event_time, "--event-time")
    event, truth = simulate_track(
        spec, geo, rng, run_id=run_id, event_id=event_id, event_time=when, stream=stream, systematics=systematics
    )
    write_json(output, checked_event_doc(event, truth), indent=None)
    n_doms = len(set(zip(event.pulses.string.tolist(), event.pulses.om.tolist())))
    click.echo(
        f"wrote {output}: run {event.run_id} event {event.event_id}, {len(event.pulses)} pulses on {n_doms} DOMs, "
        f"{float(event.pulses.charge.sum()):.0f} pe; truth zenith {truth.zenith_deg:.2f} azimuth {truth.azimuth_deg:.2f} deg"
        + _systematics_note(truth.systematics)
    )


def _systematics_note(drawn: dict[str, Any] | None) -> str:
    """The drawn variations in a few words for the summary line ("" for the nominal model)."""
    if drawn is None:
        return ""
    jitter = drawn.get("jitter_ns")
    jitter_text = "" if jitter is None else f", jitter {jitter:.2f} ns"
    return (
        f"; systematics: absorption x{drawn['absorption_scale']:.3f}, scattering x{drawn['scattering_scale']:.3f}, "
        f"efficiency x{drawn['efficiency_scale']:.3f}, noise x{drawn['noise_rate_scale']:.3f}{jitter_text}, "
        f"{drawn['delay_model']} delays"
    )


_NOT_WITH_COUNT = (
    ("preset", "--preset"),
    ("zenith", "--zenith"),
    ("azimuth", "--azimuth"),
    ("energy_gev", "--energy"),
    ("vertex", "--vertex"),
)


def _simulate_count(
    ctx: click.Context,
    output: str,
    count: int,
    energy_range: tuple[float, float] | None,
    directions: str | None,
    time_span_days: float | None,
    time_ns: float,
    starting: bool,
    noise_rate_hz: float,
    seed: int,
    run_id: int,
    event_id: int,
    event_time: str,
    stream: str,
    geometry_arg: str | None,
    systematics: Systematics,
) -> None:
    """`simulate --count N -o DIR`: a seeded batch of events (skyscan.reco.simbatch) and its truth table."""
    import csv
    import io

    from skyscan.graph.event import load_geometry
    from skyscan.reco.event import parse_time
    from skyscan.reco.simbatch import BatchSpec, iter_batch, truth_radec_deg

    for param, flag in _NOT_WITH_COUNT:
        source = ctx.get_parameter_source(param)
        if source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT):
            raise InputError(f"{flag}: not with --count (each event's parameters are drawn; see --help)")
    if count < 1:
        raise InputError(f"--count: must be at least 1, got {count}")
    lo, hi = energy_range if energy_range is not None else (1e4, 1e6)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or hi < lo:
        raise InputError(f"--energy-range: need 0 < MIN <= MAX (GeV), got {lo:g} {hi:g}")
    span = 365.25 if time_span_days is None else time_span_days
    if not math.isfinite(span) or span < 0:
        raise InputError(f"--time-span: must be a finite number of days >= 0, got {span:g}")
    if not math.isfinite(noise_rate_hz) or noise_rate_hz < 0:
        raise InputError("--noise-rate: must be finite and non-negative")
    if not math.isfinite(time_ns):
        raise InputError("--time-ns: must be finite")
    if run_id < 0 or event_id < 0:
        raise InputError("--run-id and --event-id must be >= 0")
    if seed < 0:
        raise InputError(f"--seed: must be >= 0 with --count, got {seed}")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o/--output: {output} exists and is not a directory (--count writes a directory)")
    batch = BatchSpec(
        count=count,
        seed=seed,
        energy_range_gev=(lo, hi),
        directions=directions or "isotropic",
        run_id=run_id,
        first_event_id=event_id,
        start_time=parse_time(event_time, "--event-time"),
        time_span_days=span,
        noise_rate_hz=noise_rate_hz,
        time_ns=time_ns,
        starting=starting,
        stream=stream,
        systematics=None if systematics.is_null else systematics,
    )
    batch.validate()
    geo = load_geometry(geometry_arg)
    from skyscan import iers_cache

    iers_cache.install()  # the truth table converts every direction to RA/Dec
    folder.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["run_id", "event_id", "ra", "dec", "zenith_deg", "azimuth_deg", "energy_gev", "time", "file"])
    step = max(1, count // 10)
    for item in iter_batch(batch, geo):
        ev, truth = item.event, item.truth
        name = f"run{ev.run_id}-evt{ev.event_id}.json"
        write_json(folder / name, checked_event_doc(ev, truth), indent=None)
        ra, dec = truth_radec_deg(ev, truth)
        writer.writerow(
            [ev.run_id, ev.event_id, f"{ra:.6f}", f"{dec:.6f}", f"{truth.zenith_deg:.6f}", f"{truth.azimuth_deg:.6f}",
             f"{truth.energy_gev:.6g}", ev.time_iso, name]
        )  # fmt: skip
        done = item.index + 1
        if count >= 20 and (done % step == 0 or done == count):
            click.echo(f"simulated {done}/{count} events", err=True)
    write_text(folder / "truth.csv", table.getvalue())
    last = event_id + count - 1
    click.echo(
        f"wrote {count} events to {output}: run {run_id}, event ids {event_id}..{last}, energies {lo:g}..{hi:g} "
        f"GeV log-uniform, {batch.directions} directions, seed {seed}"
        + ("" if systematics.is_null else f", systematics {systematics.label}")
        + f"; truth table {folder / 'truth.csv'}"
    )


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Where to write the event file.")
def example(output: str) -> None:
    """Write the bundled example event (a simulated ~300 TeV up-going track with its truth).

    \b
    Example:
      skyscan example -o example.json && skyscan run example.json -o example-scan
    """
    from skyscan.resources import data_text

    text = data_text("config", "examples/example-event.json")
    write_text(output, text)
    click.echo(f"wrote {output}")


@click.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="CSV file to write.")
@click.option("--name", default="ic86", show_default=True, help="Built-in geometry to export.")
def geometry_export(output: str, name: str) -> None:
    """Write a built-in geometry as CSV (columns string,om,x,y,z,efficiency; metres).

    \b
    Example:
      skyscan geometry export -o ic86.csv
    """
    from skyscan.reco.geometry import builtin, to_csv

    geo = builtin(name)
    write_text(output, to_csv(geo))
    click.echo(f"wrote {output}: {len(geo)} DOMs on {len(set(geo.string.tolist()))} strings")


@click.command()
@click.option("--time", "when", required=True, help="Event time, ISO 8601 UTC.")
@click.option("--zenith", type=float, help="Detector zenith (deg), where the particle comes from.")
@click.option("--azimuth", type=float, help="Detector azimuth (deg).")
@click.option("--ra", type=float, help="Right ascension (deg, J2000).")
@click.option("--dec", type=float, help="Declination (deg, J2000).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object {time, zenith_deg, azimuth_deg, ra_deg, dec_deg} instead of the table.",
)
def coords(
    when: str, zenith: float | None, azimuth: float | None, ra: float | None, dec: float | None, as_json: bool
) -> None:
    """Convert a direction between the detector frame and J2000 equatorial coordinates.

    Give either --zenith and --azimuth, or --ra and --dec; both forms are printed (with --json as one JSON
    object: time in ISO 8601 UTC, angles in degrees, azimuth and RA in [0, 360)).

    \b
    Examples:
      skyscan coords --time 2026-03-14T15:09:26Z --zenith 118 --azimuth 231
      skyscan coords --time 2026-03-14T15:09:26Z --ra 77.36 --dec 5.69
      skyscan coords --time 2026-03-14T15:09:26Z --zenith 118 --azimuth 231 --json
    """
    from skyscan.reco import coords as co
    from skyscan.reco.event import format_time, parse_time

    t: datetime = parse_time(when, "--time")
    local = zenith is not None or azimuth is not None
    sky = ra is not None or dec is not None
    if local == sky:
        raise InputError("give either --zenith and --azimuth, or --ra and --dec")
    if local:
        if zenith is None or azimuth is None:
            raise InputError("--zenith and --azimuth go together")
        if not (math.isfinite(zenith) and math.isfinite(azimuth)) or not 0 <= zenith <= 180:
            raise InputError("--zenith must lie in [0, 180] and --azimuth be finite")
        r, d = co.local_to_equatorial(math.radians(zenith), math.radians(azimuth), t)
        ra_v, dec_v, zen_v, azi_v = math.degrees(float(r)), math.degrees(float(d)), zenith, azimuth % 360
    else:
        if ra is None or dec is None:
            raise InputError("--ra and --dec go together")
        if not (math.isfinite(ra) and math.isfinite(dec)) or not -90 <= dec <= 90:
            raise InputError("--dec must lie in [-90, 90] and --ra be finite")
        z, a = co.equatorial_to_local(math.radians(ra), math.radians(dec), t)
        ra_v, dec_v, zen_v, azi_v = ra % 360, dec, math.degrees(float(z)), math.degrees(float(a))
    if as_json:
        import json

        doc = {
            "time": format_time(t),
            "zenith_deg": float(zen_v),
            "azimuth_deg": float(azi_v) % 360.0,
            "ra_deg": float(ra_v) % 360.0,
            "dec_deg": float(dec_v),
        }
        click.echo(json.dumps(doc))
        return
    click.echo(f"time     {format_time(t)}")
    click.echo(f"detector zenith {zen_v:9.4f} deg  azimuth {azi_v:9.4f} deg")
    click.echo(f"J2000    RA     {ra_v:9.4f} deg  Dec     {dec_v:9.4f} deg")


@click.command("scan")
@click.argument("event")
@click.option("--nside", type=int, required=True, help="HEALPix nside of the pixels (power of two).")
@click.option(
    "--pixels", "pixel_spec", required=True, help="NESTED pixel indices: a file, a range 0-767 or a list 1,5,9."
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Result file (HDF5).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Scan configuration (YAML); its reco: section is used.",
)
@click.option("--geometry", "geometry_arg", help="Geometry CSV replacing the event's built-in geometry.")
def node_scan(
    event: str, nside: int, pixel_spec: str, output: str, config_path: str | None, geometry_arg: str | None
) -> None:
    """Reconstruct a batch of HEALPix pixels (direction fixed per pixel, vertex fitted).

    Writes OUTPUT atomically; does nothing if a complete OUTPUT is already there.
    Exit 0 on success (failed pixels are recorded with llh NaN), 2 for bad input, 1 otherwise.

    \b
    Example:
      skyscan node scan event.json --nside 8 --pixels 0-767 -o scan-nside8.h5
    """
    from skyscan.nodes.scan import run_scan_node
    from skyscan.reco.settings import RecoSettings

    config_doc = None
    settings = RecoSettings()
    if config_path:
        import yaml

        p = Path(config_path)
        if not p.is_file():
            raise InputError(f"{config_path}: no such configuration file")
        try:
            config_doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{config_path}: invalid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(config_doc, dict):
            raise InputError(f"{config_path}: expected a mapping at the top level")
        settings = RecoSettings.from_mapping(config_doc.get("reco"))
    outcome = run_scan_node(
        event, nside, pixel_spec, output, settings=settings, config_doc=config_doc, geometry_arg=geometry_arg
    )
    if outcome.skipped:
        click.echo(f"{output}: already complete ({outcome.n_pixels} pixels), nothing to do")
    else:
        rate = outcome.n_pixels / outcome.seconds if outcome.seconds > 0 else float("inf")
        click.echo(
            f"wrote {output}: {outcome.n_pixels} pixels at nside {nside}, {outcome.n_failed} failed, "
            f"{outcome.seconds:.1f} s ({rate:.1f} pixels/s)"
        )
