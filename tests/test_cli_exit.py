"""How a ``skyscan`` process ends: the status Python would give it, with its exit functions run and its output
complete, although it leaves without the interpreter's teardown (``os._exit``) once the command is done."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PROGRAM = textwrap.dedent(
    """
    import atexit, sys, threading, time
    import click
    from skyscan import cli

    @cli.cli.command("probe")
    @click.argument("what")
    @click.argument("path")
    def probe(what: str, path: str) -> None:
        atexit.register(lambda: open(path + ".atexit", "w").write("ran"))
        if what == "lines":
            for i in range(200_000):  # far more than one buffer of a pipe: every line must arrive
                print(f"line {i}")
        elif what == "raise":
            raise RuntimeError("boom")
        elif what == "message":
            sys.exit("a message instead of a code")
        elif what == "code":
            sys.exit(300)
        elif what == "thread":
            def later() -> None:
                time.sleep(0.5)
                open(path + ".thread", "w").write("done")
            threading.Thread(target=later).start()  # not a daemon: the exit waits for it
        elif what == "interrupt":
            raise KeyboardInterrupt

    sys.argv = ["skyscan", "probe", *sys.argv[-2:]]
    cli.main()
    """
)


def _run(what: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROGRAM, what, str(tmp_path / "p")], capture_output=True, text=True,
                          timeout=60)


def test_output_is_complete_and_exit_functions_run(tmp_path: Path) -> None:
    done = _run("lines", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 200_000 and lines[-1] == "line 199999"
    assert (tmp_path / "p.atexit").read_text() == "ran"


def test_statuses_are_those_python_gives(tmp_path: Path) -> None:
    raised = _run("raise", tmp_path)
    assert raised.returncode == 1 and "RuntimeError: boom" in raised.stderr  # the command line's one-line report
    message = _run("message", tmp_path)
    assert message.returncode == 1 and message.stderr.strip() == "a message instead of a code"
    assert _run("code", tmp_path).returncode == 300 & 0xFF
    interrupted = _run("interrupt", tmp_path)  # click turns Ctrl-C inside a command into "Aborted!" and 1
    assert interrupted.returncode == 1 and interrupted.stderr.strip() == "Aborted!"
    assert (tmp_path / "p.atexit").read_text() == "ran"


def test_a_running_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    done = _run("thread", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.thread").read_text() == "done"


def test_bad_input_still_exits_2_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "skyscan.cli", "node", "prepare", str(tmp_path / "missing.json"),
                           "--outdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "missing.json" in done.stderr
