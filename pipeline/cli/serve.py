"""``skyscan serve``: the scan service (API, scheduler, status page), and ``skyscan serve token`` for its tokens."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from skyscan.cli.core import ErrorHandlingGroup, Int64

__all__ = ["serve"]

_CONFIG_HELP = "The service configuration, schema skyscan-serve/1 (see docs/service.md)."


@click.group("serve", cls=ErrorHandlingGroup, invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default="serve.yaml",
              show_default=True, help=_CONFIG_HELP)
@click.option("--host", default=None, help="Bind address (default: the configuration's host, 127.0.0.1).")
@click.option("--port", type=Int64(0, 65535), default=None,
              help="TCP port (default: the configuration's port, 8765; 0: any free port).")
@click.pass_context
def serve(ctx: click.Context, config_path: Path, host: str | None, port: int | None) -> None:
    """Serve the scan API and run the scheduler until SIGTERM/SIGINT (see docs/service.md).

    Once bound it prints one line to stderr: skyscan serve: listening on http://HOST:PORT

    \b
    Examples:
      skyscan serve --config serve.yaml
      skyscan serve --config serve.yaml --host 0.0.0.0 --port 8765
      skyscan serve token create --config serve.yaml --name skymist --role submit
    """
    if ctx.invoked_subcommand is not None:
        return
    from skyscan.service.config import check_host, load_serve_config
    from skyscan.service.runner import serve as run_service

    cfg = load_serve_config(config_path)
    if host is not None:
        check_host(host, "--host")
    run_service(cfg, host, port)


@serve.group("token", cls=ErrorHandlingGroup)
def token() -> None:
    """Create, list and revoke the service's bearer tokens (only a salted hash is stored).

    \b
    Examples:
      skyscan serve token create --config serve.yaml --name alice --role read
      skyscan serve token list --config serve.yaml
      skyscan serve token revoke alice --config serve.yaml
    """


def _connect(config_path: Path) -> sqlite3.Connection:
    from skyscan.ops.catalog.db import connect
    from skyscan.service.config import load_serve_config

    return connect(load_serve_config(config_path).database)


_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                              default="serve.yaml", show_default=True, help=_CONFIG_HELP)


@token.command("create")
@_config_option
@click.option("--name", required=True, help="Who uses the token (recorded as submitter / aborter).")
@click.option("--role", required=True, type=click.Choice(["read", "submit", "admin"]),
              help="read; submit (read, submit, rescan, abort); admin (also tokens).")
def token_create(config_path: Path, name: str, role: str) -> None:
    """Create a token and print it, alone on stdout: it is shown this once only.

    \b
    Example:
      skyscan serve token create --config serve.yaml --name skymist --role submit > skymist.token
    """
    from skyscan.service.tokens import create_token

    conn = _connect(config_path)
    try:
        click.echo(create_token(conn, name, role))
    finally:
        conn.close()


@token.command("list")
@_config_option
def token_list(config_path: Path) -> None:
    """List the tokens: name, role, created, revoked (never a secret).

    \b
    Example:
      skyscan serve token list --config serve.yaml
    """
    from skyscan.service.tokens import list_tokens

    conn = _connect(config_path)
    try:
        for t in list_tokens(conn):
            click.echo(f"{t.name}\t{t.role}\t{t.created}\t{'revoked ' + t.revoked if t.revoked else 'active'}")
    finally:
        conn.close()


@token.command("revoke")
@click.argument("name")
@_config_option
def token_revoke(name: str, config_path: Path) -> None:
    """Revoke the token NAME (at once: its next request answers 401).

    \b
    Example:
      skyscan serve token revoke skymist --config serve.yaml
    """
    from skyscan.service.tokens import revoke_token

    conn = _connect(config_path)
    try:
        changed = revoke_token(conn, name)
    finally:
        conn.close()
    click.echo(f"token {name} revoked" if changed else f"token {name} was already revoked")
