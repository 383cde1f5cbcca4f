"""``python -m skyscan.cli``: the command line, as the node wrapper script and the watcher call it."""

from skyscan.cli import main

main()
