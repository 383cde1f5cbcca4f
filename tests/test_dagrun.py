"""The local DAGMan executor: tiny shell/Python node executables, hand-written .dag and .sub files."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skyscan.errors import InputError, SkyscanError
from skyscan.local.executor import (
    RC_NOT_STARTED,
    BaseObserver,
    DagFinished,
    DagObserver,
    DagStarted,
    LogObserver,
    NodeEvent,
    RunResult,
    local_log_path,
    read_runstate,
    run_dag,
    runstate_path,
)
from skyscan.local.verify import outputs_path, read_outputs, write_outputs
from skyscan.workflow import Output

# A generic node job: records its name in runs.txt (execution order) and count-NAME.txt (number of runs),
# then exits with the second argument (default 0).
JOB_SH = """\
echo "$1" >> runs.txt
echo x >> "count-$1.txt"
exit "${2:-0}"
"""
JOB_SUB = """\
universe = vanilla
executable = job.sh
arguments = "$(JOB) $(rc)"
output = logs/$(JOB).out
error = logs/$(JOB).err
log = logs/dag.log
queue
"""
# Records the wall-clock interval of a process, for overlap checks that need no timing assertions.
SPAN_PY = """\
import sys, time
t0 = time.time()
time.sleep(float(sys.argv[2]))
t1 = time.time()
with open("spans.txt", "a") as fh:
    fh.write(f"{sys.argv[1]} {t0!r} {t1!r}\\n")
"""
SPAN_SUB = """\
executable = span.py
arguments = $(JOB) 0.15
queue
"""


def write(path: Path, text: str, executable: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if executable:
        path.chmod(0o755)
    return path


def sh(path: Path, body: str) -> Path:
    return write(path, "#!/bin/sh\n" + body, executable=True)


def py(path: Path, body: str) -> Path:
    return write(path, f"#!{sys.executable}\n" + body, executable=True)


@pytest.fixture
def dagdir(tmp_path: Path) -> Path:
    sh(tmp_path / "job.sh", JOB_SH)
    write(tmp_path / "job.sub", JOB_SUB)
    return tmp_path


def run(
    dag: Path,
    jobs: int | None = None,
    observer: DagObserver | None = None,
    stop_event: threading.Event | None = None,
    grace: float = 3.0,
) -> RunResult:
    return run_dag(dag, jobs=jobs, observer=observer, stop_event=stop_event, grace=grace, handle_signals=False)


def runs(d: Path) -> list[str]:
    p = d / "runs.txt"
    return p.read_text().split() if p.exists() else []


def count(d: Path, name: str) -> int:
    p = d / f"count-{name}.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


def spans(d: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for line in (d / "spans.txt").read_text().splitlines():
        name, t0, t1 = line.split()
        out[name] = (float(t0), float(t1))
    return out


def max_overlap(intervals: Iterator[tuple[float, float]] | list[tuple[float, float]]) -> int:
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    level = best = 0
    for _, step in events:  # ends sort before starts at equal times
        level += step
        best = max(best, level)
    return best


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def node_state(dag: Path, node: str) -> str | None:
    try:
        return str(read_runstate(dag)["nodes"][node]["state"])
    except (InputError, KeyError):
        return None


class Recorder:
    def __init__(self) -> None:
        self.events: list[object] = []

    def dag_started(self, event: DagStarted) -> None:
        self.events.append(event)

    def node_changed(self, event: NodeEvent) -> None:
        self.events.append(event)

    def dag_finished(self, event: DagFinished) -> None:
        self.events.append(event)

    def states(self, node: str) -> list[str]:
        return [e.state for e in self.events if isinstance(e, NodeEvent) and e.node == node]


# ------------------------------------------------------------------------------------------------
def test_dependency_order_and_runstate(dagdir: Path) -> None:
    dag = write(dagdir / "d.dag", """
