"""Warm node processes: a fork server that runs the graph's ``skyscan node …`` commands without a cold start.

A fresh ``skyscan node scan`` process spends most of a second or more on the interpreter, on importing numpy,
scipy, healpy and skyscan and on loading the compiled likelihood kernel, before it fits a single pixel. The
local executor therefore keeps one warm *server* process per distinct job environment, started on the first
node command and importing all of that once (in the background, between requests). Each node command is then
one ``fork()`` of the server: the child is a process of its own (own pid, own session and process group, its
stdin/stdout/stderr the files of the submit file, its working directory and environment those of the job),
runs the ``skyscan`` command line in-process and exits with the command's exit code. The executor learns the
child's pid and exit status over a socket, signals its process group exactly as it signals a fresh child, and
so exit codes, RETRY, PRE/POST scripts, logs and Ctrl-C behave as before.

Only commands that are equivalent to ``skyscan node …`` run by *this* interpreter go to the server:

- the project's node wrapper script (byte-identical to the packaged ``skyscan-node``) when the job's
  environment has no ``SKYSCAN_SETUP`` and its ``SKYSCAN_PYTHON`` (or, without it, the ``skyscan`` found on
  the job's ``PATH``) is this interpreter;
- ``skyscan node …`` with the ``skyscan`` entry script of this interpreter;
- ``python -m skyscan.cli node …`` with this interpreter.

Everything else (user scripts, other executables, another Python) is started as a fresh process, as is every
command when ``SKYSCAN_FORK_SERVER=0`` is set or ``run_dag(fork_server=False)`` is used. The DAG and submit
files are not touched: a grid job runs the same command in a fresh process. POSIX only (``fork``,
``SCM_RIGHTS``); where ``fork`` is not available the executor starts fresh processes.

Protocol (executor side, per job): a new socket pair; the request (one JSON line: arguments, working
directory, environment) is written into one end, and the other end plus the three stdio descriptors are
passed to the server over its control socket (``SCM_RIGHTS``). The server forks; the child reports
``pid N`` on the job socket once it is the leader of its own session, and the server reports ``exit RC``
(``-N`` for signal N, as ``subprocess`` does) when it has reaped the child.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from skyscan.local.processes import POLL_SECONDS, StopControl, Stopped

__all__ = [
    "ENV_SWITCH",
    "ForkServer",
    "ForkServerLost",
    "ForkServers",
    "NodeCommand",
    "close_prestarted",
    "fork_server_enabled",
    "node_command",
    "prestart",
]

#: Environment variable that turns warm node processes off (``0``, ``false``, ``no``, ``off``).
ENV_SWITCH = "SKYSCAN_FORK_SERVER"
#: At most this many warm servers per run (one per distinct job environment); more run fresh processes.
MAX_SERVERS = 4
#: What the server imports or runs once, in this order, between requests ("module" or "module:function").
#: The first entries are what every node needs; a child forked before the list is done imports the rest itself
#: (except what ``PRELOAD_BEFORE`` has the server load first).
PRELOAD = (
    "skyscan.cli",
    "skyscan.nodes.prepare",
    "skyscan.iers_cache",  # prepare: astropy's IERS tables
    "skyscan.reco.linefit",
    "skyscan.nodes.scan",
    "skyscan.reco.fit",
    "h5py",
    "skyscan.reco.kernel:warm",  # loads the compiled kernel (compiles and caches it the first time ever)
    "skyscan.reco.llh:preload_tables",  # the default Pandel table: every scan node would build it (~0.3 s)
    "healpy",  # after what scan nodes need (they never import it; stage 0's jobs wait for the entries above)
    "skyscan.nodes.plan",
    "htcondor2",  # plan writes the stage's DAG with the HTCondor bindings
    "skyscan.nodes.final",
    "skyscan.nodes.merge",
    "skyscan.products.skyreader",
    "skyscan.products.plot",
    "matplotlib.pyplot",
    "scipy.optimize",
)
#: For a request that arrives while the server is still warming up: the PRELOAD entry to reach (with all before
#: it) before forking that ``skyscan node`` command. The child would load all of it itself, so it starts no later,
#: and the jobs after it (stage 0's scan jobs arrive together) find it loaded instead of each loading it again.
#: Other commands are forked at once.
PRELOAD_BEFORE = {
    "prepare": "skyscan.reco.linefit",
    "scan": "skyscan.reco.llh:preload_tables",
}
_WRAPPER = "skyscan-node"


def fork_server_enabled(env: Mapping[str, str] | None = None) -> bool:
    """False when ``SKYSCAN_FORK_SERVER`` says off, or where the platform cannot fork."""
    value = (os.environ if env is None else env).get(ENV_SWITCH, "").strip().lower()
    return value not in ("0", "false", "no", "off") and hasattr(os, "fork") and hasattr(socket, "send_fds")


# -- which commands are node commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeCommand:
    """A command the server can run: the ``skyscan`` arguments and what a fresh process would see."""

    args: tuple[str, ...]  # the command-line arguments after the program name, starting with "node"
    argv0: str  # sys.argv[0] of a fresh process
    path0: str  # sys.path[0] of a fresh process (the script's folder, or the working directory for -m)


def _same_interpreter(path: str | None) -> bool:
    """True if ``path`` runs this interpreter in this environment (a venv is known by the folder of its link)."""
    if not path:
        return False
    here = os.path.abspath(sys.executable)
    there = os.path.abspath(path)
    if os.path.dirname(there) != os.path.dirname(here):
        return False
    try:
        return os.path.samefile(there, here)
    except OSError:
        return False


_script_cache: dict[tuple[str, int, int], bytes] = {}


def _head(path: str, limit: int = 4096) -> bytes:
    """The first bytes of a file (cached by path, size and modification time); b"" if unreadable."""
    try:
        st = os.stat(path)
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in _script_cache:
            with open(path, "rb") as fh:
                _script_cache[key] = fh.read(limit)
        return _script_cache[key]
    except OSError:
        return b""


def _is_entry_script(path: str | None) -> bool:
    """True for the ``skyscan`` console script of this interpreter (its ``#!`` line names this interpreter)."""
    if not path:
        return False
    head = _head(path)
    if not head.startswith(b"#!") or b"from skyscan.cli import main" not in head:
        return False
    interpreter = head[2:].split(b"\n", 1)[0].strip().split(b" ")[0]
    return _same_interpreter(os.fsdecode(interpreter))


_wrapper_bytes: bytes | None = None


def _is_wrapper(path: str) -> bool:
    """True if the file is byte-identical to the packaged node wrapper script."""
    global _wrapper_bytes
    if _wrapper_bytes is None:
        from skyscan.resources import data_file

        _wrapper_bytes = data_file("scripts", _WRAPPER).read_bytes()
    head = _head(path, len(_wrapper_bytes) + 1)
    return head == _wrapper_bytes


def node_command(argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> NodeCommand | None:
    """The node command ``argv`` stands for, if running it in a fork of this interpreter is equivalent; else None."""
    if len(argv) < 2 or not os.path.isabs(argv[0]):
        return None
    exe, rest = argv[0], list(argv[1:])
    if _is_wrapper(exe):
        # what skyscan-node does: source SKYSCAN_SETUP (we cannot), then exec SKYSCAN_PYTHON -m skyscan.cli
        # node ARGS or `skyscan node ARGS` from PATH
        if env.get("SKYSCAN_SETUP"):
            return None
        path = env.get("PATH")
        python = env.get("SKYSCAN_PYTHON")
        if python:
            if not _same_interpreter(shutil.which(python, path=path)):
                return None
            return NodeCommand(("node", *rest), python, str(cwd))
        found = shutil.which("skyscan", path=path)
        if not _is_entry_script(found):
            return None
        assert found is not None
        return NodeCommand(("node", *rest), found, os.path.dirname(found))
    if rest[0] == "node" and _is_entry_script(exe):
        return NodeCommand(tuple(rest), exe, os.path.dirname(exe))
    if len(rest) >= 3 and rest[:2] == ["-m", "skyscan.cli"] and rest[2] == "node" and _same_interpreter(exe):
        return NodeCommand(tuple(rest[2:]), exe, str(cwd))
    return None


# -- executor side --------------------------------------------------------------------------------------


class ForkServerLost(Exception):
    """The server went away before it forked the job (the job did not start; run it as a fresh process)."""


class _Lines:
    """Newline-terminated messages from a job socket, with a timeout per read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def next(self, timeout: float) -> str | None:
        """The next line; None on timeout; "" at end of stream."""
        while b"\n" not in self.buf:
            if self.eof:
                return ""
            self.sock.settimeout(timeout)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return None
            if not data:
                self.eof = True
                continue
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("ascii", "replace")


class ForkServer:
    """One warm server process for one job environment (started at once; warms up in the background)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = parent
        self._lock = threading.Lock()
        self.broken = False
        self.running: set[int] = set()  # pids of the jobs forked and not yet reported finished
        code = "from skyscan.local.forkserver import serve; serve()"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child.fileno())],
                env=dict(env), pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
            )
        finally:
            child.close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the server has finished warming up (everything of ``PRELOAD`` loaded); False on timeout."""
        if self.broken:
            return False
        self._sock.settimeout(timeout)
        try:
            return self._sock.recv(1) == b"R"
        except (TimeoutError, OSError):
            return False
        finally:
            with contextlib.suppress(OSError):
                self._sock.settimeout(None)

    def run(self, command: NodeCommand, cwd: Path, env: Mapping[str, str], stdio: tuple[int, int, int],
            control: StopControl) -> int:
        """Run the command in a fork; its exit code (``-N`` for signal N). Raises ``Stopped`` or ``ForkServerLost``."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with mine:
            try:
                request = {"args": list(command.args), "argv0": command.argv0, "path0": command.path0,
                           "cwd": str(cwd), "env": dict(env)}
                mine.sendall(json.dumps(request).encode() + b"\n")  # waits in the socket until the server reads it
                with self._lock:
                    if self.broken:
                        raise ForkServerLost
                    socket.send_fds(self._sock, [b"J"], [theirs.fileno(), *stdio])
            except OSError:
                self.broken = True
                raise ForkServerLost from None
            finally:
                theirs.close()
            pid: list[int] = []
            try:
                return self._wait(_Lines(mine), control, pid)
            finally:
                self.running.difference_update(pid)

    def _wait(self, lines: _Lines, control: StopControl, started: list[int]) -> int:
        pid: int | None = None
        while True:
            line = lines.next(POLL_SECONDS)
            if line == "":
                self.broken = True
                if pid is None:
                    raise ForkServerLost
                # the job started but its exit status is lost with the server: make sure it is gone, call it killed
                _kill_group(pid, signal.SIGKILL)
                return -int(signal.SIGKILL)
            if line is not None:
                word, _, value = line.partition(" ")
                if word == "pid":
                    pid = int(value)
                    started.append(pid)
                    self.running.add(pid)
                elif word == "exit":
                    return int(value)
            if pid is not None and control.stopped():
                self._terminate(pid, lines, control)
                raise Stopped

    def _terminate(self, pid: int, lines: _Lines, control: StopControl) -> None:
        """SIGTERM the job's process group, SIGKILL after the grace period; wait until it is reaped."""
        _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + control.grace
        while time.monotonic() < deadline and not control.force.is_set():
            line = lines.next(0.05)
            if line == "" or (line or "").startswith("exit"):
                return
        _kill_group(pid, signal.SIGKILL)
        while True:
            line = lines.next(POLL_SECONDS)
            if line == "" or (line or "").startswith("exit"):
                return

    def close(self, timeout: float = 2.0) -> None:
        """Stop the server (it exits when its control socket closes); killed if it does not within ``timeout``."""
        with self._lock:
            self.broken = True
            with contextlib.suppress(OSError):
                self._sock.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


