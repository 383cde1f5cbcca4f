"""Command-line wrappers of the alert watcher and the catalog: ``watch``, ``catalog``, ``cancel``, ``rescan``.

The objects are registered on the main ``skyscan`` group by :mod:`skyscan.cli`; ``python -m
skyscan.cli_watch`` runs them standalone (same error handling), which the tests use for real processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skyscan.errors import InputError
from skyscan.ops import catalog as cat
from skyscan.ops.commands import cancel_alert, rescan_alert
from skyscan.ops.watchconfig import load_watch_config
from skyscan.ops.watcher import run_watch

__all__ = ["cancel", "catalog", "main", "rescan", "standalone_group", "watch"]

F = TypeVar("F", bound=Callable[..., Any])


def _db_options(func: F) -> F:
    """--db / --watch-config: where the catalog database is (the file itself, or the watcher's config)."""
    func = click.option(
        "--watch-config", type=click.Path(dir_okay=False, path_type=Path), envvar="SKYSCAN_WATCH_CONFIG",
        default=None, help="Watcher configuration naming the database [env SKYSCAN_WATCH_CONFIG].",
    )(func)
    func = click.option(
        "--db", type=click.Path(dir_okay=False, path_type=Path), envvar="SKYSCAN_CATALOG_DB", default=None,
        help="Catalog database file [env SKYSCAN_CATALOG_DB].",
    )(func)
    return func


def _database(db: Path | None, watch_config: Path | None) -> Path:
    if db is not None:
        return db
    if watch_config is not None:
        return Path(load_watch_config(watch_config).database)
    raise InputError("no catalog database given: pass --db FILE or --watch-config FILE")


def _selection_options(func: F) -> F:
    func = click.option("--all-revisions", is_flag=True, default=None,
                        help="One row per revision instead of per alert (the latest is marked).")(func)
    func = click.option("--state", type=click.Choice(cat.SCAN_STATES), default=None,
                        help="Only alerts whose latest scan is in this state.")(func)
    func = click.option("--since", metavar="DATE", default=None,
                        help="Only events at or after DATE (YYYY-MM-DD or ISO 8601, UTC).")(func)
    return func


@click.command("watch")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help="The watcher configuration (see config/watch.example.yaml).")
@click.option("--once", is_flag=True, help="One pass, then exit (for cron); default: a pass every poll_seconds.")
def watch(config_path: Path, once: bool) -> None:
    """Take alert events from the inbox, scan them and publish the results (see docs/operations.md).

    Exit 0 also when another watcher is running (it logs one line) or when scans failed;
    2 for a bad configuration, 1 when the catalog database is unusable.

    \b
    Examples:
      skyscan watch --config watch.yaml --once    # one pass, e.g. from cron every minute
      skyscan watch --config watch.yaml           # a pass every poll_seconds until SIGTERM
    """
    cfg = load_watch_config(config_path)
    run_watch(cfg, once=once)


@click.group("catalog", invoke_without_command=True)
@_db_options
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format (csv and json carry every column of skyscan-catalog/1).")
@_selection_options
@click.pass_context
def catalog(ctx: click.Context, db: Path | None, watch_config: Path | None, fmt: str, since: str | None,
            state: str | None, all_revisions: bool | None) -> None:
    """List every alert with its latest scan: ids, time, state, best fit, 50%/90% errors and areas.

    \b
    Examples:
      skyscan catalog --db state/catalog.sqlite
      skyscan catalog --watch-config watch.yaml --format csv --since 2026-03-01 --state done
      skyscan catalog export --db state/catalog.sqlite -o catalog-2026-03
    """
    if ctx.invoked_subcommand is not None:
        return
    conn = cat.connect(_database(db, watch_config), create=False)
    try:
        rows = cat.catalog_rows(conn, since=since, state=state, all_revisions=bool(all_revisions))
    finally:
        conn.close()
    click.echo(cat.format_rows(rows, fmt), nl=False)


@catalog.command("export")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="New (or empty) folder for the snapshot.")
@_db_options
@_selection_options
@click.option("--no-skymaps", is_flag=True, help="Leave the skymaps out (the manifest then lists none).")
@click.pass_context
def export(ctx: click.Context, output: Path, db: Path | None, watch_config: Path | None, since: str | None,
           state: str | None, all_revisions: bool | None, no_skymaps: bool) -> None:
    """Write catalog.csv, catalog.json (skyscan-catalog/1), skymaps/ and manifest.json into OUTPUT.

    \b
    Example:
      skyscan catalog export --watch-config watch.yaml -o catalog-2026-03 --since 2026-03-01
    """
    parent = ctx.parent.params if ctx.parent is not None else {}
    database = _database(db or parent.get("db"), watch_config or parent.get("watch_config"))
    conn = cat.connect(database, create=False)
    try:
        folder = cat.export_catalog(
            conn, output, since=since or parent.get("since"), state=state or parent.get("state"),
            all_revisions=bool(all_revisions or parent.get("all_revisions")), skymaps=not no_skymaps,
        )
    finally:
        conn.close()
    click.echo(f"exported the catalog to {folder}")


@click.command("cancel")
@click.argument("alert")
@_db_options
@click.option("--force", is_flag=True, help="Mark the scan cancelled even if its DAG cannot be removed.")
@click.option("--grace", type=float, default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL for a local scan.")
def cancel(alert: str, db: Path | None, watch_config: Path | None, force: bool, grace: float) -> None:
    """Stop the active scan of ALERT (RUN:EVENT or the catalog's alert id) and mark it cancelled.

    \b
    Examples:
      skyscan cancel 138632:31747601 --watch-config watch.yaml
      skyscan cancel 17 --db state/catalog.sqlite
    """
    conn = cat.connect(_database(db, watch_config), create=False)
    try:
        for line in cancel_alert(conn, alert, force=force, grace=grace):
            click.echo(line)
    finally:
        conn.close()


@click.command("rescan")
@click.argument("alert")
@click.option("--config", "scan_config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Scan configuration for this scan (default: the watcher's scan_config).")
@_db_options
def rescan(alert: str, scan_config: Path | None, db: Path | None, watch_config: Path | None) -> None:
    """Queue a new scan of the latest revision of ALERT; the watcher starts it on its next pass.

    \b
    Example:
      skyscan rescan 138632:31747601 --watch-config watch.yaml --config fine.yaml
    """
    conn = cat.connect(_database(db, watch_config), create=False)
    try:
        scan_id = rescan_alert(conn, alert, scan_config)
        scan = cat.get_scan(conn, scan_id)
    finally:
        conn.close()
    click.echo(f"queued scan {scan_id} of {scan.name}; the watcher starts it on its next pass")


def standalone_group() -> click.Group:
    """The four commands in a group of their own, with the main CLI's one-line error handling."""
    from skyscan.cli.core import ErrorHandlingGroup

    @click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
    def standalone() -> None:
        """skyscan watcher and catalog commands."""

    group: click.Group = standalone
    for command in (watch, catalog, cancel, rescan):
        group.add_command(command)
    return group


def main(argv: list[str] | None = None) -> None:
    """``python -m skyscan.cli_watch COMMAND ...``: the commands outside the main ``skyscan`` group."""
    standalone_group()(args=argv, prog_name="skyscan")


if __name__ == "__main__":
    main()
