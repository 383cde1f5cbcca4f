"""The built-in local executor: runs the DAGMan files skyscan writes on this machine, without HTCondor.

:mod:`skyscan.local.executor` is the public API (``run_dag``, observers, run-state files); ``run`` and
``progress`` are what ``skyscan run`` adds on top (writing the scan, a live per-stage display).
"""
