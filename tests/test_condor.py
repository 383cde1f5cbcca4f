"""The HTCondor files: golden .dag/.sub text, DAGMan/submit-language acceptance, the wrapper, `skyscan submit`.

Golden files live in tests/golden/. After an intended change, rewrite them with
``SKYSCAN_UPDATE_GOLDEN=1 pytest tests/test_condor.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import h5py
import healpy as hp
import htcondor2
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.condor import dagwriter, schedd
from skyscan.condor import submit as condor
from skyscan.errors import InputError
from skyscan.graph import build as scangraph
from skyscan.graph import layout
from skyscan.settings.scan import ScanConfig, load_config
from skyscan.settings.site import load_site, parse_site, site_names
from skyscan.workflow import Workflow

# The tests pin 64-pixel jobs (the golden files and the node counts below assume it), whatever the
# shipped default of pixels_per_job is.
_STAGES_64 = [
    {"nside": 8, "pixels_per_job": 64},
    {"nside": 64, "refine": 12, "pixels_per_job": 64},
    {"nside": 512, "refine": 24, "pixels_per_job": 64},
]


def _config() -> ScanConfig:
    return load_config(None, {"scan": {"stages": _STAGES_64}})

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("SKYSCAN_UPDATE_GOLDEN"))
PYTHON = "python3"  # stands for the interpreter writing the graph: keeps the files machine-independent

EVENT: dict[str, Any] = {
    "schema": "skyscan-event/1",
    "run_id": 12,
    "event_id": 345,
    "time": "2026-03-14T15:09:26Z",
    "pulses": {
        "string": [35, 35, 36, 36, 44, 44, 45, 45],
        "om": [20, 21, 24, 25, 28, 29, 32, 33],
        "time": [10000.0, 10015.0, 10180.0, 10195.0, 10390.0, 10405.0, 10590.0, 10610.0],
        "charge": [2.1, 1.3, 1.8, 0.9, 2.5, 1.1, 1.7, 0.6],
    },
}
VARS = {"stage": "0", "nside": "8", "batch": "stage0/batch-0000.txt", "out": "stage0/scan-s0-0000.h5", "npix": "64",
        "JOB": "scan-s0-0000", "RETRY": "0"}


def write_event(folder: Path, **changes: Any) -> Path:
    doc = json.loads(json.dumps(EVENT))
    doc.update(changes)
    path = folder / "event.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def make_cli() -> click.Group:
    """The real `skyscan` command tree."""
    from skyscan.cli import cli

    return cli


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path} (run with SKYSCAN_UPDATE_GOLDEN=1)"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


def fake_results(outdir: Path, stage: int, nside: int, centre: tuple[float, float] = (1.1, 2.2)) -> None:
    """Result files for every batch file of a stage: a smooth synthetic llh map."""
    c = hp.ang2vec(*centre)
    for batch in sorted((outdir / f"stage{stage}").glob("batch-*.txt")):
        b = int(batch.stem.split("-")[1])
        ipix = np.loadtxt(batch, dtype=np.int64, ndmin=1)
        vec = np.asarray(hp.pix2vec(nside, ipix, nest=True)).T
        llh = 20.0 + 500.0 * np.arccos(np.clip(vec @ c, -1, 1)) ** 2
        with h5py.File(outdir / layout.result_path(stage, b), "w") as f:
            f["nside"] = np.int64(nside)
            f["ipix"] = ipix
            f["llh"] = llh


def write_stage0_batches(outdir: Path) -> None:
    cfg = load_config(outdir / "config.yaml")
    from skyscan.graph.refine import all_pixels, split_batches

    batches = split_batches(all_pixels(cfg.stages[0].nside), cfg.stages[0].pixels_per_job)
    for b, pix in enumerate(batches):
        path = outdir / layout.batch_path(0, b)
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"{p}\n" for p in pix), encoding="utf-8")


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One written scan directory per shipped site profile (default configuration)."""
    base = tmp_path_factory.mktemp("scans")
    event = write_event(base)
    out = {}
    for site in site_names():
        out[site] = base / site
        scangraph.write_scan(event, out[site], _config(), load_site(site), python=PYTHON)
    return out