JOB A job.sub
JOB B job.sub
JOB C job.sub
JOB D job.sub
VARS B stage="0" npix="12"
PARENT A CHILD B C
PARENT B C CHILD D
""")
    result = run(dag, jobs=2)
    assert result.ok and result.dag_status == 0 and not result.interrupted
    order = runs(dagdir)
    assert order[0] == "A" and order[-1] == "D" and sorted(order[1:3]) == ["B", "C"]
    state = read_runstate(dag)
    assert state["schema"] == "skyscan-runstate/1" and state["dag"] == "d.dag"
    assert state["dag_status"] == 0 and state["finished"] is not None and state["pid"] == os.getpid()
    assert {n["state"] for n in state["nodes"].values()} == {"done"}
    assert state["nodes"]["B"]["vars"] == {"stage": "0", "npix": "12"}
    assert state["nodes"]["B"]["attempts"] == 1 and state["nodes"]["B"]["return_code"] == 0
    assert read_runstate(runstate_path(dag)) == state
    assert "node D done (rc 0" in local_log_path(dag).read_text()
    assert (dagdir / "logs" / "A.out").exists()


def test_jobs_limit_is_respected(tmp_path: Path) -> None:
    py(tmp_path / "span.py", SPAN_PY)
    write(tmp_path / "span.sub", SPAN_SUB)
    write(tmp_path / "p.dag", "".join(f"JOB n{i} span.sub\n" for i in range(5)))
    assert run(tmp_path / "p.dag", jobs=2).ok
    s = spans(tmp_path)
    assert len(s) == 5
    assert max_overlap(list(s.values())) <= 2


def test_nodes_do_run_in_parallel(tmp_path: Path) -> None:
    # each node announces itself and waits for the other one: this only succeeds when both run at once
    sh(tmp_path / "meet.sh", 'touch "$1.here"\ni=0\nwhile [ ! -e "$2.here" ]; do\n'
       '  i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05\ndone\n')
    write(tmp_path / "meet.sub", "executable = meet.sh\narguments = $(me) $(other)\nqueue\n")
    write(tmp_path / "m.dag", 'JOB x meet.sub\nJOB y meet.sub\nVARS x me="x" other="y"\nVARS y me="y" other="x"\n')
    assert run(tmp_path / "m.dag", jobs=2).ok


def test_maxjobs_per_category(tmp_path: Path) -> None:
    py(tmp_path / "span.py", SPAN_PY)
    write(tmp_path / "span.sub", SPAN_SUB)
    write(tmp_path / "c.dag", "".join(f"JOB c{i} span.sub\nCATEGORY c{i} slow\n" for i in range(3))
          + "JOB free span.sub\nMAXJOBS slow 1\n")
    assert run(tmp_path / "c.dag", jobs=4).ok
    s = spans(tmp_path)
    assert max_overlap([s[f"c{i}"] for i in range(3)]) == 1


def test_jobs_limit_is_shared_with_subdags(tmp_path: Path) -> None:
    py(tmp_path / "span.py", SPAN_PY)
    write(tmp_path / "span.sub", SPAN_SUB)
    write(tmp_path / "inner.dag", "JOB i1 span.sub\nJOB i2 span.sub\nJOB i3 span.sub\n")
    write(tmp_path / "outer.dag", "JOB o1 span.sub\nJOB o2 span.sub\nSUBDAG EXTERNAL inner inner.dag\n")
    assert run(tmp_path / "outer.dag", jobs=2).ok
    s = spans(tmp_path)
    assert set(s) == {"o1", "o2", "i1", "i2", "i3"}
    assert max_overlap(list(s.values())) <= 2


def test_retry_after_one_failure(dagdir: Path) -> None:
    sh(dagdir / "flaky.sh", 'echo x >> count-flaky.txt\nif [ -e failed-once ]; then exit 0; fi\n'
       'touch failed-once\nexit 1\n')
    sh(dagdir / "pre.sh", 'echo "$1 $2 $3" >> pre.txt\n')
    write(dagdir / "flaky.sub", "executable = flaky.sh\nqueue\n")
    dag = write(dagdir / "r.dag", "JOB f flaky.sub\nRETRY f 2\nSCRIPT PRE f pre.sh $JOB $RETRY $MAX_RETRIES\n"
                "JOB after job.sub\nPARENT f CHILD after\n")
    rec = Recorder()
    result = run(dag, observer=rec)
    assert result.ok
    assert count(dagdir, "flaky") == 2 and count(dagdir, "after") == 1
    assert (dagdir / "pre.txt").read_text().splitlines() == ["f 0 2", "f 1 2"]
    assert read_runstate(dag)["nodes"]["f"]["attempts"] == 2
    assert rec.states("f") == ["pre", "running", "waiting", "pre", "running", "done"]


def test_retry_unless_exit(dagdir: Path) -> None:
    dag = write(dagdir / "u.dag", """
