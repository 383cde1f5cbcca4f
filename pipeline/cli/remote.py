"""``skyscan remote``: drive a scan service (``skyscan serve``) from the command line through its API.

Every command parses, calls one method of :class:`skyscan.client.ServiceClient` and prints. The service URL
comes from ``--url`` or ``SKYSCAN_URL``; the token from ``SKYSCAN_TOKEN`` or ``--token-file``, never from the
command line (a token on the command line would be visible to every user in the process list and shell history).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skyscan.cli.core import ErrorHandlingGroup, Finite, Int64
from skyscan.client import ServiceClient
from skyscan.errors import InputError, SkyscanError
from skyscan.reco import untrusted
from skyscan.settings.yamlio import read_yaml

__all__ = ["remote"]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_WAIT_S = 24 * 3600.0
"""Default seconds ``submit --wait`` follows a scan: longer than any scan should take, so only a stuck scan hits it."""


def _connection_options(func: F) -> F:
    func = click.option(
        "--token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="File holding the bearer token (default: the SKYSCAN_TOKEN environment variable; none: anonymous).",
    )(func)
    func = click.option(
        "--url", envvar="SKYSCAN_URL", default=None, metavar="URL",
        help="Base URL of the service, e.g. http://127.0.0.1:8765 [env SKYSCAN_URL].",
    )(func)
    return func


def _token(token_file: Path | None) -> str | None:
    """The token from --token-file (first line, stripped), else SKYSCAN_TOKEN, else None (anonymous)."""
    if token_file is not None:
        text = untrusted.read_text(token_file, "token file").strip()
        if not text or "\n" in text:
            raise InputError(f"{token_file}: a token file holds one token on one line")
        return text
    env = os.environ.get("SKYSCAN_TOKEN")
    return env.strip() if env and env.strip() else None


def _client(url: str | None, token_file: Path | None) -> ServiceClient:
    if not url:
        raise InputError("no service URL given: pass --url URL or set SKYSCAN_URL")
    return ServiceClient(url, _token(token_file))


def _mapping_file(path: Path, what: str) -> dict[str, Any]:
    """A JSON or YAML file holding a mapping (JSON for .json, YAML otherwise: YAML is a superset)."""
    if path.suffix.lower() == ".json":
        doc = untrusted.loads_json(untrusted.read_text(path, what), str(path))
        if not isinstance(doc, dict):
            raise InputError(f"{path}: expected a JSON object at the top level")
        return doc
    return read_yaml(path)


def _progress_text(doc: dict[str, Any]) -> str:
    parts = []
    for stage in doc.get("progress") or []:
        if isinstance(stage, dict):
            parts.append(f"stage {stage.get('stage')} nside {stage.get('nside')}: {stage.get('done')}/{stage.get('total')}")
    return "; ".join(parts)


def _status_lines(doc: dict[str, Any]) -> list[str]:
    """A scan document as aligned `key: value` lines for people (``--json`` gives the document itself)."""
    rows: list[tuple[str, Any]] = [("scan", doc.get("scan_id")), ("alert", doc.get("alert")),
                                   ("state", doc.get("state")), ("priority", doc.get("priority"))]
    progress = _progress_text(doc)
    if progress:
        rows.append(("progress", progress))
    if doc.get("eta_seconds") is not None:
        rows.append(("eta", f"{doc['eta_seconds']:.0f} s"))
    best = doc.get("best_fit")
    if isinstance(best, dict) and best.get("ra_deg") is not None:
        rows.append(("best fit", f"RA {best['ra_deg']:.2f} deg, Dec {best['dec_deg']:+.2f} deg"))
    if doc.get("area_90_deg2") is not None:
        rows.append(("area 90%", f"{doc['area_90_deg2']:.3g} deg2"))
    if doc.get("wall_seconds") is not None:
        rows.append(("wall time", f"{doc['wall_seconds']:.0f} s"))
    if doc.get("replaced_by") is not None:
        rows.append(("replaced by", doc["replaced_by"]))
    if doc.get("last_error") and doc.get("state") != "done":
        rows.append(("last error", doc["last_error"]))
    return [f"{key + ':':<12} {untrusted.one_line(str(value), 400)}" for key, value in rows]


def _finish(client: ServiceClient, doc: dict[str, Any], outdir: Path | None) -> None:
    """After a wait: download the products when asked; a scan that did not end done is an exit-1 failure."""
    state = doc.get("state")
    click.echo(f"{doc.get('scan_id')} {state}")
    if state != "done":
        raise SkyscanError(f"scan {doc.get('scan_id')} ended {state}")
    if outdir is not None:
        for path in client.download(str(doc["scan_id"]), outdir):
            click.echo(str(path))


@click.group("remote", cls=ErrorHandlingGroup)
def remote() -> None:
    """Submit, follow, fetch and abort scans on a scan service (`skyscan serve`) over its HTTP API.

    The service URL comes from --url or SKYSCAN_URL; the token from the SKYSCAN_TOKEN environment
    variable or --token-file (never a command-line argument). Bad input and every refusal of the service
    (unknown scan, bad token, missing role, unreachable service) exit 2 with one line.

    \b
    Examples:
      export SKYSCAN_URL=http://127.0.0.1:8765 SKYSCAN_TOKEN=$(cat ~/.skyscan-token)
      skyscan remote submit event.json --priority 100 --wait -o products/
      skyscan remote status 3f2a9c
      skyscan remote fetch 3f2a9c -o products/
      skyscan remote abort 3f2a9c
    """


@remote.command("submit")
@click.argument("event", type=click.Path(dir_okay=False, path_type=Path))
@_connection_options
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A partial scan configuration (skyscan-config/1, YAML or JSON) over the service's defaults.")
@click.option("--priority", type=Int64(0, 1000), default=0, show_default=True,
              help="0-1000; 100 or more is the realtime lane (started before any lower priority).")
@click.option("--label", default=None, help="A free label stored with the scan.")
@click.option("--force", is_flag=True, help="A new scan even if the same revision and configuration exists.")
@click.option("--wait", "wait_", is_flag=True, help="Follow the scan until it ends (exit 1 unless it ends done).")
@click.option("--timeout", type=Finite(0.0), default=DEFAULT_WAIT_S, show_default=True,
              help="Seconds --wait follows the scan before giving up (exit 1).")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --wait (implied): download the products into this folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the scan document as JSON instead of its id.")
def submit(event: Path, url: str | None, token_file: Path | None, config_path: Path | None, priority: int,
           label: str | None, force: bool, wait_: bool, timeout: float, outdir: Path | None, as_json: bool) -> None:
    """Submit the event file EVENT (skyscan-event/1 JSON) for a scan; print the scan id.

    The service checks the event and the configuration; a bad one exits 2 with its one-line message.
    The same event revision with the same configuration already queued, running or done gives that
    scan's id (no duplicate) unless --force.

    \b
    Examples:
      skyscan remote submit event.json --url http://127.0.0.1:8765
      skyscan remote submit event.json --priority 100 --config fast.yaml --wait -o products/
    """
    event_doc = untrusted.loads_json(untrusted.read_text(event, "event file"), str(event))
    if not isinstance(event_doc, dict):
        raise InputError(f"{event}: expected a JSON object at the top level")
    config = _mapping_file(config_path, "configuration file") if config_path is not None else None
    with _client(url, token_file) as client:
        doc = client.submit(event_doc, config=config, priority=priority, label=label, force=force)
        click.echo(json.dumps(doc, indent=1) if as_json else str(doc.get("scan_id")))
        if wait_ or outdir is not None:
            _finish(client, client.wait(str(doc["scan_id"]), timeout), outdir)


@remote.command("status")
@click.argument("scan_id")
@_connection_options
@click.option("--json", "as_json", is_flag=True, help="Print the whole scan document as JSON.")
def status(scan_id: str, url: str | None, token_file: Path | None, as_json: bool) -> None:
    """Show a scan: state, progress per stage, best fit, 90% area, wall time.

    \b
    Examples:
      skyscan remote status 3f2a9c --url http://127.0.0.1:8765
      skyscan remote status 3f2a9c --json | jq .progress
    """
    with _client(url, token_file) as client:
        doc = client.get(scan_id)
    click.echo(json.dumps(doc, indent=1) if as_json else "\n".join(_status_lines(doc)))


@remote.command("fetch")
@click.argument("scan_id")
@_connection_options
@click.option("-o", "--outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to save the products in (created if missing).")
def fetch(scan_id: str, url: str | None, token_file: Path | None, outdir: Path) -> None:
    """Download every product of a scan (maps, plots, circular, notice, summary); print the paths.

    \b
    Example:
      skyscan remote fetch 3f2a9c -o products/
    """
    with _client(url, token_file) as client:
        for path in client.download(scan_id, outdir):
            click.echo(str(path))


@remote.command("abort")
@click.argument("scan_id")
@_connection_options
def abort(scan_id: str, url: str | None, token_file: Path | None) -> None:
    """Stop a scan: its running graph is stopped and its state becomes cancelled (again: no change).

    \b
    Example:
      skyscan remote abort 3f2a9c
    """
    with _client(url, token_file) as client:
        doc = client.abort(scan_id)
    click.echo(f"{doc.get('scan_id', scan_id)} {doc.get('state')}")