# --- the bindings' defects, checked so the workarounds can go once they are fixed -----------------------------
def test_bindings_defects_that_condor_py_works_around(tmp_path: Path) -> None:
    from htcondor2 import dags

    dag = dags.DAG(max_jobs_by_category={"scan": 5})
    dag.layer(name="scan", submit_description=htcondor2.Submit("executable = /bin/true\nqueue"), category="scan")
    dag.final(name="final", submit_description=htcondor2.Submit("executable = /bin/true\nqueue"))
    dags.write_dag(dag, tmp_path, "x.dag")
    text = (tmp_path / "x.dag").read_text(encoding="utf-8")
    assert "CATEGORY scan 5" in text and "MAXJOBS" not in text, "defect 1 fixed: MAXJOBS rewrite is a no-op"
    assert (tmp_path / "scan.sub").is_file()
    assert not (tmp_path / "final.sub").exists(), "defect 2 fixed: the writer now writes the FINAL submit file"
    sub = htcondor2.Submit("executable = /bin/echo\narguments = $(x)\nqueue x from (\n  alpha\n  beta\n)\n")
    assert "alpha" not in str(sub), "defect 3 fixed: str(Submit) keeps inline item lists"


# --- golden files and what they must say ----------------------------------------------------------------------
def test_top_dag_golden_and_contents(scans: dict[str, Path]) -> None:
    texts = {site: (path / "skyscan.dag").read_text(encoding="utf-8") for site, path in scans.items()}
    assert len(set(texts.values())) == 1  # the DAG does not depend on the site
    text = texts["local"]
    check_golden("skyscan.dag", text)
    lines = text.splitlines()
    assert "MAXJOBS scan 100" in lines and not any(line.startswith("CATEGORY scan ") for line in lines)
    assert "NODE_STATUS_FILE skyscan.dag.status 30" in lines and "JOBSTATE_LOG skyscan.dag.jobstate.log" in lines
    jobs = [line.split()[1] for line in lines if line.startswith("JOB ")]
    assert jobs == ["prepare", *[f"scan-s0-{b:04d}" for b in range(12)], "merge"]
    assert "RETRY scan-s0-0007 3 UNLESS-EXIT 2" in lines and "CATEGORY scan-s0-0007 scan" in lines
    assert "SUBDAG EXTERNAL stage1 stage1.dag" in lines and "SUBDAG EXTERNAL stage2 stage2.dag" in lines
    assert "SCRIPT PRE stage2 ./skyscan-node plan . --stage 2" in lines and "PRE_SKIP stage2 100" in lines
    assert "FINAL final final.sub" in lines
    assert ("SCRIPT PRE final ./skyscan-node final . --dag-status $DAG_STATUS --failed-count $FAILED_COUNT"
            in lines)
    assert "PARENT stage2 CHILD merge" in lines
    assert 'VARS scan-s0-0011 stage="0" nside="8" batch="stage0/batch-0011.txt" out="stage0/scan-s0-0011.h5" npix="64"' in lines


@pytest.mark.parametrize("kind", condor.SUBMIT_KINDS)
def test_submit_files_golden(scans: dict[str, Path], kind: str) -> None:
    for site, path in scans.items():
        check_golden(f"{site}/{kind}.sub", (path / f"{kind}.sub").read_text(encoding="utf-8"))


def test_written_files_hold_no_absolute_paths(scans: dict[str, Path]) -> None:
    for path in scans.values():
        for f in path.rglob("*"):
            if f.is_file() and f.suffix in (".dag", ".sub", ".yaml", ""):
                text = f.read_text(encoding="utf-8")
                assert str(path.parent) not in text, f
                assert " /" not in text.replace("#!/usr/bin/env", ""), f


def test_final_submit_file_is_written(scans: dict[str, Path]) -> None:
    for path in scans.values():
        sub = htcondor2.Submit((path / "final.sub").read_text(encoding="utf-8"))
        assert sub["executable"] == "skyscan-node" and sub["arguments"] == '"final ."'