JOB stop job.sub
VARS stop rc="3"
RETRY stop 4 UNLESS-EXIT 3
JOB again job.sub
VARS again rc="4"
RETRY again 2 UNLESS-EXIT 3
""")
    result = run(dag)
    assert result.dag_status == 1 and set(result.failed) == {"stop", "again"}
    assert count(dagdir, "stop") == 1
    assert count(dagdir, "again") == 3
    nodes = read_runstate(dag)["nodes"]
    assert nodes["stop"]["return_code"] == 3 and "UNLESS-EXIT" in nodes["stop"]["error"]
    assert nodes["again"]["return_code"] == 4 and nodes["again"]["attempts"] == 3


def test_pre_skip_and_failing_pre(dagdir: Path) -> None:
    sh(dagdir / "pre.sh", 'exit "$1"\n')
    sh(dagdir / "post.sh", "touch post-ran\n")
    dag = write(dagdir / "s.dag", """
JOB skip job.sub
SCRIPT PRE skip pre.sh 100
SCRIPT POST skip post.sh
PRE_SKIP skip 100
JOB kid job.sub
PARENT skip CHILD kid
JOB bad job.sub
SCRIPT PRE bad pre.sh 1
PRE_SKIP bad 100
""")
    result = run(dag)
    assert count(dagdir, "skip") == 0 and not (dagdir / "post-ran").exists()
    assert count(dagdir, "kid") == 1
    assert count(dagdir, "bad") == 0
    nodes = read_runstate(dag)["nodes"]
    assert nodes["skip"]["state"] == "skipped" and nodes["skip"]["return_code"] == 100
    assert nodes["bad"]["state"] == "failed" and nodes["bad"]["error"].startswith("PRE script exited with 1")
    assert result.failed == ("bad",)


def test_post_script_gets_return_and_decides(dagdir: Path) -> None:
    sh(dagdir / "post.sh", 'echo "$1 $2 $3" > "post-$1.txt"\nexit "$4"\n')
    sh(dagdir / "pre.sh", "exit 0\n")
    dag = write(dagdir / "p.dag", """
JOB rescued job.sub
VARS rescued rc="7"
SCRIPT POST rescued post.sh $JOB $RETURN $PRE_SCRIPT_RETURN 0
JOB spoiled job.sub
SCRIPT PRE spoiled pre.sh
SCRIPT POST spoiled post.sh $JOB $RETURN $PRE_SCRIPT_RETURN 2
""")
    result = run(dag)
    assert (dagdir / "post-rescued.txt").read_text().split() == ["rescued", "7", "-1"]
    assert (dagdir / "post-spoiled.txt").read_text().split() == ["spoiled", "0", "0"]
    nodes = read_runstate(dag)["nodes"]
    assert nodes["rescued"]["state"] == "done"
    assert nodes["spoiled"]["state"] == "failed" and nodes["spoiled"]["return_code"] == 2
    assert result.failed == ("spoiled",)


def subdag_parent(d: Path, inner: str) -> Path:
    """a -> SUBDAG s (sub.dag written by its PRE script) -> c."""
    write(d / "inner.txt", inner)
    sh(d / "mksub.sh", 'cp inner.txt sub.dag\necho x >> count-mksub.txt\n')
    return write(d / "top.dag", """
