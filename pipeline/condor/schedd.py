"""Submitting to HTCondor: the schedd, ``condor_submit_dag``'s checks, and the DAGMan job once it is queued.

Every call of the HTCondor bindings that talks to a schedd is here. Each looks the schedd up through
``find_schedd`` (tests replace it to make the lookup fail, or to stand in for a schedd).
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from skyscan.errors import SkyscanError
from skyscan.settings.site import SiteProfile, resolve_python

#: Files ``condor_submit_dag`` creates; if one exists and no rescue DAG does, it refuses to submit again.
DAGMAN_OUTPUTS = (".condor.sub", ".lib.out", ".lib.err", ".dagman.log")


def find_schedd() -> Any:
    """The local schedd (separate so that tests can make the lookup fail)."""
    import htcondor2

    return htcondor2.Schedd()


@contextlib.contextmanager
def _in_directory(path: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Run in ``path`` with extra environment (DAGMan copies both: relative paths, ENV GET)."""
    old_cwd = Path.cwd()
    old_env = {key: os.environ.get(key) for key in env}
    os.chdir(path)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def submit_environment(site: SiteProfile, python: str | None = None) -> dict[str, str]:
    """SKYSCAN_PYTHON / SKYSCAN_SETUP for DAGMan and so for the PRE scripts on the submit host."""
    env: dict[str, str] = {}
    py = resolve_python(site.submit_python, python)
    if py:
        env["SKYSCAN_PYTHON"] = py
    if site.submit_setup:
        env["SKYSCAN_SETUP"] = site.submit_setup
    return env


def submit_command(outdir: Path, dag_name: str, batch_name: str, env: Mapping[str, str]) -> str:
    """The shell command that submits the DAG by hand (what ``--dry-run`` prints)."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = f"condor_submit_dag -batch-name {shlex.quote(batch_name)} {shlex.quote(dag_name)}"
    return f"cd {shlex.quote(str(outdir))} && " + (f"{prefix} {cmd}" if prefix else cmd)


def rescue_files(outdir: Path, dag_name: str) -> list[Path]:
    """DAGMan's rescue DAGs of ``dag_name``, oldest first (``condor_submit_dag`` runs the newest)."""
    return sorted(outdir.glob(f"{dag_name}.rescue[0-9][0-9][0-9]"))


def check_resubmission(outdir: Path, dag_name: str) -> None:
    """Refuse what ``condor_submit_dag`` would refuse, with advice; drop a stale generated .condor.sub."""
    if (outdir / f"{dag_name}.lock").exists():
        raise SkyscanError(
            f"{outdir / (dag_name + '.lock')} exists: a DAGMan may still be running this scan "
            "(check condor_q; delete the lock only if it is stale)"
        )
    if rescue_files(outdir, dag_name):
        return  # condor_submit_dag runs the newest rescue DAG: the scan resumes
    ran = [s for s in DAGMAN_OUTPUTS[1:] if (outdir / f"{dag_name}{s}").exists()]
    if ran:
        raise SkyscanError(
            f"{outdir}: a DAGMan already ran this scan ({dag_name}{ran[0]} exists) and left no rescue DAG "
            "to resume; see `skyscan status`, or submit by hand with condor_submit_dag -force to start over"
        )
    stale = outdir / f"{dag_name}.condor.sub"
    if stale.exists():
        stale.unlink()


def submit_dag(outdir: str | Path, dag_name: str, batch_name: str, env: Mapping[str, str]) -> int:
    """Submit the DAG with the bindings; return the DAGMan job's cluster id.

    The schedd is looked up first: when none is reachable, nothing is written and the directory stays
    ready to submit by hand.
    """
    import htcondor2

    folder = Path(outdir).absolute()
    check_resubmission(folder, dag_name)
    command = submit_command(folder, dag_name, batch_name, env)
    with _in_directory(folder, env):
        try:
            schedd = find_schedd()
        except Exception as exc:  # the bindings raise HTCondorException and others
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkyscanError(
                f"no HTCondor schedd reachable ({reason}); the scan directory is ready, submit it by hand: {command}"
            ) from None
        try:
            sub = htcondor2.Submit.from_dag(dag_name, {"batch-name": batch_name})
            result = schedd.submit(sub)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
            raise SkyscanError(f"submitting {folder / dag_name} failed: {reason}") from None
    return int(result.cluster())


# ---------------------------------------------------------------------------------------------------------------
# The DAGMan job once it is queued
# ---------------------------------------------------------------------------------------------------------------
def _classad_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dagman_job_present(cluster_id: int | None) -> bool | None:
    """Is the DAGMan job still in the queue? None when the schedd cannot tell (unreachable, no cluster id)."""
    if cluster_id is None:
        return None
    try:
        ads = find_schedd().query(f"ClusterId == {int(cluster_id)}", ["ClusterId", "JobStatus"])
    except Exception:  # the bindings raise HTCondorException and others when no schedd answers
        return None
    return bool(ads)


def remove_dagman_job(cluster_id: int | None, batch_name: str, outdir: str) -> None:
    """``condor_rm`` of a scan's DAGMan job (its node jobs go with it); SkyscanError if that is impossible.

    Without a cluster id the job is found by its batch name and submit directory (``Iwd``).
    """
    constraint = (
        f"ClusterId == {int(cluster_id)}"
        if cluster_id is not None
        else f"JobBatchName == {_classad_string(batch_name)} && Iwd == {_classad_string(outdir)}"
    )
    try:
        import htcondor2

        find_schedd().act(htcondor2.JobAction.Remove, constraint, reason="skyscan watch/cancel")
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise SkyscanError(f"cannot remove the DAGMan job ({constraint}): {reason}") from None