EnvKey = tuple[tuple[str, str], ...]


def _env_key(env: Mapping[str, str]) -> EnvKey:
    return tuple(sorted(env.items()))


#: Servers started ahead of the run that will use them (:func:`prestart`), until a run adopts them.
_prestarted: dict[EnvKey, ForkServer] = {}
_prestarted_lock = threading.Lock()


def prestart(env: Mapping[str, str]) -> bool:
    """Start the warm server for job environment ``env`` now, before the run that will use it is set up.

    ``skyscan run`` calls this first thing, so the server's warm-up (most of a second of imports before the first
    scan job can be forked) overlaps writing the scan directory and the executor's own start instead of following
    them. The first run whose node jobs have exactly this environment adopts the server (``ForkServers``); a run
    whose jobs have another environment closes it unused, as does :func:`close_prestarted`. Nothing starts where
    warm node processes are off (``SKYSCAN_FORK_SERVER``, no ``fork``). True if a server is (already) running.
    """
    if not fork_server_enabled():
        return False
    key = _env_key(env)
    with _prestarted_lock:
        if key in _prestarted:
            return True
        try:
            _prestarted[key] = ForkServer(env)
        except OSError:
            return False
    return True


def _adopt_prestarted(key: EnvKey) -> ForkServer | None:
    """The prestarted server for ``key`` (taken out of the pool); servers for other environments are closed."""
    with _prestarted_lock:
        server = _prestarted.pop(key, None)
        others = list(_prestarted.values())
        _prestarted.clear()
    for other in others:  # a wrong guess: it must not keep warming up on a core the run needs
        other.close()
    return server