JOB a job.sub
SUBDAG EXTERNAL s sub.dag
SCRIPT PRE s mksub.sh
JOB c job.sub
PARENT a CHILD s
PARENT s CHILD c
""")


def test_ready_nodes_start_without_waiting_for_a_poll_interval(dagdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A DAG starts its ready nodes at once, and so does a sub-DAG and the FINAL node's pass: no poll wait first."""
    from skyscan.local import scheduler

    monkeypatch.setattr(scheduler, "POLL_SECONDS", 60.0)  # a wait for a report before starting would take a minute
    dag = subdag_parent(dagdir, "JOB s1 job.sub\n")
    write(dag, dag.read_text() + "FINAL fin job.sub\n")
    t0 = time.monotonic()
    assert run(dag).ok
    assert time.monotonic() - t0 < 30.0
    assert runs(dagdir) == ["a", "s1", "c", "fin"]


def test_subdag_written_by_pre_script(dagdir: Path) -> None:
    dag = subdag_parent(dagdir, "JOB s1 job.sub\nJOB s2 job.sub\nPARENT s1 CHILD s2\n")
    rec = Recorder()
    assert run(dag, observer=rec).ok
    assert runs(dagdir) == ["a", "s1", "s2", "c"]
    outer = read_runstate(dag)["nodes"]["s"]
    assert outer["state"] == "done" and outer["subdag"] == "sub.dag"
    inner = read_runstate(dagdir / "sub.dag")
    assert inner["dag_status"] == 0 and set(inner["nodes"]) == {"s1", "s2"}
    started = [e for e in rec.events if isinstance(e, DagStarted)]
    assert [(e.dag.name, e.depth, e.parent_node) for e in started] == [("top.dag", 0, None), ("sub.dag", 1, "s")]
    assert local_log_path(dagdir / "sub.dag").exists()


def test_failed_subdag_resumes_when_rewritten_identically(dagdir: Path) -> None:
    sh(dagdir / "flaky.sh", 'echo x >> count-flaky.txt\n[ -e fixed ] || exit 5\n')
    write(dagdir / "flaky.sub", "executable = flaky.sh\nqueue\n")
    dag = subdag_parent(dagdir, "JOB s1 job.sub\nJOB s2 flaky.sub\nPARENT s1 CHILD s2\n")
    first = run(dag)
    assert first.failed == ("s",) and first.not_run == ("c",)
    assert "sub-DAG sub.dag failed" in read_runstate(dag)["nodes"]["s"]["error"]
    (dagdir / "fixed").touch()
    assert run(dag).ok
    assert count(dagdir, "mksub") == 2  # the PRE script ran again and rewrote sub.dag ...
    assert count(dagdir, "s1") == 1  # ... with the same content, so s1 was not run again
    assert count(dagdir, "flaky") == 2 and count(dagdir, "a") == 1 and count(dagdir, "c") == 1


def test_changed_dag_content_starts_afresh(dagdir: Path) -> None:
    dag = write(dagdir / "x.dag", 'JOB a job.sub\nJOB b job.sub\nVARS b rc="1"\n')
    assert run(dag).failed == ("b",)
    assert run(dag).failed == ("b",)
    assert count(dagdir, "a") == 1  # same content: a was kept
    write(dag, 'JOB a job.sub\nJOB b job.sub\n')
    assert run(dag).ok
    assert count(dagdir, "a") == 2  # different content: nothing is trusted
    assert "different DAG content" in local_log_path(dag).read_text()


def test_done_and_noop(dagdir: Path) -> None:
    sh(dagdir / "pre.sh", "touch pre-ran\n")
    dag = write(dagdir / "n.dag", """
JOB already job.sub DONE
JOB marked job.sub
DONE marked
JOB nothing missing.sub NOOP
JOB noop_pre missing.sub NOOP
SCRIPT PRE noop_pre pre.sh
JOB after job.sub
PARENT already marked nothing noop_pre CHILD after
""")
    assert run(dag).ok
    assert runs(dagdir) == ["after"]
    assert (dagdir / "pre-ran").exists()  # NOOP skips the job, not the scripts (as DAGMan)
    assert {n["state"] for n in read_runstate(dag)["nodes"].values()} == {"done"}


