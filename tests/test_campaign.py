"""Campaigns: inputs, create (manifest, DAGs, rejections), status, submit, and a real local run killed and resumed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import htcondor2
import pytest
from click.testing import CliRunner

import skyscan.campaign as cp
from skyscan.cli.campaign import campaign as campaign_cli
from skyscan.errors import InputError, SkyscanError
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simbatch import BatchSpec, simulate_batch
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

GOLDEN = Path(__file__).parent / "golden" / "campaign"
PYTHON = "python3"  # a fixed interpreter name: written files must not depend on the machine
# Small tracks without noise: fast to simulate and to reconstruct.
BATCH = BatchSpec(count=5, seed=21, energy_range_gev=(5e3, 3e4), noise_rate_hz=0.0, run_id=5, first_event_id=10)
# The fast test configuration: nside 1 (12 pixels) then 8 pixels at nside 2; no retries, no plots.
FAST_CONFIG = """\
scan:
  rule: fixed
  stages:
    - {nside: 1, pixels_per_job: 12}
    - {nside: 2, refine: 2, pixels_per_job: 8}
  resolve: {min_pixels: 0}
dag: {retries: 0}
merge: {plots: false}
reco: {max_iterations: 30}
"""
BAD_EVENT = {  # valid JSON with ids, but a pulse on a DOM that ic86 lacks
    "schema": "skyscan-event/1",
    "run_id": 5,
    "event_id": 99,
    "time": "2026-01-01T00:00:00Z",
    "pulses": {"string": [1], "om": [99], "time": [1.0], "charge": [1.0]},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 5 simulated events (run 5, events 10..14) and one malformed event (bad.json)."""
    folder = tmp_path_factory.mktemp("inputs")
    for item in simulate_batch(BATCH, ic86()):
        doc = event_to_dict(item.event, item.truth)
        (folder / f"ev{item.event.event_id}.json").write_text(json.dumps(doc), encoding="utf-8")
    (folder / "bad.json").write_text(json.dumps(BAD_EVENT), encoding="utf-8")
    return folder


@pytest.fixture
def fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST_CONFIG, encoding="utf-8")
    return path


def _create(inputs: list[str], campdir: Path, config: Path, site: str = "local", **kw: Any) -> cp.Manifest:
    return cp.create_campaign(inputs, campdir, load_config(config), load_site(site), site_arg=site, python=PYTHON, **kw)


def _events(inputs: Path) -> list[Path]:
    return sorted(inputs.glob("ev*.json"))


