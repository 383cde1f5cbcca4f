"""The warm node process of a ``skyscan run``, started before the run exists (see docs/local-executor.md).

Kept apart from :mod:`skyscan.graph.localrun`, whose imports (numpy, the scan set-up, the executor) cost a tenth
of a second that the warm process's own warm-up can overlap instead of follow.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def warm_node_process() -> Iterator[None]:
    """Start the warm node process a local scan's jobs will use, for the duration of the block.

    Its environment is the one the scan's jobs get: this process's, with the local site's submit environment,
    after the HTCondor bindings (which the scan set-up imports) may have set ``CONDOR_CONFIG``. The run adopts
    the process; if the block ends without a run that did (a set-up error), it is stopped.
    """
    from skyscan.condor.schedd import submit_environment
    from skyscan.local import forkserver
    from skyscan.settings.site import load_site

    with contextlib.suppress(ImportError):
        import htcondor2  # noqa: F401
    forkserver.prestart({**os.environ, **submit_environment(load_site("local"))})
    try:
        yield
    finally:
        forkserver.close_prestarted()