# --- every DAG accepted by DAGMan's parser ---------------------------------------------------------------------
def from_dag(folder: Path, dag: str) -> htcondor2.Submit:
    """condor_submit_dag's checks, offline; in a copy, since it writes <dag>.condor.sub."""
    return htcondor2.Submit.from_dag(str(folder / dag), {"DagmanPath": "/bin/true"})


def test_every_dag_is_accepted_by_from_dag(scans: dict[str, Path], tmp_path: Path) -> None:
    for site, path in scans.items():
        copy = tmp_path / site
        shutil.copytree(path, copy)
        sub = from_dag(copy, "skyscan.dag")
        assert "-Dag" in sub["arguments"] and "SKYSCAN_PYTHON" in sub["getenv"]
    # A stage DAG written by `node plan`.
    copy = tmp_path / "planned"
    shutil.copytree(scans["local"], copy)
    write_stage0_batches(copy)
    fake_results(copy, 0, 8)
    result = CliRunner().invoke(make_cli(), ["node", "plan", str(copy), "--stage", "1"])
    assert result.exit_code == 0, result.output
    check_golden("stage1.dag", (copy / "stage1.dag").read_text(encoding="utf-8"))
    sub = from_dag(copy, "stage1.dag")
    assert "stage1.dag" in sub["arguments"]
    fake_results(copy, 1, 64)
    result = CliRunner().invoke(make_cli(), ["node", "plan", str(copy), "--stage", "2"])
    assert result.exit_code == 0, result.output
    from_dag(copy, "stage2.dag")


def test_a_broken_dag_is_rejected_by_from_dag(tmp_path: Path) -> None:
    (tmp_path / "x.dag").write_text("JOB a a.sub\nNOT_A_COMMAND a\n", encoding="utf-8")
    with pytest.raises(Exception, match="not a valid DAG command"):
        from_dag(tmp_path, "x.dag")


def test_writer_refuses_what_it_cannot_write_faithfully() -> None:
    wf = Workflow()
    wf.add_job("a", "a.sub")
    wf.add_job("b", "b.sub")
    wf.add_job("c", "c.sub")
    wf.add_edge("a", "b")
    wf.add_edge("a", "c")
    with pytest.raises(InputError, match="several child groups"):
        dagwriter.dag_text(wf)
    wf = Workflow()
    wf.add_job("a", "jobs/a.sub")
    with pytest.raises(InputError, match="plain name"):
        dagwriter.dag_text(wf)
    wf = Workflow()
    wf.add_job("a", "a.sub")
    wf.add_job("b", "b.sub")
    wf.add_edge("a", "b")
    wf.add_edge("b", "a")
    with pytest.raises(InputError, match="cycle"):
        dagwriter.dag_text(wf)


# --- every template x profile parses and expands ----------------------------------------------------------------
def expand_all(text: str) -> dict[str, str]:
    sub = htcondor2.Submit(text)
    for key, value in VARS.items():
        sub[key] = value
    out = {}
    for key in sub.keys():
        if key in VARS:
            continue
        value = sub.expand(key)
        assert "$(" not in value and "$F" not in value, (key, value)
        out[key] = value
    return out


EXTRA_PROFILE = {
    "description": "a shared cluster with apptainer",
    "shared_filesystem": True,
    "universe": "vanilla",
    "singularity_image": "/cvmfs/images/skyscan.sif",
    "accounting_group": "group_astro.alerts",
    "requirements": 'OpSysMajorVer >= 8 && TARGET.Arch == "X86_64"',
    "job_python": "/opt/py/bin/python3",
    "submit_python": "current",
    "job_setup": "/opt/setup env.sh",
    "environment": {"OMP_NUM_THREADS": "1", "NOTE": "it's a test"},
    "kinds": {"scan": {"request_cpus": 2, "request_memory_mb": 3000}},
    "extra": {"+ProjectName": '"alerts"', "max_retries": 2},
}


