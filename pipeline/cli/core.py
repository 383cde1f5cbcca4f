"""The click group class every skyscan command tree uses: known errors become one line and an exit code."""

from __future__ import annotations

import os
import traceback
from typing import Any

import click

from skyscan.errors import InputError, SkyscanError
from skyscan.reco import untrusted


def _option_name(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    opts = getattr(param, "opts", None) or [param.name or "value"]
    return str(max(opts, key=len))


class Int64(click.ParamType[int]):
    """An integer option in [minimum, maximum] (default: the signed 64-bit range), read by
    :func:`skyscan.reco.untrusted.parse_int`. A bad value raises InputError (not click's usage error), so the
    command exits 2 with one line naming the option, as for every other bad input."""

    name = "integer"

    def __init__(self, minimum: int = untrusted.INT64_MIN, maximum: int = untrusted.INT64_MAX) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        return untrusted.parse_int(value, _option_name(param), self.minimum, self.maximum)


class Finite(click.ParamType[float]):
    """A finite number option (no nan/inf), optionally bounded."""

    name = "number"

    def __init__(self, minimum: float | None = None, maximum: float | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        return untrusted.parse_float(value, _option_name(param), self.minimum, self.maximum)


NON_NEGATIVE_ID = Int64(0)
"""Run and event ids: the event format's non-negative int64."""
FINITE = Finite()


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