@pytest.mark.parametrize("fail", [False, True])
def test_final_node_gets_dag_status(dagdir: Path, fail: bool) -> None:
    sh(dagdir / "fin.sh", 'echo "$@" > fin-args.txt\n')
    sh(dagdir / "pre.sh", 'echo "$@" > fin-pre.txt\n')
    write(dagdir / "fin.sub", 'executable = fin.sh\narguments = "$(DAG_STATUS) $(FAILED_COUNT) $(st)"\nqueue\n')
    dag = write(dagdir / "f.dag", f"""
JOB a job.sub
VARS a rc="{3 if fail else 0}"
JOB b job.sub
PARENT a CHILD b
FINAL fin fin.sub
VARS fin st="status=$(DAG_STATUS)"
SCRIPT PRE fin pre.sh $DAG_STATUS $FAILED_COUNT $JOB
""")
    result = run(dag)
    status = "1" if fail else "0"
    failed = "1" if fail else "0"
    assert (dagdir / "fin-args.txt").read_text().split() == [status, failed, f"status={status}"]
    assert (dagdir / "fin-pre.txt").read_text().split() == [status, failed, "fin"]
    assert result.dag_status == int(status)
    assert read_runstate(dag)["nodes"]["fin"]["state"] == "done"
    if fail:
        assert result.not_run == ("b",)
        assert runs(dagdir) == ["a"]


def test_failing_final_node_fails_the_dag(dagdir: Path) -> None:
    dag = write(dagdir / "f.dag", 'JOB a job.sub\nFINAL fin job.sub\nVARS fin rc="1"\n')
    result = run(dag)
    assert result.dag_status == 1 and result.failed == ("fin",)
    assert run(dag).dag_status == 1
    assert count(dagdir, "a") == 1 and count(dagdir, "fin") == 2  # FINAL reruns, done nodes do not


def test_failure_blocks_descendants_only(dagdir: Path) -> None:
    dag = write(dagdir / "b.dag", """
JOB A job.sub
VARS A rc="2"
JOB B job.sub
JOB E job.sub
JOB C job.sub
JOB D job.sub
PARENT A CHILD B
PARENT B CHILD E
PARENT C CHILD D
""")
    result = run(dag, jobs=1)
    assert result.dag_status == 1 and result.failed == ("A",) and result.not_run == ("B", "E")
    assert sorted(runs(dagdir)) == ["A", "C", "D"]
    nodes = read_runstate(dag)["nodes"]
    assert nodes["B"]["state"] == "waiting" and "ancestor failed" in nodes["B"]["error"]
    assert nodes["A"]["return_code"] == 2 and "job exited with 2" in nodes["A"]["error"]
    assert result.counts == {"failed": 1, "waiting": 2, "done": 2}


def test_submit_file_features(tmp_path: Path) -> None:
    sh(tmp_path / "show.sh", 'cat\necho "err line" >&2\necho "cwd=$(pwd)"\necho "A=$A B=$B"\necho "args=$*"\n')
    write(tmp_path / "work" / "in.txt", "from stdin\n")
    write(tmp_path / "show.sub", """
executable = show.sh
initialdir = work
input = in.txt
output = out/both.log
error = out/both.log
environment = A=1;B=two words
arguments = old-style $(Cluster).$(Process) $(ClusterId) $(ProcId) $(JOB)
queue 1
""")
    write(tmp_path / "multi.sub", "executable = show.sh\nqueue 3\n")
    write(tmp_path / "nox.sub", "executable = does-not-exist.sh\nqueue\n")
    dag = write(tmp_path / "s.dag", "JOB show show.sub\nJOB multi multi.sub\nJOB nox nox.sub\n")
    result = run(dag)
    text = (tmp_path / "work" / "out" / "both.log").read_text()
    assert "from stdin" in text and "err line" in text
    assert f"cwd={(tmp_path / 'work').resolve()}" in text or f"cwd={tmp_path / 'work'}" in text
    assert "A=1 B=two words" in text
    assert "args=old-style 0.0 0 0 show" in text
    nodes = read_runstate(dag)["nodes"]
    assert nodes["show"]["state"] == "done"
    assert nodes["multi"]["state"] == "failed" and "queue 3" in nodes["multi"]["error"]
    assert nodes["nox"]["return_code"] == RC_NOT_STARTED and "cannot start" in nodes["nox"]["error"]
    assert set(result.failed) == {"multi", "nox"}