@pytest.mark.parametrize("kind", condor.SUBMIT_KINDS)
@pytest.mark.parametrize("site", [*site_names(), "extra"])
def test_every_template_with_every_profile_parses_and_expands(kind: str, site: str) -> None:
    profile = parse_site(EXTRA_PROFILE, "extra") if site == "extra" else load_site(site)
    text = condor.render_submit(kind, profile, _config(), "skyscan-12-345", python=PYTHON)
    values = expand_all(text)
    assert values["executable"] == "skyscan-node"
    assert values["batch_name"] == "skyscan-12-345"
    assert values["universe"] == profile.universe_of(kind)
    assert text.rstrip().endswith("\nqueue")
    from skyscan.dagman.parse import parse_environment, split_arguments

    argv = split_arguments(values["arguments"])
    assert argv[0] == kind
    env = parse_environment(values.get("environment", ""))
    on_host = profile.universe_of(kind) == "local"
    if not on_host:
        res = profile.resources_of(kind, _config())
        assert values["request_memory"] == f"{res.request_memory_mb}MB"
    if kind == "scan":
        transfer = not profile.shared_filesystem
        assert argv[argv.index("--pixels") + 1] == ("batch-0000.txt" if transfer else "stage0/batch-0000.txt")
        assert argv[argv.index("-o") + 1] == ("scan-s0-0000.h5" if transfer else "stage0/scan-s0-0000.h5")
        assert values["should_transfer_files"] == ("YES" if transfer else "NO")
        if transfer:
            assert values["transfer_output_remaps"] == '"scan-s0-0000.h5 = stage0/scan-s0-0000.h5"'
            assert [s.strip() for s in values["transfer_input_files"].split(",")] == [
                "event.json", "config.yaml", "stage0/batch-0000.txt"]
            assert values["container_image"] == profile.container_image
        else:
            assert "transfer_input_files" not in values
    if site == "local":
        assert env == {"SKYSCAN_PYTHON": PYTHON}
    if site == "extra":
        assert values["accounting_group"] == "group_astro.alerts"
        assert values["MY.SingularityImage"] == '"/cvmfs/images/skyscan.sif"'
        assert env["NOTE"] == "it's a test" and env["SKYSCAN_SETUP"] == "/opt/setup env.sh"
        assert env["SKYSCAN_PYTHON"] == "/opt/py/bin/python3"
        if kind == "scan":
            assert values["request_cpus"] == "2" and values["request_memory"] == "3000MB"


def test_render_drops_lines_without_a_value_and_rejects_unknown_macros() -> None:
    text = "a = $(SKYSCAN_A)\nb = $(SKYSCAN_B) and $(SKYSCAN_A)\nc = $(plain)\n"
    assert condor.render_template(text, {"A": "1", "B": None}) == "a = 1\nc = $(plain)\n"
    with pytest.raises(InputError, match=r"t\.sub:1: unknown macro \$\(SKYSCAN_Z\)"):
        condor.render_template("z = $(SKYSCAN_Z)\n", {}, "t.sub")


def test_environment_value_quoting() -> None:
    from skyscan.dagman.parse import parse_environment

    env = {"A": "1", "B": "two words", "C": "it's", "D": 'say "hi"'}
    assert parse_environment(condor.environment_value(env)) == env


# --- the wrapper -----------------------------------------------------------------------------------------------
def run_wrapper(folder: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(folder)}
    return subprocess.run([str(folder / "skyscan-node"), *args], cwd=folder, env={**base, **env},
                          capture_output=True, text=True, timeout=30)


def test_wrapper_sets_up_and_execs(scans: dict[str, Path], tmp_path: Path) -> None:
    wrapper = scans["osg"] / "skyscan-node"
    assert wrapper.stat().st_mode & stat.S_IXUSR
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy2(wrapper, folder / "skyscan-node")
    fake = folder / "fakepy"
    fake.write_text('#!/bin/sh\necho "argv: $*"\necho "setup: ${FROM_SETUP:-}"\nexit 7\n', encoding="utf-8")
    fake.chmod(0o755)
    setup = folder / "setup.sh"
    setup.write_text("export FROM_SETUP=yes\n", encoding="utf-8")
    done = run_wrapper(folder, ["plan", ".", "--stage", "1"], {"SKYSCAN_PYTHON": str(fake),
                                                              "SKYSCAN_SETUP": str(setup)})
    assert done.returncode == 7  # exec: the node's exit code is the command's
    assert "argv: -m skyscan.cli node plan . --stage 1" in done.stdout and "setup: yes" in done.stdout
    missing = run_wrapper(folder, ["scan"], {"SKYSCAN_SETUP": str(folder / "absent.sh")})
    assert missing.returncode == 1 and "SKYSCAN_SETUP" in missing.stderr
    nothing = run_wrapper(folder, ["scan"], {})
    assert nothing.returncode == 1 and "no 'skyscan' command" in nothing.stderr


