"""SIGTERM (the executor's, DAGMan's or the watcher's stop) unwinds a node command: no temporary file is left."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

CHILD = textwrap.dedent(
    """
    import sys, time
    import click
    from skyscan import cli
    from skyscan.atomic import atomic_path

    @cli.node.command("slow-write")
    @click.argument("path")
    def slow_write(path: str) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            print("writing", flush=True)
            time.sleep(60)

    sys.argv = ["skyscan", "node", "slow-write", sys.argv[-1]]
    cli.main()
    """
)


def test_sigterm_during_an_atomic_write_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "product.h5"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]  # the write is under way
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM  # still "killed by SIGTERM", as the executor records it
    assert sorted(p.name for p in tmp_path.iterdir()) == []