def test_script_defer(dagdir: Path) -> None:
    sh(dagdir / "pre.sh", 'echo x >> count-pre.txt\n[ -e deferred ] && exit 0\ntouch deferred\nexit 5\n')
    dag = write(dagdir / "d.dag", "JOB a job.sub\nSCRIPT DEFER 5 0 PRE a pre.sh\n")
    assert run(dag).ok
    assert count(dagdir, "pre") == 2 and count(dagdir, "a") == 1
    assert read_runstate(dag)["nodes"]["a"]["attempts"] == 1


def test_observer_events_and_log_lines(dagdir: Path) -> None:
    sh(dagdir / "ok.sh", "exit 0\n")
    dag = write(dagdir / "o.dag", """
JOB a job.sub
VARS a stage="0" npix="48"
SCRIPT PRE a ok.sh
SCRIPT POST a ok.sh
""")
    rec = Recorder()

    class Broken(Recorder):
        def node_changed(self, event: NodeEvent) -> None:
            raise RuntimeError("display crashed")

    assert run(dag, observer=rec).ok
    assert rec.states("a") == ["pre", "running", "post", "done"]
    first, last = rec.events[0], rec.events[-1]
    assert isinstance(first, DagStarted) and first.nodes[0].vars == {"stage": "0", "npix": "48"}
    assert isinstance(last, DagFinished) and last.result.ok
    done = next(e for e in rec.events if isinstance(e, NodeEvent) and e.state == "done")
    assert done.vars["npix"] == "48" and done.return_code == 0 and done.seconds is not None
    assert done.attempt == 1

    stream = io.StringIO()
    os.remove(runstate_path(dag))
    assert run(dag, observer=LogObserver(stream)).ok
    lines = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(stamp + r" dag o\.dag started: 1 nodes, 0 already done \(fresh start\)", lines[0])
    assert any(re.fullmatch(stamp + r" node a done \(rc 0, \d+\.\d s\)", line) for line in lines)
    assert re.fullmatch(stamp + r" dag o\.dag finished with status 0 .*", lines[-1])

    os.remove(runstate_path(dag))
    assert run(dag, observer=Broken()).ok
    assert run(dag, observer=BaseObserver()).ok  # the no-op base class satisfies the protocol
    assert "observer error in node_changed: RuntimeError: display crashed" in local_log_path(dag).read_text()


def test_htcondor_dags_written_dag_runs(tmp_path: Path) -> None:
    htcondor2 = pytest.importorskip("htcondor2")
    dags = pytest.importorskip("htcondor2.dags")
    exe = sh(tmp_path / "work.sh", 'printf "%s\\n" "$*" >> out.txt\n')
    d = dags.DAG()
    layer = d.layer(
        name="work",
        submit_description=htcondor2.Submit({"executable": str(exe), "arguments": "\"'$(x)' $(JOB)\"",
                                             "output": "$(tag).log"}),
        vars=[{"x": "one  1", "tag": "w0"}, {"x": "two\\2", "tag": "w1"}],
        retries=1,
    )
    layer.child_layer(name="sum", submit_description=htcondor2.Submit({"executable": str(exe), "arguments": "sum"}))
    path = dags.write_dag(d, tmp_path, dag_file_name="w.dag")
    assert run(path, jobs=2).ok
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert sorted(lines[:2]) == ["one  1 work:0", "two\\2 work:1"] and lines[2] == "sum"
    assert read_runstate(path)["nodes"]["work:1"]["vars"] == {"x": "two\\2", "tag": "w1"}


