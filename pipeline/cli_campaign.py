"""``python -m skyscan.cli_campaign``: kept because the wrapper script of every existing campaign calls it.

The commands live in :mod:`skyscan.cli.campaign`.
"""

from skyscan.cli.campaign import main

if __name__ == "__main__":
    main()
