"""The ``skyscan`` command line: thin wrappers that parse, call a library function and print.

Exit codes: 0 success, 2 bad input (one line naming the problem), 1 anything else.
"""

from __future__ import annotations

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


@cli.group(cls=ErrorHandlingGroup)
def geometry() -> None:
    """Inspect and export detector geometries."""


# --- command registration (each block imports its commands from their own module) ---
from skyscan.cli import reco as cli_reco  # noqa: E402

cli.add_command(cli_reco.simulate)
cli.add_command(cli_reco.example)
cli.add_command(cli_reco.coords)
geometry.add_command(cli_reco.geometry_export)
node.add_command(cli_reco.node_scan)

from skyscan.cli import campaign as cli_campaign  # noqa: E402
from skyscan.cli import graph as cli_graph  # noqa: E402
from skyscan.cli import merge as cli_merge  # noqa: E402
from skyscan.cli import run as cli_run  # noqa: E402
from skyscan.cli import watch as cli_watch  # noqa: E402

cli.add_command(cli_run.run)
cli.add_command(cli_graph.submit)
cli.add_command(cli_graph.status)
node.add_command(cli_graph.node_prepare)
node.add_command(cli_graph.node_plan)
node.add_command(cli_graph.node_final)
cli.add_command(cli_merge.merge)
node.add_command(cli_merge.node_merge)
cli.add_command(cli_watch.watch)
cli.add_command(cli_watch.catalog)
cli.add_command(cli_watch.cancel)
cli.add_command(cli_watch.rescan)
cli.add_command(cli_campaign.campaign)

from skyscan.cli import calibrate as cli_calibrate  # noqa: E402

cli.add_command(cli_calibrate.calibrate)

from skyscan.cli import remote as cli_remote  # noqa: E402

cli.add_command(cli_remote.remote)

from skyscan.cli import serve as cli_serve  # noqa: E402

cli.add_command(cli_serve.serve)


def main() -> None:
    cli(prog_name="skyscan")


if __name__ == "__main__":
    main()
