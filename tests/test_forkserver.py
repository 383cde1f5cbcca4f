"""Warm node processes (skyscan.local.forkserver): which commands go to the fork server, and that a forked
job behaves like a fresh process (exit code, stdio files, own process group, signals, stop)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyscan.local import forkserver, scheduler
from skyscan.local.executor import run_dag
from skyscan.local.forkserver import ENV_SWITCH, ForkServers, fork_server_enabled, node_command
from skyscan.local.processes import StopControl, Stopped
from skyscan.resources import data_file

pytestmark = pytest.mark.skipif(not fork_server_enabled({}), reason="needs fork and SCM_RIGHTS")


def wrapper(where: Path) -> Path:
    """The packaged node wrapper script, as skyscan copies it into a scan directory."""
    path = where / "skyscan-node"
    path.write_bytes(data_file("scripts", "skyscan-node").read_bytes())
    path.chmod(0o755)
    return path


def control(flag: Callable[[], bool] = lambda: False, grace: float = 2.0) -> StopControl:
    return StopControl(stopped=flag, grace=grace, force=threading.Event())


@pytest.fixture
def forks() -> Iterator[ForkServers]:
    servers = ForkServers()
    yield servers
    servers.close()


def env_for_wrapper(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SKYSCAN_SETUP", "SKYSCAN_PYTHON")}
    env.update(extra)
    return env


def test_which_commands_are_node_commands(tmp_path: Path) -> None:
    node = wrapper(tmp_path)
    env = env_for_wrapper(SKYSCAN_PYTHON=sys.executable)
    cmd = node_command([str(node), "scan", "event.json", "--nside", "8"], env, tmp_path)
    assert cmd is not None and cmd.args == ("node", "scan", "event.json", "--nside", "8")
    assert cmd.path0 == str(tmp_path)
    # a setup script to source, or another interpreter: only a fresh process can do that
    assert node_command([str(node), "scan"], env_for_wrapper(SKYSCAN_PYTHON=sys.executable, SKYSCAN_SETUP="/x.sh"),
                        tmp_path) is None
    assert node_command([str(node), "scan"], env_for_wrapper(SKYSCAN_PYTHON="/bin/sh"), tmp_path) is None
    # python -m skyscan.cli node ... with this interpreter
    cmd = node_command([sys.executable, "-m", "skyscan.cli", "node", "final", "."], env, tmp_path)
    assert cmd is not None and cmd.args == ("node", "final", ".")
    assert node_command([sys.executable, "-m", "skyscan.cli", "run", "x"], env, tmp_path) is None
    assert node_command([sys.executable, "-c", "print(1)"], env, tmp_path) is None
    # a script that only looks like the wrapper (one byte changed) is a user script
    other = tmp_path / "other"
    other.mkdir()
    edited = wrapper(other)
    edited.write_bytes(edited.read_bytes() + b"\n")
    assert node_command([str(edited), "scan"], env, tmp_path) is None
    assert node_command(["/bin/echo", "node"], env, tmp_path) is None


def test_off_switch() -> None:
    assert not fork_server_enabled({ENV_SWITCH: "0"})
    assert not fork_server_enabled({ENV_SWITCH: "off"})
    assert fork_server_enabled({ENV_SWITCH: "1"})
    assert fork_server_enabled({})


def test_forked_job_exit_code_and_stdio_files(tmp_path: Path, forks: ForkServers) -> None:
    node = wrapper(tmp_path)
    env = env_for_wrapper(SKYSCAN_PYTHON=sys.executable)
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        rc = forks.run([str(node), "scan", "missing.json", "--nside", "8", "--pixels", "0", "-o", "x.h5"],
                       tmp_path, control(), subprocess.DEVNULL, out, err, env)
    assert rc == 2  # bad input
    assert forks.forked == 1
    lines = (tmp_path / "err").read_text().splitlines()
    assert len(lines) == 1 and "missing.json" in lines[0], lines
    with open(tmp_path / "out", "wb") as out:
        rc = forks.run([sys.executable, "-m", "skyscan.cli", "node", "--help"], tmp_path, control(),
                       subprocess.DEVNULL, out, out, env)
    assert rc == 0 and forks.forked == 2
    assert "Commands that the nodes of a scan graph run" in (tmp_path / "out").read_text()
    # not a node command: left to the caller (a fresh process)
    assert forks.run(["/bin/echo", "hi"], tmp_path, control(), subprocess.DEVNULL, subprocess.DEVNULL,
                     subprocess.DEVNULL, env) is None
    assert forks.forked == 2


def _children(forks: ForkServers) -> list[int]:
    """Pids of the jobs the servers are running now, as the server's process table says (Linux /proc)."""
    pids: list[int] = []
    for server in forks._servers.values():
        path = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        if path.exists():
            pids += [int(p) for p in path.read_text().split()]
    return pids


