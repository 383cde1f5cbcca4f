"""The ``skyscan`` command line: thin wrappers that parse, call a library function and print.

Exit codes: 0 success, 2 bad input (one line naming the problem), 1 anything else.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import click

from skyscan.cli.core import ErrorHandlingGroup
from skyscan.version import __version__


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="skyscan")
def cli() -> None:
    """Localise a neutrino alert on the sky with HEALPix scans run as an HTCondor DAGMan graph.

    \b
    Quick start (no HTCondor needed):
      skyscan simulate --preset benchmark -o event.json
      skyscan run event.json -o scan/
      skyscan status scan/
    """


@cli.group(cls=ErrorHandlingGroup)
def node() -> None:
    """Commands that the nodes of a scan graph run (normally called by DAGMan or `skyscan run`)."""


class NodeTerminated(BaseException):
    """SIGTERM reached a node command: unwinds it, so that files being written atomically are removed."""


def _terminated(signum: int, frame: object) -> None:
    # DAGMan (condor_rm), the local executor and the watcher stop a node with SIGTERM before SIGKILL; unwinding
    # lets every atomic write remove its temporary file, then ``main`` ends the process by SIGTERM as before.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise NodeTerminated


@cli.group(cls=ErrorHandlingGroup)
def geometry() -> None:
    """Inspect and export detector geometries."""


# --- command registration ---------------------------------------------------------------------------------------
# Each command's module is imported only when that command is looked up (run, or listed by --help): a node or a
# merge process then pays for its own command's imports only, not for the whole command line's.
class _LazyCommands(dict[str, click.Command]):
    """A group's commands, each given as ``"module:attribute"`` and imported on first use.

    Looking one name up imports that one command; listing them (iterating, ``items()``, ``len``) imports all.
    """

    def __init__(self, specs: dict[str, str]) -> None:
        super().__init__()
        self._specs = dict(specs)

    def _load(self, name: object) -> None:
        spec = self._specs.pop(name, None) if isinstance(name, str) else None
        if spec is not None:
            module, _, attr = spec.partition(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            super().__setitem__(name, command)  # type: ignore[index]

    def _load_all(self) -> None:
        for name in list(self._specs):
            self._load(name)

    def __getitem__(self, name: str) -> click.Command:
        self._load(name)
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self._load(name)
        return super().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._specs or super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._load_all()
        return super().__iter__()

    def __len__(self) -> int:
        self._load_all()
        return super().__len__()

    def keys(self) -> Any:
        self._load_all()
        return super().keys()

    def values(self) -> Any:
        self._load_all()
        return super().values()

    def items(self) -> Any:
        self._load_all()
        return super().items()


def _lazy(group: click.Group, specs: dict[str, str]) -> None:
    commands = _LazyCommands(specs)
    for name, command in group.commands.items():  # the groups defined above
        dict.__setitem__(commands, name, command)
    group.commands = commands


_RECO, _GRAPH, _MERGE, _WATCH = "skyscan.cli.reco", "skyscan.cli.graph", "skyscan.cli.merge", "skyscan.cli.watch"
_lazy(
    cli,
    {
        "simulate": f"{_RECO}:simulate",
        "example": f"{_RECO}:example",
        "coords": f"{_RECO}:coords",
        "run": "skyscan.cli.run:run",
        "submit": f"{_GRAPH}:submit",
        "status": f"{_GRAPH}:status",
        "merge": f"{_MERGE}:merge",
        "watch": f"{_WATCH}:watch",
        "catalog": f"{_WATCH}:catalog",
        "cancel": f"{_WATCH}:cancel",
        "rescan": f"{_WATCH}:rescan",
        "campaign": "skyscan.cli.campaign:campaign",
        "calibrate": "skyscan.cli.calibrate:calibrate",
        "remote": "skyscan.cli.remote:remote",
        "serve": "skyscan.cli.serve:serve",
    },
)
_lazy(geometry, {"export": f"{_RECO}:geometry_export"})
_lazy(
    node,
    {
        "scan": f"{_RECO}:node_scan",
        "prepare": f"{_GRAPH}:node_prepare",
        "plan": f"{_GRAPH}:node_plan",
        "final": f"{_GRAPH}:node_final",
        "merge": f"{_MERGE}:node_merge",
    },
)


def run_command_line() -> int:
    """Run ``skyscan`` with ``sys.argv`` and return the exit status a Python process running it would end with.

    That is: the command's exit code (``SystemExit``; a message instead of a code is printed and gives 1), a
    traceback and 1 for an uncaught exception, "killed by SIGINT" for Ctrl-C, "killed by SIGTERM" for a ``node``
    command stopped by SIGTERM (after unwinding it, so that its atomic writes remove their temporary files; the
    handler is installed here, not in the ``node`` group, so that calling the commands in-process (tests,
    click's runner) never changes the caller's signal handling). The exit functions (``atexit``) have run and
    the standard streams are flushed when it returns (120 if flushing stdout failed, as in Python).
    """
    import atexit
    import traceback

    if sys.argv[1:2] == ["node"]:
        signal.signal(signal.SIGTERM, _terminated)
    code = 0
    try:
        cli(prog_name="skyscan")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xFF
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except NodeTerminated:
        _die_of(signal.SIGTERM)
    except KeyboardInterrupt:
        _die_of(signal.SIGINT)
    except BaseException:  # uncaught: traceback and exit 1, as Python does
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    except Exception:
        pass
    if not _flush() and code == 0:
        code = 120
    return code


def _die_of(sig: signal.Signals) -> None:
    """End this process by ``sig`` with its default action: the status an executor expects of an interrupted job."""
    _flush()
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    signal.pause()


def _flush() -> bool:
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            ok = False
    return ok


def main() -> None:
    """The console script and ``python -m skyscan.cli``: :func:`run_command_line`, then exit at once.

    The interpreter's own teardown (freeing every module and object) adds about 0.1 s to a merge or a scan node
    and does nothing a finished command needs: its exit functions have run and its streams are flushed. So the
    process ends with ``os._exit``, as the warm node processes' children always have, unless a non-daemon thread
    is still running, which the normal exit waits for.
    """
    import threading

    code = run_command_line()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    main()
