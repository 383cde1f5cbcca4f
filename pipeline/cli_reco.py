"""Commands of the physics side: simulate, coords, geometry export, node scan."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import click
import numpy as np

from skyscan.atomic import write_json, write_text
from skyscan.errors import InputError


@click.command()
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), required=True, help="Event file to write (JSON)."
)
@click.option("--preset", type=click.Choice(["benchmark"]), help="A fixed standard event (ignores the track options).")
@click.option("--zenith", type=float, default=120.0, show_default=True, help="Zenith (deg) the muon comes from.")
@click.option("--azimuth", type=float, default=200.0, show_default=True, help="Azimuth (deg), detector frame.")
@click.option("--energy", "energy_gev", type=float, default=2e5, show_default=True, help="Muon energy (GeV).")
@click.option(
    "--vertex", nargs=3, type=float, default=(0.0, 0.0, 0.0), show_default=True, help="A point on the track, x y z (m)."
)
@click.option("--time-ns", type=float, default=10_000.0, show_default=True, help="Time at the vertex (ns).")
@click.option("--starting", is_flag=True, help="The muon starts at the vertex instead of passing through.")
@click.option(
    "--noise-rate", "noise_rate_hz", type=float, default=500.0, show_default=True, help="Dark rate per DOM (Hz)."
)
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed (same seed, same event).")
@click.option("--run-id", type=int, default=1, show_default=True)
@click.option("--event-id", type=int, default=1, show_default=True)
@click.option("--event-time", default="2026-01-01T00:00:00Z", show_default=True, help="Event time, ISO 8601 UTC.")
@click.option("--stream", default="gold", show_default=True, help="Alert stream name recorded in the event.")
@click.option("--geometry", "geometry_arg", help="Geometry CSV (default: built-in ic86).")
def simulate(
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
) -> None:
    """Simulate a muon-track event and write it as a skyscan-event/1 file with its truth.

    \b
    Examples:
      skyscan simulate --preset benchmark -o benchmark.json
      skyscan simulate --zenith 100 --azimuth 40 --energy 3e5 --seed 7 -o ev.json
    """
    from skyscan.reco.event import event_to_dict, parse_time
    from skyscan.reco.simulate import BENCHMARK_SEED, BENCHMARK_TIME, TrackSpec, benchmark_spec, simulate_track
    from skyscan.scannode import load_geometry

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
    event, truth = simulate_track(spec, geo, rng, run_id=run_id, event_id=event_id, event_time=when, stream=stream)
    write_json(output, event_to_dict(event, truth), indent=None)
    n_doms = len(set(zip(event.pulses.string.tolist(), event.pulses.om.tolist())))
    click.echo(
        f"wrote {output}: run {event.run_id} event {event.event_id}, {len(event.pulses)} pulses on {n_doms} DOMs, "
        f"{float(event.pulses.charge.sum()):.0f} pe; truth zenith {truth.zenith_deg:.2f} azimuth {truth.azimuth_deg:.2f} deg"
    )


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Where to write the event file.")
def example(output: str) -> None:
    """Write the bundled example event (a simulated ~300 TeV up-going track with its truth).

    \b
    Example:
      skyscan example -o example.json && skyscan run example.json -o example-scan
    """
    from importlib import resources

    text = resources.files("skyscan").joinpath("data/example-event.json").read_text(encoding="utf-8")
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
def coords(when: str, zenith: float | None, azimuth: float | None, ra: float | None, dec: float | None) -> None:
    """Convert a direction between the detector frame and J2000 equatorial coordinates.

    Give either --zenith and --azimuth, or --ra and --dec; both forms are printed.

    \b
    Examples:
      skyscan coords --time 2026-03-14T15:09:26Z --zenith 118 --azimuth 231
      skyscan coords --time 2026-03-14T15:09:26Z --ra 77.36 --dec 5.69
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
    from skyscan.reco.settings import RecoSettings
    from skyscan.scannode import run_scan_node

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
