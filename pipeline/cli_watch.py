"""``python -m skyscan.cli_watch``: kept for crontabs and scripts written against it.

The commands live in :mod:`skyscan.cli.watch`.
"""

from skyscan.cli.watch import main

if __name__ == "__main__":
    main()
