"""``python -m skyscan.calibrate.node batch CALDIR K | collect CALDIR``: what a calibration's graph nodes run.

Exit 0 on success, 2 for bad input (never retried), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from skyscan.errors import InputError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skyscan.calibrate.node", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("batch", help="simulate and reconstruct one batch of pseudo-events")
    b.add_argument("caldir")
    b.add_argument("batch", type=int)
    c = sub.add_parser("collect", help="write calibration.json from every batch")
    c.add_argument("caldir")
    args = parser.parse_args(argv)
    from skyscan.calibrate.collect import collect, run_batch

    try:
        if args.what == "batch":
            print(f"wrote {run_batch(args.caldir, args.batch)}")
        else:
            print(f"wrote {collect(args.caldir)}")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a node's failure: one line, DAGMan retries it
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