# --- inputs ---------------------------------------------------------------------------------------------------------
def test_expand_inputs_files_folders_globs_and_lists(inputs: Path, tmp_path: Path) -> None:
    events = _events(inputs)
    listing = tmp_path / "list.txt"
    listing.write_text(
        f"# events of the campaign\n{events[0]}\n\n{os.path.relpath(events[1], tmp_path)}  # relative\nmissing.json\n",
        encoding="utf-8",
    )
    got = cp.expand_inputs([str(events[2]), str(inputs), str(inputs / "ev1[34].json"), str(listing)])
    paths = [c.path for c in got]
    assert paths[0] == events[2]
    assert paths[1:7] == sorted(inputs.glob("*.json"))  # a folder: its *.json files, sorted
    assert paths[7:9] == [inputs / "ev13.json", inputs / "ev14.json"]  # a glob, sorted
    assert paths[9] == events[0] and paths[10].resolve() == events[1].resolve()  # a list, relative to itself
    assert paths[11] == tmp_path / "missing.json" and got[11].problem is not None and "no such" in got[11].problem
    assert all(c.problem is None for c in got[:11])


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: [str(d / "nothing-here.json")], ("no such file or folder",)),
        (lambda d: [str(d / "*.nomatch")], ("matches no file",)),
        (lambda d: [str(d / "empty")], ("holds no *.json",)),
        (lambda d: [], ("no inputs",)),
    ],
)
def test_expand_inputs_errors(tmp_path: Path, make: Any, words: tuple[str, ...]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as info:
        cp.expand_inputs(make(tmp_path))
    for word in words:
        assert word in str(info.value)


# --- create ---------------------------------------------------------------------------------------------------------
def test_create_writes_manifest_dags_and_rejects_bad_and_duplicate_inputs(
    inputs: Path, tmp_path: Path, fast_config: Path
) -> None:
    events = _events(inputs)
    other = tmp_path / "same-ids.json"  # another file with the ids of events[1]
    doc = json.loads(events[1].read_text(encoding="utf-8"))
    doc["stream"] = "bronze"
    other.write_text(json.dumps(doc), encoding="utf-8")
    camp = tmp_path / "camp"
    progress: list[cp.CreateProgress] = []
    m = _create([str(inputs), str(events[0]), str(other)], camp, fast_config, max_running=2, progress=progress.append)

    assert [e.name for e in m.events] == [f"run5-evt{i}" for i in range(10, 15)]
    assert [(p.done, p.total) for p in progress] == [(i, 8) for i in range(1, 9)]
    assert progress[-1].accepted == 5 and progress[-1].rejected == 3
    reasons = {Path(r.input).name: r.reason for r in m.rejected}
    assert set(reasons) == {"bad.json", events[0].name, "same-ids.json"}
    assert "om 99" in reasons["bad.json"] and "not in the geometry" in reasons["bad.json"]
    assert reasons[events[0].name].startswith("duplicate of run 5 event 10")
    assert reasons["same-ids.json"].startswith("duplicate of run 5 event 11")

    doc = json.loads((camp / "campaign.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "skyscan-campaign/1"
    assert doc["counts"] == {"inputs": 8, "accepted": 5, "rejected": 3}
    assert doc["software"]["version"]
    assert doc["config"]["sha256"] == hashlib.sha256((camp / "config.yaml").read_bytes()).hexdigest()
    assert load_config(camp / "config.yaml").doc == load_config(fast_config).doc
    for entry, path in zip(doc["events"], events, strict=True):
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["input"] == str(path.absolute()) and entry["truth"] is True
        folder = camp / entry["dir"]
        assert (folder / "skyscan.dag").is_file() and (folder / "event.json").read_bytes() == path.read_bytes()
        assert (folder / "config.yaml").read_bytes() == (camp / "config.yaml").read_bytes()
    bad = next(r for r in doc["rejected"] if r["input"].endswith("bad.json"))
    assert bad["sha256"] == hashlib.sha256((inputs / "bad.json").read_bytes()).hexdigest()
    assert not (camp / "events" / "run5-evt99").exists()
    assert os.access(camp / "skyscan-campaign", os.X_OK)

    # every DAG the campaign wrote is accepted by HTCondor's own DAG submission code
    for dag in [camp / "campaign.dag", *sorted(camp.glob("events/*/skyscan.dag"))]:
        htcondor2.Submit.from_dag(str(dag), {"DagmanPath": "/bin/true"})
    htcondor2.Submit(cp.read_manifest(camp).campdir.joinpath("report.sub").read_text(encoding="utf-8"))


def test_campaign_dag_matches_the_golden_file(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    camp = tmp_path / "camp"
    _create([str(p) for p in _events(inputs)[:3]], camp, fast_config, max_running=4)
    text = (camp / "campaign.dag").read_text(encoding="utf-8")
    assert text == (GOLDEN / "campaign.dag").read_text(encoding="utf-8")
    assert str(tmp_path) not in text and not any(w.startswith("/") for w in text.split())
    assert (camp / "report.sub").read_bytes() == (GOLDEN / "report-local.sub").read_bytes()
    # the DIR of each event node holds that event's graph
    for line in text.splitlines():
        if line.startswith("SUBDAG EXTERNAL"):
            _, _, name, dag, keyword, folder = line.split()
            assert (keyword, dag, folder) == ("DIR", "skyscan.dag", f"events/{name}")
            assert (camp / folder / dag).is_file()


def test_campaign_dag_in_writer_chunks_equals_one_writer_call() -> None:
    """The event nodes are written in chunks (the writer is quadratic); the text must not depend on that."""
    from skyscan.condor.dagwriter import dag_text

    names = [f"run1-evt{i}" for i in range(60)]
    whole = dag_text(cp.campaign_workflow(names, 7), "")
    chunked = cp.campaign_dag_text(names, 7)
    body = [line for line in chunked.splitlines() if not line.startswith("# skyscan campaign DAG") and
            not line.startswith("# Written by")]  # fmt: skip
    expected = [
        f"SUBDAG EXTERNAL {line.split()[2]} skyscan.dag DIR events/{line.split()[2]}"
        if line.startswith("SUBDAG EXTERNAL") else line
        for line in whole.splitlines()
    ]  # fmt: skip
    assert body == expected
    assert sum(line.startswith("SUBDAG EXTERNAL") for line in body) == 60


def test_osg_campaign_report_runs_on_the_submit_host(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    camp = tmp_path / "camp"
    _create([str(_events(inputs)[0])], camp, fast_config, site="osg")
    assert (camp / "report.sub").read_text(encoding="utf-8") == (GOLDEN / "report-osg.sub").read_text(encoding="utf-8")
    with pytest.raises(InputError, match="no shared file system"):
        cp.run_campaign(camp)


def test_create_refuses_what_it_should(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    camp = tmp_path / "camp"
    _create([str(_events(inputs)[0])], camp, fast_config)
    with pytest.raises(InputError, match="already holds a campaign"):
        _create([str(_events(inputs)[0])], camp, fast_config)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(InputError, match="not empty"):
        _create([str(_events(inputs)[0])], foreign, fast_config)
    with pytest.raises(InputError, match="no valid event"):
        _create([str(inputs / "bad.json")], tmp_path / "none", fast_config)
    with pytest.raises(InputError, match="--max-running"):
        _create([str(_events(inputs)[0])], tmp_path / "zero", fast_config, max_running=0)


def test_interrupted_create_resumes(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    camp = tmp_path / "camp"
    first = _create([str(p) for p in _events(inputs)[:2]], camp, fast_config)
    (camp / "campaign.json").unlink()  # as if create had stopped before writing the manifest
    stamp = (camp / "events" / "run5-evt10" / "event.json").stat().st_mtime_ns
    again = _create([str(p) for p in _events(inputs)[:2]], camp, fast_config)
    assert [e.name for e in again.events] == [e.name for e in first.events]
    assert (camp / "events" / "run5-evt10" / "event.json").stat().st_mtime_ns == stamp
    (camp / "campaign.json").unlink()
    other = tmp_path / "other.yaml"
    other.write_text(FAST_CONFIG.replace("max_iterations: 30", "max_iterations: 31"), encoding="utf-8")
    with pytest.raises(InputError, match="another configuration"):
        _create([str(p) for p in _events(inputs)[:2]], camp, other)


# --- status and submit ----------------------------------------------------------------------------------------------
def test_status_of_a_new_campaign(inputs: Path, tmp_path: Path, fast_config: Path, cli_runner: CliRunner) -> None:
    camp = tmp_path / "camp"
    _create([str(inputs)], camp, fast_config)
    st = cp.campaign_status(camp)
    assert st.state == "not-started"
    assert [e.state for e in st.events] == ["waiting"] * 5 and [e.state for e in st.rejected] == ["rejected"]
    assert st.counts["waiting"] == 5 and st.counts["rejected"] == 1 and st.report is None
    result = cli_runner.invoke(campaign_cli, ["status", str(camp), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "skyscan-campaign-status/1" and len(doc["events"]) == 5
    assert doc["rejected"][0]["reason"].endswith("is not in the geometry")
    text = cli_runner.invoke(campaign_cli, ["status", str(camp)]).output
    assert "run5-evt14" in text and "rejected bad.json" in text


def _fake_runstate(folder: Path, pid: int, finished: str | None, nodes: dict[str, str]) -> None:
    doc = {
        "schema": "skyscan-runstate/1", "dag": "skyscan.dag", "pid": pid, "started": "2026-01-01T00:00:00Z",
        "updated": "2026-01-01T00:00:30Z", "finished": finished, "dag_status": None if finished is None else 0,
        "nodes": {name: {"state": state, "attempts": 1, "return_code": None, "started": "2026-01-01T00:00:00Z",
                         "finished": "2026-01-01T00:00:30Z" if state == "done" else None, "vars": {},
                         "subdag": None, "error": None} for name, state in nodes.items()},
    }  # fmt: skip
    (folder / "skyscan.dag.runstate.json").write_text(json.dumps(doc), encoding="utf-8")


def test_event_states_from_run_state_files(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    """running (live runner), interrupted (dead runner, no end state), done (end state and summary)."""
    camp = tmp_path / "camp"
    m = _create([str(p) for p in _events(inputs)[:3]], camp, fast_config)
    ended = subprocess.Popen(["true"])
    ended.wait()
    dead_pid = ended.pid  # reaped: no such process any more
    live, gone, finished = (m.event_dir(e) for e in m.events)
    _fake_runstate(live, os.getpid(), None, {"prepare": "done", "scan-s0-0000": "running"})
    _fake_runstate(gone, dead_pid, None, {"prepare": "done", "scan-s0-0000": "running"})
    _fake_runstate(finished, dead_pid, "2026-01-01T00:01:00Z", {"prepare": "done", "merge": "done", "final": "done"})
    (finished / "end_state.json").write_text(json.dumps({"schema": "skyscan-end-state/1", "state": "done",
                                                         "dag_status": 0, "failed_count": 0, "time": "x"}))  # fmt: skip
    (finished / "summary.json").write_text(json.dumps({"pixels": {"scanned": 20, "failed": 0}}), encoding="utf-8")
    st = cp.campaign_status(camp)
    by_name = {e.name: e for e in st.events}
    a, b, c = (by_name[e.name] for e in m.events)
    assert (a.state, a.stage, a.pixels_total) == ("running", "stage 0 (nside 1)", 12)
    assert (b.state, b.stage) == ("interrupted", "stage 0 (nside 1)")
    assert (c.state, c.stage, c.pixels_done, c.wall_seconds) == ("done", "done", 20, 30.0)
    assert st.state == "running" and st.counts["running"] == 1 and st.counts["interrupted"] == 1
    assert "interrupted" in cp.format_campaign_status(st)


def test_submit_without_a_schedd_leaves_the_campaign_ready(
    inputs: Path, tmp_path: Path, fast_config: Path, monkeypatch: pytest.MonkeyPatch, cli_runner: CliRunner
) -> None:
    from skyscan.condor import schedd as condor

    camp = tmp_path / "camp"
    _create([str(_events(inputs)[0])], camp, fast_config)

    def no_schedd() -> None:
        raise RuntimeError("Unable to locate local daemon")

    monkeypatch.setattr(condor, "find_schedd", no_schedd)
    with pytest.raises(SkyscanError) as info:
        cp.submit_campaign(camp)
    assert "no HTCondor schedd" in str(info.value) and "condor_submit_dag" in str(info.value)
    result = cli_runner.invoke(campaign_cli, ["submit", str(camp)])
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    dry = cli_runner.invoke(campaign_cli, ["submit", str(camp), "--dry-run"])
    assert dry.exit_code == 0 and "condor_submit_dag -batch-name skyscan-campaign-camp campaign.dag" in dry.output


def test_cli_create_and_input_errors(inputs: Path, tmp_path: Path, fast_config: Path, cli_runner: CliRunner) -> None:
    camp = tmp_path / "camp"
    result = cli_runner.invoke(campaign_cli, ["create", str(inputs), "-o", str(camp), "--config", str(fast_config)])
    assert result.exit_code == 0, result.output
    assert "5 events (1 rejected)" in result.output and "bad.json" in result.output
    for args, word in (
        (["create", str(tmp_path / "nowhere"), "-o", str(tmp_path / "c2")], "no such file or folder"),
        (["status", str(tmp_path)], "not a campaign directory"),
        (["run", str(tmp_path / "missing")], "no such campaign directory"),
        (["create", str(inputs), "-o", str(tmp_path / "c3"), "--containment", "nonsense"], "containment"),
    ):
        bad = cli_runner.invoke(campaign_cli, args)
        assert bad.exit_code == 2, (args, bad.output)
        assert bad.stderr.startswith("skyscan: error: ") and word in bad.stderr and len(bad.stderr.splitlines()) == 1


# --- a real campaign, killed and resumed ----------------------------------------------------------------------------
def _runstate(camp: Path) -> dict[str, Any]:
    try:
        doc = json.loads((camp / "campaign.dag.runstate.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _fingerprint(folder: Path) -> dict[str, int]:
    files = [*folder.glob("stage*/scan-*.h5"), folder / "summary.json", folder / "end_state.json"]
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in files}


def test_local_campaign_killed_and_resumed(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    camp = tmp_path / "camp"
    m = cp.create_campaign([str(inputs)], camp, load_config(fast_config), load_site("local"), max_running=2)
    assert len(m.events) == 5 and len(m.rejected) == 1
    runner = [sys.executable, "-m", "skyscan.cli_campaign", "run", str(camp), "--jobs", "2"]
    log = tmp_path / "first-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(runner, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            states = [n.get("state") for name, n in _runstate(camp).get("nodes", {}).items() if name != "report"]
            if "done" in states and "running" in states:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the runner ended before it could be killed:\n{log.read_text()}"
        os.kill(proc.pid, signal.SIGKILL)  # for real: no chance to clean up
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    nodes = _runstate(camp)["nodes"]
    done = [name for name, n in nodes.items() if n["state"] == "done"]
    assert done and len(done) < 5
    before = {name: _fingerprint(camp / "events" / name) for name in done}
    starts = {name: (camp / "events" / name / "skyscan.dag.local.log").read_text().count("dag skyscan.dag started")
              for name in done}  # fmt: skip

    st = cp.campaign_status(camp)
    assert st.state == "stopped" and st.counts["done"] >= len(done)
    assert all(e.state == "done" and e.stage == "done" and e.pixels_total == 20 for e in st.events if e.name in done)
    for e in st.events:  # the runner is dead: a scan it had started is interrupted until its end state exists
        folder = camp / "events" / e.name
        started = (folder / "skyscan.dag.runstate.json").is_file()
        ended = (folder / "end_state.json").is_file()  # the FINAL node's PRE script may have written it
        assert e.state == ("done" if ended else "interrupted" if started else "waiting"), e

    again = subprocess.run(runner, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming, 5 events, {len(done)} already done" in again.stderr

    st = cp.campaign_status(camp)
    assert st.state == "done" and st.counts["done"] == 5 and st.report == "report/report.html"
    for name in done:  # the events done before the kill were not touched again
        assert _fingerprint(camp / "events" / name) == before[name]
        text = (camp / "events" / name / "skyscan.dag.local.log").read_text()
        assert text.count("dag skyscan.dag started") == starts[name]

    report = json.loads((camp / "report" / "report.json").read_text(encoding="utf-8"))
    refs = report["references"]
    assert refs["n"] == 5 and refs["sources"] == {"truth": 5}
    assert isinstance(refs["angular_error_median_deg"], float) and refs["angular_error_median_deg"] >= 0
    assert refs["coverage"]["90"]["n"] == 5 and 0.0 <= refs["coverage"]["90"]["fraction"] <= 1.0
    assert len(refs["coverage_curve"]) >= 9
    html = (camp / "report" / "report.html").read_text(encoding="utf-8")
    assert "median angular error" in html and "coverage of the 90% regions" in html
    catalog = (camp / "report" / "catalog.csv").read_text(encoding="utf-8").splitlines()
    assert len(catalog) == 1 + 6 and sum(",rejected," in line for line in catalog) == 1


def test_configuration_with_more_stages_is_accepted(inputs: Path, tmp_path: Path, fast_config: Path) -> None:
    """nside 1 -> 2 -> 4 (three stages, two planned sub-DAGs per event) writes valid graphs too."""
    three = tmp_path / "three.yaml"
    stage1 = "- {nside: 2, refine: 2, pixels_per_job: 8}"
    stage2 = "\n    - {nside: 4, refine: 2, pixels_per_job: 8}"
    three.write_text(FAST_CONFIG.replace(stage1, stage1 + stage2), encoding="utf-8")
    config = load_config(three)
    assert [s.nside for s in config.stages] == [1, 2, 4]
    camp = tmp_path / "camp"
    cp.create_campaign([str(_events(inputs)[0])], camp, config, load_site("local"), python=PYTHON)
    dag = (camp / "events" / "run5-evt10" / "skyscan.dag").read_text(encoding="utf-8")
    assert "SUBDAG EXTERNAL stage1 stage1.dag" in dag and "SUBDAG EXTERNAL stage2 stage2.dag" in dag



def test_an_invalid_file_with_the_ids_of_an_accepted_event_is_rejected_for_what_is_wrong(
    inputs: Path, tmp_path: Path, fast_config: Path
) -> None:
    """The cheap ids of the plain JSON decoder never make a broken file a "duplicate": it is checked in full."""
    events = _events(inputs)
    text = events[0].read_text(encoding="utf-8")
    twice = tmp_path / "twice.json"  # a duplicate key: the plain decoder keeps the last, the checked one refuses
    twice.write_text(text.replace('"run_id"', '"stream": "a", "stream": "b", "run_id"', 1), encoding="utf-8")
    lone = tmp_path / "lone.json"  # a lone surrogate in a string
    lone.write_text(text.replace('"run_id"', '"comment": "\\ud800", "run_id"', 1), encoding="utf-8")
    m = _create([str(events[0]), str(twice), str(lone)], tmp_path / "camp", fast_config)
    assert [e.name for e in m.events] == ["run5-evt10"]
    reasons = {Path(r.input).name: r.reason for r in m.rejected}
    assert "duplicate key" in reasons["twice.json"] and not reasons["twice.json"].startswith("duplicate of")
    assert "surrogate" in reasons["lone.json"]
    assert cp.inputs.unchecked_identity(twice.read_bytes()) is not None
    assert cp.inputs.quick_identity(twice.read_bytes()) is None


def test_dag_text_of_an_equal_workflow_comes_from_the_cache_and_is_the_same() -> None:
    from skyscan.condor import dagwriter
    from skyscan.graph.build import top_workflow

    config = load_config()
    dagwriter._texts.clear()
    first = dagwriter.dag_text(top_workflow(config), "# one\n")
    assert len(dagwriter._texts) == 1
    again = dagwriter.dag_text(top_workflow(config), "# two\n")
    assert len(dagwriter._texts) == 1  # the same workflow: rendered once
    assert again == "# two\n" + first[len("# one\n"):]
    dagwriter._texts.clear()
    assert dagwriter.dag_text(top_workflow(config), "# two\n") == again  # rendered afresh: the same text
    other = top_workflow(config)
    other.maxjobs["scan"] = 7
    assert "MAXJOBS scan 7" in dagwriter.dag_text(other) and len(dagwriter._texts) == 2