def close_prestarted() -> None:
    """Stop every prestarted server no run adopted (e.g. the scan failed before its first job)."""
    with _prestarted_lock:
        servers = list(_prestarted.values())
        _prestarted.clear()
    for server in servers:
        server.close()


class ForkServers:
    """The warm servers of one executor run, one per job environment, started on first use (or adopted)."""

    def __init__(self, max_servers: int = MAX_SERVERS) -> None:
        self.max_servers = max_servers
        self._servers: dict[EnvKey, ForkServer] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.forked = 0  # jobs run in a fork, for tests and benchmarks

    def _server(self, env: Mapping[str, str]) -> ForkServer | None:
        key = _env_key(env)
        with self._lock:
            if self._closed:
                return None
            server = self._servers.get(key)
            if server is None:
                if len(self._servers) >= self.max_servers:
                    return None
                server = _adopt_prestarted(key)
                if server is None:
                    try:
                        server = ForkServer(env)
                    except OSError:
                        return None
                self._servers[key] = server
            return None if server.broken else server

    def run(self, argv: Sequence[str], cwd: Path, control: StopControl, stdin: IO[Any] | int, stdout: IO[Any] | int,
            stderr: IO[Any] | int, env: Mapping[str, str] | None) -> int | None:
        """Run a node command in a warm fork and return its exit code; None if it is not one (run it as usual).

        Raises ``Stopped`` when the run is stopped meanwhile (the child was terminated).
        """
        job_env = dict(os.environ) if env is None else dict(env)
        if not cwd.is_dir():
            return None
        command = node_command(argv, job_env, cwd)
        if command is None:
            return None
        server = self._server(job_env)
        if server is None:
            return None
        with contextlib.ExitStack() as stack:
            fds: list[int] = []
            for stream, mode in ((stdin, os.O_RDONLY), (stdout, os.O_WRONLY), (stderr, os.O_WRONLY)):
                if stream == subprocess.DEVNULL:
                    fd = os.open(os.devnull, mode)
                    stack.callback(os.close, fd)
                    fds.append(fd)
                elif isinstance(stream, int):
                    if stream < 0:
                        return None  # PIPE, STDOUT: not supported here
                    fds.append(stream)
                else:
                    fds.append(stream.fileno())
            try:
                rc = server.run(command, cwd, job_env, (fds[0], fds[1], fds[2]), control)
            except ForkServerLost:
                return None
            with self._lock:
                self.forked += 1
            return rc

    def running(self) -> list[int]:
        """Pids of the jobs running in forks now (each the leader of its own session and process group)."""
        with self._lock:
            servers = list(self._servers.values())
        return sorted(pid for server in servers for pid in list(server.running))

    def warm(self, env: Mapping[str, str] | None = None, timeout: float = 120.0) -> bool:
        """Start the server for ``env`` (default: this environment) now and wait until it is warm."""
        server = self._server(dict(os.environ) if env is None else dict(env))
        return server is not None and server.wait_ready(timeout)

    def close(self) -> None:
        """Stop every server (running jobs are not affected: they are waited for by their own threads)."""
        with self._lock:
            self._closed = True
            servers = list(self._servers.values())
        for server in servers:
            server.close()


