"""The click group class every skyscan command tree uses: known errors become one line and an exit code."""

from __future__ import annotations

import os
import traceback
from typing import Any

import click

from skyscan.errors import InputError, SkyscanError


class ErrorHandlingGroup(click.Group):
    """Bad input exits 2 and operational failures 1, each with one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"skyscan: error: {exc}", err=True)
            ctx.exit(2)
        except SkyscanError as exc:
            click.echo(f"skyscan: error: {exc}", err=True)
            ctx.exit(1)
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # the last line of defence for operators
            if os.environ.get("SKYSCAN_DEBUG"):
                traceback.print_exc()
            click.echo(
                f"skyscan: internal error: {exc.__class__.__name__}: {exc} (set SKYSCAN_DEBUG=1 for details)",
                err=True,
            )
            ctx.exit(1)