def test_wrapper_runs_skyscan_with_this_interpreter(scans: dict[str, Path]) -> None:
    done = run_wrapper(scans["local"], ["final", "--help"], {"SKYSCAN_PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    assert "--dag-status" in done.stdout


# --- skyscan submit ---------------------------------------------------------------------------------------------
def test_submit_dry_run(tmp_path: Path) -> None:
    event = write_event(tmp_path)
    out = tmp_path / "scan"
    result = CliRunner().invoke(make_cli(), ["submit", str(event), "-o", str(out), "--site", "osg", "--dry-run",
                                             "--maxjobs", "7"])
    assert result.exit_code == 0, result.output
    assert "condor_submit_dag -batch-name skyscan-12-345 skyscan.dag" in result.stdout
    assert f"cd {out.absolute()} && SKYSCAN_PYTHON=" in result.stdout
    assert "container image skyscan.sif is not in" in result.stderr
    for name in ("skyscan.dag", "scan.sub", "prepare.sub", "merge.sub", "final.sub", "event.json", "config.yaml",
                 "skyscan-node"):
        assert (out / name).is_file(), name
    assert (out / "logs").is_dir()
    assert not (out / "skyscan.dag.condor.sub").exists()  # by hand, condor_submit_dag would refuse it
    assert "MAXJOBS scan 7" in (out / "skyscan.dag").read_text(encoding="utf-8")
    assert json.loads((out / "event.json").read_text(encoding="utf-8"))["event_id"] == 345


def test_submit_without_schedd_leaves_the_directory_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_schedd() -> None:
        raise htcondor2.HTCondorException("Unable to locate local daemon.\nsecond line")

    monkeypatch.setattr(schedd, "find_schedd", no_schedd)
    event = write_event(tmp_path)
    out = tmp_path / "scan"
    result = CliRunner().invoke(make_cli(), ["submit", str(event), "-o", str(out)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "no HTCondor schedd reachable (Unable to locate local daemon.)" in lines[0]
    assert "condor_submit_dag" in lines[0]
    assert (out / "skyscan.dag").is_file() and (out / "scan.sub").is_file()
    assert not any(out.glob("skyscan.dag.*"))  # nothing of a submission attempt


def test_submit_with_a_schedd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Result:
        def cluster(self) -> int:
            return 4711

    class Schedd:
        def submit(self, sub: htcondor2.Submit) -> Result:
            seen["arguments"] = sub["arguments"]
            seen["batch"] = sub.get("My.JobBatchName") or sub.get("batch_name")
            seen["cwd"] = Path.cwd()
            seen["python"] = os.environ.get("SKYSCAN_PYTHON")
            return Result()

    def from_dag_offline(name: str, options: dict[str, Any]) -> htcondor2.Submit:
        # No condor_dagman here: point the bindings at a stand-in so they can write the DAGMan job.
        return _real_from_dag(name, {**options, "DagmanPath": "/bin/true"})

    monkeypatch.setattr(schedd, "find_schedd", Schedd)
    monkeypatch.setattr(htcondor2.Submit, "from_dag", staticmethod(from_dag_offline))
    monkeypatch.delenv("SKYSCAN_PYTHON", raising=False)
    event = write_event(tmp_path)
    out = tmp_path / "scan"
    result = CliRunner().invoke(make_cli(), ["submit", str(event), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "as DAGMan job 4711" in result.stdout
    assert "-Dag skyscan.dag" in seen["arguments"] and "skyscan-12-345" in str(seen["batch"])
    assert seen["cwd"] == out.absolute() and seen["python"] == sys.executable
    assert "SKYSCAN_PYTHON" not in os.environ and Path.cwd() != out.absolute()
    # Submitting again: DAGMan's files are there but no rescue DAG -> refused with advice.
    (out / "skyscan.dag.lib.out").write_text("", encoding="utf-8")
    again = CliRunner().invoke(make_cli(), ["submit", str(event), "-o", str(out)])
    assert again.exit_code == 1 and "no rescue DAG" in again.stderr
    # With a rescue DAG the scan resumes.
    (out / "skyscan.dag.rescue001").write_text("DONE prepare\n", encoding="utf-8")
    resumed = CliRunner().invoke(make_cli(), ["submit", str(event), "-o", str(out)])
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("reused")


_real_from_dag = htcondor2.Submit.from_dag


def test_submit_refuses_bad_input_and_foreign_directories(tmp_path: Path) -> None:
    cli = make_cli()
    bad = write_event(tmp_path, run_id=-3)
    out = tmp_path / "scan"
    result = CliRunner().invoke(cli, ["submit", str(bad), "-o", str(out), "--dry-run"])
    assert result.exit_code == 2 and "run_id" in result.stderr
    assert not out.exists()
    event = write_event(tmp_path)
    assert CliRunner().invoke(cli, ["submit", str(event), "-o", str(out), "--dry-run"]).exit_code == 0
    same = CliRunner().invoke(cli, ["submit", str(event), "-o", str(out), "--dry-run"])
    assert same.exit_code == 0 and same.stdout.startswith("reused")
    other = write_event(tmp_path, event_id=346)
    refused = CliRunner().invoke(cli, ["submit", str(other), "-o", str(out), "--dry-run"])
    assert refused.exit_code == 2 and "different event" in refused.stderr
    event = write_event(tmp_path)
    changed = CliRunner().invoke(cli, ["submit", str(event), "-o", str(out), "--dry-run", "--rule", "adaptive"])
    assert changed.exit_code == 2 and "different configuration" in changed.stderr
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x", encoding="utf-8")
    foreign = CliRunner().invoke(cli, ["submit", str(event), "-o", str(junk), "--dry-run"])
    assert foreign.exit_code == 2 and "no event.json" in foreign.stderr
    badsite = CliRunner().invoke(cli, ["submit", str(event), "-o", str(tmp_path / "n"), "--site", "mars"])
    assert badsite.exit_code == 2 and "no site profile 'mars'" in badsite.stderr


# --- node prepare / plan / final ----------------------------------------------------------------------------------
def test_node_prepare_plan_final(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = make_cli()
    event = write_event(tmp_path)
    out = tmp_path / "scan"
    scangraph.write_scan(event, out, _config(), load_site("local"), python=PYTHON)
    prep = CliRunner().invoke(cli, ["node", "prepare", str(out / "event.json"), "--outdir", str(out)])
    assert prep.exit_code == 0, prep.output
    doc = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert doc["stage0"] == {"nside": 8, "npix": 768, "batches": 12}
    batches = sorted((out / "stage0").glob("batch-*.txt"))
    assert len(batches) == 12
    pixels = np.concatenate([np.loadtxt(b, dtype=np.int64) for b in batches])
    assert pixels.tolist() == list(range(768))

    # plan: a missing result file is an error naming it.
    missing = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "1"])
    assert missing.exit_code == 1 and "scan-s0-0000.h5: missing result file" in missing.stderr
    fake_results(out, 0, 8)
    (out / "stage0" / "scan-s0-0005.h5").write_bytes(b"not hdf5")
    corrupt = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "1"])
    assert corrupt.exit_code == 1 and "scan-s0-0005.h5: corrupt result file" in corrupt.stderr
    fake_results(out, 0, 8)
    (out / "stage1.dag.rescue001").write_text("DONE scan-s1-0000\n", encoding="utf-8")
    first = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "1"])
    assert first.exit_code == 0, first.output
    assert not (out / "stage1.dag.rescue001").exists()  # the DAG was new: its old rescue is stale
    text = (out / "stage1.dag").read_text(encoding="utf-8")
    plan_doc = (out / "stage1" / "plan.json").read_text(encoding="utf-8")
    (out / "stage1.dag.rescue001").write_text("DONE scan-s1-0000\n", encoding="utf-8")
    again = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "1"])
    assert again.exit_code == 0
    assert (out / "stage1.dag").read_text(encoding="utf-8") == text  # same inputs, same file
    assert (out / "stage1" / "plan.json").read_text(encoding="utf-8") == plan_doc
    assert (out / "stage1.dag.rescue001").exists()  # unchanged DAG: the rescue still applies
    assert len(list((out / "stage1").glob("batch-*.txt"))) == 12
    bad_stage = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "3"])
    assert bad_stage.exit_code == 2 and "--stage" in bad_stage.stderr

    # Nothing left to refine: exit 100 (PRE_SKIP), stale stage files removed.
    from skyscan.graph import refine as plan

    real = plan.select_stage

    def nothing(*args: Any, **kwargs: Any) -> plan.Selection:
        sel = real(*args, **kwargs)
        return plan.Selection(sel.stage, sel.nside, sel.prev_nside, sel.rule, sel.best, sel.refined,
                              np.zeros(0, dtype=np.int64))

    monkeypatch.setattr("skyscan.nodes.plan.select_stage", nothing)
    skipped = CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", "1"])
    assert skipped.exit_code == scangraph.PRE_SKIP_CODE == 100
    assert not (out / "stage1.dag").exists() and not list((out / "stage1").glob("batch-*.txt"))
    assert json.loads((out / "stage1" / "plan.json").read_text(encoding="utf-8"))["skipped"] is True

    # final: records the end state; fails when the DAG failed (the FINAL node decides the DAG's result).
    ok = CliRunner().invoke(cli, ["node", "final", str(out), "--dag-status", "0", "--failed-count", "0"])
    assert ok.exit_code == 0
    end = json.loads((out / "end_state.json").read_text(encoding="utf-8"))
    assert end["schema"] == "skyscan-end-state/1" and end["state"] == "done" and end["dag_status"] == 0
    assert end["time"].endswith("Z")
    shown = CliRunner().invoke(cli, ["node", "final", str(out)])
    assert shown.exit_code == 0 and "scan done" in shown.stdout
    failed = CliRunner().invoke(cli, ["node", "final", str(out), "--dag-status", "2", "--failed-count", "3"])
    assert failed.exit_code == 1
    end = json.loads((out / "end_state.json").read_text(encoding="utf-8"))
    assert (end["state"], end["dag_status"], end["failed_count"]) == ("failed", 2, 3)
    half = CliRunner().invoke(cli, ["node", "final", str(out), "--dag-status", "0"])
    assert half.exit_code == 2


def test_node_plan_with_the_adaptive_rule(tmp_path: Path) -> None:
    event = write_event(tmp_path)
    out = tmp_path / "scan"
    config = load_config(None, {"scan": {"rule": "adaptive", "adaptive": {"max_refine": 20}, "stages": _STAGES_64}})
    scangraph.write_scan(event, out, config, load_site("local"), python=PYTHON)
    write_stage0_batches(out)
    fake_results(out, 0, 8, centre=(0.4, 5.0))
    result = CliRunner().invoke(make_cli(), ["node", "plan", str(out), "--stage", "1"])
    assert result.exit_code == 0, result.output
    plan_doc = json.loads((out / "stage1" / "plan.json").read_text(encoding="utf-8"))
    assert plan_doc["rule"] == "adaptive" and plan_doc["contour"]["dllh2"] == pytest.approx(4.61, abs=0.01)
    refined = plan_doc["refined"]["ipix"]
    assert 1 <= len(refined) <= 20 and plan_doc["best_fit"]["ipix"] in refined
    assert plan_doc["npix"] == 64 * len(refined)
    lines = (out / "stage1.dag").read_text(encoding="utf-8").splitlines()
    assert sum(line.startswith("JOB ") for line in lines) == -(-plan_doc["npix"] // 64)