# -- server side ------------------------------------------------------------------------------------------


def serve(argv: Sequence[str] | None = None) -> None:
    """The server process: ``python -c '…serve()' CONTROL_FD``. Exits when the control socket closes."""
    args = sys.argv[1:] if argv is None else list(argv)
    control = socket.socket(fileno=int(args[0]))
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]  # -c put the working directory first; each child sets what a fresh process would have
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    jobs: dict[int, socket.socket] = {}
    preload = list(PRELOAD)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def load_next() -> None:
        _preload_one(preload.pop(0))
        if not preload:
            gc.freeze()  # what is loaded now stays shared with the children (copy on write)
            with contextlib.suppress(OSError):
                control.send(b"R")  # warm (benchmarks wait for this; the executor does not)

    def warm_for(args: Sequence[str]) -> None:
        """Finish the part of the warm-up this node command needs (``PRELOAD_BEFORE``) before it is forked."""
        for _ in range(preload_needed(args, preload)):
            load_next()

    try:
        while True:
            events = selector.select(0 if preload else None)
            for key, _ in events:
                if key.fileobj is control:
                    inherited = (control.fileno(), wake_r, wake_w, selector.fileno())
                    if not _accept(control, jobs, inherited, warm_for):
                        return
                else:
                    with contextlib.suppress(OSError):
                        while os.read(wake_r, 512):
                            pass
            _reap(jobs)
            if not events and preload:
                load_next()
    finally:
        for sock in jobs.values():
            sock.close()