def _long_scan(tmp_path: Path) -> list[str]:
    """A scan node that takes a while: every nside-8 pixel of the benchmark event."""
    event = tmp_path / "event.json"
    subprocess.run([sys.executable, "-m", "skyscan.cli", "simulate", "--preset", "benchmark", "-o", str(event)],
                   check=True, capture_output=True)
    return [sys.executable, "-m", "skyscan.cli", "node", "scan", str(event), "--nside", "8", "--pixels", "0-767",
            "-o", str(tmp_path / "scan.h5")]


def _wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_forked_job_is_its_own_process_group_and_reports_signals(tmp_path: Path, forks: ForkServers) -> None:
    argv = _long_scan(tmp_path)
    result: dict[str, object] = {}

    def target() -> None:
        result["rc"] = forks.run(argv, tmp_path, control(), subprocess.DEVNULL, subprocess.DEVNULL,
                                 subprocess.DEVNULL, None)

    thread = threading.Thread(target=target)
    thread.start()
    _wait_for(lambda: bool(forks.running()))
    (pid,) = forks.running()
    assert _children(forks) == [pid]  # a child of the server, not of this process
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # a session and process group of its own
    os.killpg(pid, signal.SIGKILL)
    thread.join(30)
    assert result["rc"] == -signal.SIGKILL  # as subprocess reports a job killed by a signal
    assert not (tmp_path / "scan.h5").exists()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_stop_terminates_a_forked_job(tmp_path: Path, forks: ForkServers) -> None:
    argv = _long_scan(tmp_path)
    stop = threading.Event()
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["rc"] = forks.run(argv, tmp_path, control(stop.is_set), subprocess.DEVNULL, subprocess.DEVNULL,
                                     subprocess.DEVNULL, None)
        except Stopped:
            result["stopped"] = time.monotonic()

    thread = threading.Thread(target=target)
    thread.start()
    _wait_for(lambda: bool(forks.running()))
    (pid,) = forks.running()
    stop.set()
    asked = time.monotonic()
    thread.join(30)
    assert "stopped" in result and "rc" not in result
    assert float(result["stopped"]) - asked < 2.0  # SIGTERM was enough: no grace period used up
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not _children(forks) and not forks.running()


DAG = """\
JOB a a.sub
JOB b b.sub
PARENT a CHILD b
SCRIPT PRE b ./skyscan-node --help
"""
SUB_A = """\
executable = skyscan-node
arguments = "scan missing.json --nside 8 --pixels 0 -o x.h5"
output = logs/a.out
error = logs/a.err
environment = "SKYSCAN_PYTHON={python}"
queue
"""
SUB_B = """\
executable = /bin/sh
arguments = "-c 'echo fresh > b.txt'"
queue
"""


@pytest.mark.parametrize("enabled", [True, False])
def test_run_dag_uses_the_fork_server_for_node_commands_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    made: list[ForkServers] = []

    class Spy(ForkServers):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(scheduler, "ForkServers", Spy)
    monkeypatch.delenv("SKYSCAN_SETUP", raising=False)
    monkeypatch.setenv("SKYSCAN_PYTHON", sys.executable)
    wrapper(tmp_path)
    (tmp_path / "x.dag").write_text(DAG)
    (tmp_path / "a.sub").write_text(SUB_A.format(python=sys.executable))
    (tmp_path / "b.sub").write_text(SUB_B)
    (tmp_path / "x.dag").write_text(DAG + "RETRY a 1\n")
    result = run_dag(tmp_path / "x.dag", jobs=2, handle_signals=False, fork_server=enabled)
    assert result.failed == ("a",)  # exit 2, retried once, then failed
    assert "missing.json" in (tmp_path / "logs" / "a.err").read_text()
    assert not (tmp_path / "b.txt").exists()  # a's failure blocks b
    if enabled:
        assert len(made) == 1 and made[0].forked == 2  # both attempts of a; the shell job never gets there
    else:
        assert not made
    (tmp_path / "x.dag").write_text(DAG.replace("JOB a a.sub", "JOB a a.sub NOOP"))
    result = run_dag(tmp_path / "x.dag", jobs=2, handle_signals=False, fork_server=enabled)
    assert result.ok
    assert (tmp_path / "b.txt").read_text() == "fresh\n"
    if enabled:
        assert made[-1].forked == 1  # the PRE script ./skyscan-node --help; the /bin/sh job ran as usual


def test_environment_switch_turns_it_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    monkeypatch.setattr(scheduler, "ForkServers", lambda: made.append(1))
    monkeypatch.setenv(ENV_SWITCH, "0")
    (tmp_path / "x.dag").write_text("JOB a a.sub NOOP\n")
    assert run_dag(tmp_path / "x.dag", handle_signals=False).ok
    assert not made