def test_stop_event_interrupts_cleanly(dagdir: Path) -> None:
    sh(dagdir / "slow.sh", 'echo $$ > slow.pid.tmp && mv slow.pid.tmp slow.pid\nexec sleep 30\n')
    write(dagdir / "slow.sub", "executable = slow.sh\nqueue\n")
    dag = write(dagdir / "i.dag", "JOB a job.sub\nJOB slow slow.sub\nPARENT a CHILD slow\nFINAL fin job.sub\n")
    stop = threading.Event()
    box: list[RunResult] = []
    t = threading.Thread(target=lambda: box.append(run(dag, stop_event=stop, grace=5.0)))
    t.start()
    wait_for(lambda: (dagdir / "slow.pid").exists())
    stop.set()
    t.join(timeout=30)
    assert not t.is_alive()
    result = box[0]
    assert result.interrupted and result.dag_status is None and not result.ok
    pid = int((dagdir / "slow.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the child was terminated (and reaped by us)
    state = read_runstate(dag)
    assert state["interrupted"] is True and state["dag_status"] is None
    assert state["nodes"]["slow"]["state"] == "waiting" and state["nodes"]["slow"]["error"] == "interrupted"
    assert state["nodes"]["fin"]["state"] == "waiting" and count(dagdir, "fin") == 0  # no FINAL on interrupt


def _executor(dag: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "skyscan.dagrun", str(dag), "-q", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


BLOCKING_SH = """\
echo x >> count-b.txt
trap 'echo term > term.txt; exit 143' TERM
echo $$ > b.pid.tmp && mv b.pid.tmp b.pid
if [ -e block ]; then sleep 30 & wait $!; fi
exit 0
"""


def test_resume_after_kill(dagdir: Path) -> None:
    sh(dagdir / "b.sh", BLOCKING_SH)
    write(dagdir / "b.sub", "executable = b.sh\nqueue\n")
    dag = write(dagdir / "k.dag", "JOB a job.sub\nJOB b b.sub\nJOB c job.sub\nPARENT a CHILD b\nPARENT b CHILD c\n")
    (dagdir / "block").touch()
    proc = _executor(dag, "-j", "1")
    try:
        wait_for(lambda: (dagdir / "b.pid").exists() and node_state(dag, "a") == "done")
    finally:
        proc.kill()
        proc.wait()
    orphan = int((dagdir / "b.pid").read_text())
    os.killpg(orphan, signal.SIGKILL)  # a killed executor cannot clean up its children
    state = read_runstate(dag)
    assert state["finished"] is None and state["nodes"]["a"]["state"] == "done"
    assert state["nodes"]["b"]["state"] in ("waiting", "running")
    (dagdir / "block").unlink()
    assert run(dag).ok
    assert (count(dagdir, "a"), count(dagdir, "b"), count(dagdir, "c")) == (1, 2, 1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_and_leaves_consistent_state(dagdir: Path, sig: signal.Signals) -> None:
    sh(dagdir / "b.sh", BLOCKING_SH)
    write(dagdir / "b.sub", "executable = b.sh\nqueue\n")
    dag = write(dagdir / "k.dag", "JOB a job.sub\nJOB b b.sub\nPARENT a CHILD b\nFINAL fin job.sub\n")
    (dagdir / "block").touch()
    proc = _executor(dag)
    try:
        wait_for(lambda: (dagdir / "b.pid").exists())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err.decode()
    assert (dagdir / "term.txt").exists()  # the node's process got SIGTERM
    state = json.loads(runstate_path(dag).read_text())  # valid JSON: written atomically
    assert state["interrupted"] is True and state["dag_status"] is None and state["finished"] is not None
    assert state["nodes"]["a"]["state"] == "done"
    assert state["nodes"]["b"]["state"] == "waiting" and state["nodes"]["b"]["error"] == "interrupted"
    assert count(dagdir, "fin") == 0
    assert not [p for p in dagdir.iterdir() if p.name.endswith(".part")]
    (dagdir / "block").unlink()
    assert run(dag).ok
    assert (count(dagdir, "a"), count(dagdir, "b"), count(dagdir, "fin")) == (1, 2, 1)


def test_refuses_a_dag_another_live_executor_runs(dagdir: Path) -> None:
    dag = write(dagdir / "x.dag", "JOB a job.sub\n")
    other = subprocess.Popen(["sleep", "30"])
    try:
        runstate_path(dag).write_text(json.dumps({
            "schema": "skyscan-runstate/1", "dag": "x.dag", "pid": other.pid, "finished": None, "nodes": {},
        }))
        with pytest.raises(SkyscanError, match="already being run by process"):
            run(dag)
    finally:
        other.kill()
        other.wait()
    assert run(dag).ok


def test_bad_input(dagdir: Path) -> None:
    with pytest.raises(InputError, match=r"x\.dag:1"):
        run(write(dagdir / "x.dag", "JOBS a job.sub\n"))
    with pytest.raises(InputError, match="at least 1"):
        run(write(dagdir / "y.dag", "JOB a job.sub\n"), jobs=0)
    with pytest.raises(InputError, match="no run-state file"):
        read_runstate(dagdir / "y.dag")


# --- declared outputs: a done node whose output is damaged runs again on resume ------------------------------
def _declare(dag: Path, outputs: dict[str, list[Output]]) -> None:
    write_outputs(dag, outputs)


def test_done_node_with_a_missing_output_runs_again(dagdir: Path) -> None:
    dag = write(dagdir / "x.dag", "JOB a job.sub\nJOB b job.sub\nJOB c job.sub\nPARENT a CHILD b\n")
    _declare(dag, {"a": [Output("count-a.txt")], "b": [Output("count-b.txt")], "c": [Output("count-c.txt")]})
    assert run(dag).ok and sorted(runs(dagdir)) == ["a", "b", "c"]
    (dagdir / "count-a.txt").unlink()
    (dagdir / "count-c.txt").write_text("")  # empty: not a whole output either
    assert run(dag).ok
    assert sorted(runs(dagdir)[3:]) == ["a", "c"]  # exactly the damaged ones; b (a's child) stands
    log = local_log_path(dag).read_text()
    assert "a: its output count-a.txt: missing: running it again" in log
    assert "c: its output count-c.txt: empty: running it again" in log
    assert run(dag).ok and len(runs(dagdir)) == 5  # whole again: nothing reruns


def test_outputs_of_other_dag_content_and_bad_checks_are_ignored_or_refused(dagdir: Path) -> None:
    dag = write(dagdir / "x.dag", "JOB a job.sub\n")
    _declare(dag, {"a": [Output("count-a.txt")]})
    assert outputs_path(dag).name == "x.outputs.json"
    write(dag, "JOB a job.sub\n# changed\n")
    assert read_outputs(dag) is None  # declared for other content
    with pytest.raises(InputError, match="unknown output check"):
        _declare(dag, {"a": [Output("count-a.txt", "os:system")]})
    with pytest.raises(InputError, match="inside the DAG's folder"):
        _declare(dag, {"a": [Output("../elsewhere.txt")]})


def test_a_named_check_decides(dagdir: Path) -> None:
    # the result files' own verifier, applied to something that is no result file: the node runs again
    dag = write(dagdir / "x.dag", "JOB a job.sub\n")
    _declare(dag, {"a": [Output("count-a.txt", "skyscan.nodes.results:verify_result")]})
    assert run(dag).ok
    assert run(dag).ok
    assert runs(dagdir) == ["a", "a"]
    assert "count-a.txt: unreadable" in local_log_path(dag).read_text()


def test_damaged_output_inside_a_subdag_reruns_only_that_node(dagdir: Path) -> None:
    dag = subdag_parent(dagdir, "JOB s1 job.sub\nJOB s2 job.sub\n")
    assert run(dag).ok
    _declare(dag, {"a": [Output("count-a.txt")], "s": [Output("sub.dag", "subdag")]})
    _declare(dagdir / "sub.dag", {"s1": [Output("count-s1.txt")], "s2": [Output("count-s2.txt")]})
    (dagdir / "count-s2.txt").unlink()
    assert run(dag).ok
    assert runs(dagdir)[4:] == ["s2"]  # not a, s1 or c
    assert count(dagdir, "mksub") == 2  # the sub-DAG node ran again (its PRE script rewrote it identically)
    assert "s: its output sub.dag: node s2 of sub.dag: count-s2.txt: missing" in local_log_path(dag).read_text()
