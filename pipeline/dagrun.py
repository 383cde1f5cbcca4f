"""``python -m skyscan.dagrun DAG``: kept for scripts written against it.

The local executor lives in :mod:`skyscan.local`.
"""

import sys

from skyscan.local.executor import main

if __name__ == "__main__":
    sys.exit(main())