def test_prepare_and_scan_wait_for_the_part_of_the_warm_up_they_need() -> None:
    import importlib

    from skyscan.local.forkserver import PRELOAD, PRELOAD_BEFORE, preload_needed

    for command, target in PRELOAD_BEFORE.items():
        assert target in PRELOAD, f"{command}: {target} is not a PRELOAD entry"
        module, _, func = target.partition(":")
        assert not func or callable(getattr(importlib.import_module(module), func))
    scan = ["node", "scan", "event.json", "--nside", "8", "--pixels", "0-3", "-o", "x.h5"]
    last = PRELOAD.index(PRELOAD_BEFORE["scan"])
    for needed in ("skyscan.reco.kernel:warm", "skyscan.reco.llh:preload_tables", "skyscan.iers_cache"):
        assert PRELOAD.index(needed) <= last  # a scan child finds the kernel, the table and IERS loaded
    assert PRELOAD.index("skyscan.reco.linefit") < PRELOAD.index("skyscan.nodes.scan")  # prepare's come first
    assert preload_needed(scan, PRELOAD) == last + 1
    assert preload_needed(scan, PRELOAD[last:]) == 1
    assert preload_needed(scan, PRELOAD[last + 1 :]) == 0  # already loaded: forked at once
    assert preload_needed(["node", "prepare", "event.json"], PRELOAD) == PRELOAD.index("skyscan.reco.linefit") + 1
    for other in (["node", "merge", "."], ["node"], ["--help"], []):
        assert preload_needed(other, PRELOAD) == 0


def test_preloaded_pandel_table_is_the_one_scan_nodes_use() -> None:
    from skyscan.reco import photonics as ph
    from skyscan.reco.llh import preload_tables
    from skyscan.reco.settings import RecoSettings

    ph.convolved_pandel.cache_clear()
    preload_tables()
    table = ph.convolved_pandel(float(RecoSettings().jitter_ns))
    assert "cells" in vars(table)  # the kernel's cell layout is built too (a cached property)
    assert ph.convolved_pandel.cache_info().hits == 1


def test_scan_nodes_do_not_wait_for_healpy() -> None:
    """Stage 0's jobs are forked once the server reaches the Pandel table; healpy (0.3 s) is loaded after it."""
    import subprocess
    import sys

    from skyscan.local.forkserver import PRELOAD, PRELOAD_BEFORE

    assert PRELOAD.index("healpy") > PRELOAD.index(PRELOAD_BEFORE["scan"])
    code = ("import sys, skyscan.cli.reco, skyscan.nodes.scan, skyscan.reco.fit, skyscan.reco.kernel; "
            "sys.exit(3 if 'healpy' in sys.modules else 0)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_a_prestarted_server_is_adopted_by_the_run_whose_jobs_have_its_environment(tmp_path: Path) -> None:
    env = env_for_wrapper(SKYSCAN_PYTHON=sys.executable)
    assert forkserver.prestart(env)
    assert forkserver.prestart(env)  # once per environment
    (prestarted,) = forkserver._prestarted.values()
    servers = ForkServers()
    try:
        with open(tmp_path / "out", "wb") as out:
            rc = servers.run([sys.executable, "-m", "skyscan.cli", "node", "--help"], tmp_path, control(),
                             subprocess.DEVNULL, out, out, env)
        assert rc == 0 and servers.forked == 1
        assert list(servers._servers.values()) == [prestarted]  # adopted, no second server
        assert not forkserver._prestarted
    finally:
        servers.close()
    assert prestarted.proc.poll() is not None  # the run's close stops it


def test_a_prestarted_server_for_another_environment_is_closed_unused(tmp_path: Path) -> None:
    wrong = env_for_wrapper(SKYSCAN_PYTHON=sys.executable, SKYSCAN_GUESS="wrong")
    assert forkserver.prestart(wrong)
    (prestarted,) = forkserver._prestarted.values()
    servers = ForkServers()
    try:
        rc = servers.run([sys.executable, "-m", "skyscan.cli", "node", "--help"], tmp_path, control(),
                         subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL,
                         env_for_wrapper(SKYSCAN_PYTHON=sys.executable))
        assert rc == 0
        assert prestarted not in servers._servers.values()
        assert prestarted.proc.poll() is not None  # not left warming up on a core the run needs
    finally:
        servers.close()


def test_close_prestarted_and_the_off_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forkserver.prestart(env_for_wrapper())
    (prestarted,) = forkserver._prestarted.values()
    forkserver.close_prestarted()
    assert not forkserver._prestarted and prestarted.proc.poll() is not None
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert not forkserver.prestart(env_for_wrapper())
    assert not forkserver._prestarted


def test_skyscan_run_leaves_no_prestarted_server_behind_when_the_set_up_fails(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from skyscan.cli import cli

    started: list[forkserver.ForkServer] = []
    real = forkserver.ForkServer

    def counting(env: dict[str, str]) -> forkserver.ForkServer:
        server = real(env)
        started.append(server)
        return server

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forkserver, "ForkServer", counting)
        mp.delenv(ENV_SWITCH, raising=False)
        result = CliRunner().invoke(cli, ["run", str(tmp_path / "missing.json"), "-o", str(tmp_path / "scan")])
    assert result.exit_code == 2, result.output
    assert len(started) == 1  # started before the set-up ...
    assert not forkserver._prestarted and started[0].proc.poll() is not None  # ... and stopped when it failed
