"""The HTCondor languages skyscan reads and checks, independent of its graph and of any executor.

``parse`` reads the DAG files skyscan writes (the subset of DAGMan it uses) into :class:`~skyscan.dagman.parse.Dag`;
``quoting`` holds HTCondor's quoting rules for VARS values and submit-file ``arguments``/``environment``;
``nodestatus`` reads the node-status files and jobstate logs DAGMan writes while it runs;
``classads`` checks ClassAd expressions (site profiles). Parsing only: everything that acts on a pool
(writing DAGs, submitting, querying or removing jobs) lives in :mod:`skyscan.condor`.
"""