def preload_needed(args: Sequence[str], pending: Sequence[str]) -> int:
    """How many of the ``pending`` PRELOAD entries the server loads before it forks the command ``args``."""
    target = PRELOAD_BEFORE.get(args[1]) if len(args) > 1 and args[0] == "node" else None
    if target is None or target not in pending:
        return 0
    return list(pending).index(target) + 1


def _preload_one(name: str) -> None:
    """Import a module (or call ``module:function``); a failure is left for the job that needs it to report."""
    module, _, func = name.partition(":")
    try:
        loaded = importlib.import_module(module)
        if func:
            getattr(loaded, func)()
    except Exception:
        pass
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be inherited by a child
        with contextlib.suppress(Exception):
            stream.flush()


def _reap(jobs: dict[int, socket.socket]) -> None:
    """Report the exit status of every finished child on its job socket."""
    while jobs:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock = jobs.pop(pid, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            sock.close()


def _accept(
    control: socket.socket,
    jobs: dict[int, socket.socket],
    inherited: tuple[int, ...],
    warm_for: Callable[[Sequence[str]], None] | None = None,
) -> bool:
    """Take one request from the control socket and fork its job; False when the executor has gone.

    ``warm_for(args)`` runs before the fork (the part of the warm-up the command needs)."""
    try:
        msg, fds, _, _ = socket.recv_fds(control, 1, 4)
    except OSError:
        return False
    if not msg:
        for fd in fds:
            os.close(fd)
        return False
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return True
    job = socket.socket(fileno=fds[0])
    stdio = fds[1:]
    try:
        request = _read_request(job)
    except (OSError, ValueError):
        job.close()
        for fd in stdio:
            os.close(fd)
        return True
    if warm_for is not None:
        args = request.get("args")
        if isinstance(args, list) and all(isinstance(a, str) for a in args):
            warm_for(args)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid == 0:
        others = [s.fileno() for s in jobs.values()]
        _child(request, job, stdio, [*inherited, *others])  # never returns
    for fd in stdio:
        os.close(fd)
    jobs[pid] = job
    return True


def _read_request(job: socket.socket) -> dict[str, Any]:
    job.settimeout(10.0)
    data = b""
    while not data.endswith(b"\n"):
        chunk = job.recv(65536)
        if not chunk:
            raise ValueError("incomplete request")
        data += chunk
    job.settimeout(None)
    request = json.loads(data)
    if not isinstance(request, dict):
        raise ValueError("bad request")
    return request


def _child(request: dict[str, Any], job: socket.socket, stdio: list[int], close: list[int]) -> None:
    """In the forked child: become a fresh-looking process for the job, run the command line, exit."""
    code = 1
    try:
        os.setsid()  # own session and process group, before the executor learns the pid and may signal it
        signal.set_wakeup_fd(-1)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                os.close(fd)
        job.sendall(f"pid {os.getpid()}\n".encode())
        job.close()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [request["argv0"], *request["args"]]
        sys.path.insert(0, request["path0"])
        _fresh_random_state()
        code = _run_command_line()
    except BaseException:  # whatever happens, the child exits here, never returns to the loop
        with contextlib.suppress(Exception):
            traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _fresh_random_state() -> None:
    """Forked children would share the server's numpy global random state; a fresh process has its own."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()


def _run_command_line() -> int:
    """``skyscan`` with ``sys.argv``, as the console script runs it; the exit status a fresh process would have."""
    run: Any = importlib.import_module("skyscan.cli").run_command_line
    return int(run())
