"""Recoverable set-up: a scan directory appears whole or is completed by the next run; a full disk is exit 2.

The disk-full test mounts a small tmpfs (root only, and only where the kernel lets the container mount one);
it is skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.graph import build
from skyscan.graph.build import write_scan
from skyscan.graph.layout import setup_prefix
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

TINY = """
scan:
  stages:
    - {nside: 2, pixels_per_job: 24}
    - {nside: 4, refine: 2, pixels_per_job: 4}
  resolve: {min_pixels: 0}
reco: {max_iterations: 20}
merge: {flat_nside: 4, plots: false}
"""
SETUP_FILES = {"event.json", "config.yaml", "skyscan-node", "skyscan.dag", "skyscan.outputs.json", "logs",
               "prepare.sub", "scan.sub", "merge.sub", "final.sub"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("setup")
    spec = TrackSpec(zenith_deg=112.0, azimuth_deg=75.0, energy_gev=3e5, vertex=(30.0, 20.0, -40.0))
    event, truth = simulate_track(spec, ic86(), np.random.default_rng(31), run_id=900, event_id=42, stream="gold")
    event_path = folder / "event.json"
    event_path.write_text(json.dumps(event_to_dict(event, truth)))
    config_path = folder / "tiny.yaml"
    config_path.write_text(TINY)
    return event_path, config_path


def _dry_run(inputs: tuple[Path, Path], out: Path) -> Any:
    event, config = inputs
    return CliRunner().invoke(cli, ["submit", str(event), "-o", str(out), "--config", str(config), "--dry-run"])


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(setup_prefix(name)))


def test_a_new_directory_is_built_beside_and_renamed(inputs: tuple[Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "scan"
    seen: list[tuple[str, bool]] = []
    real = build._populate

    def spy(folder: Path, *args: Any, **kw: Any) -> Any:
        seen.append((folder.name, out.exists()))
        return real(folder, *args, **kw)

    monkeypatch.setattr(build, "_populate", spy)
    result = _dry_run(inputs, out)
    assert result.exit_code == 0, result.output
    assert len(seen) == 1 and seen[0][0].startswith(".scan.setup-") and seen[0][1] is False  # not visible yet
    assert {p.name for p in out.iterdir()} == SETUP_FILES
    assert _leftovers(tmp_path, "scan") == []


def test_an_interrupted_set_up_leaves_nothing(inputs: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "scan"

    def killed(folder: Path, *args: Any, **kw: Any) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "install_wrapper", killed)
    with pytest.raises(KeyboardInterrupt):
        write_scan(inputs[0], out, load_config(inputs[1]), load_site("local"))
    assert not out.exists() and _leftovers(tmp_path, "scan") == []
    monkeypatch.undo()
    assert _dry_run(inputs, out).exit_code == 0
    assert {p.name for p in out.iterdir()} == SETUP_FILES


def test_a_partial_directory_of_an_older_set_up_is_completed(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    # what a disk-full set-up of earlier versions left: an empty logs/ (every later run was refused)
    out = tmp_path / "scan"
    (out / "logs").mkdir(parents=True)
    result = _dry_run(inputs, out)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}")
    assert {p.name for p in out.iterdir()} == SETUP_FILES
    # a set-up killed in place after some files (and a temporary file of skyscan.atomic) is completed too
    out2 = tmp_path / "scan2"
    (out2 / "logs").mkdir(parents=True)
    (out2 / "config.yaml").write_text("half", encoding="utf-8")
    (out2 / ".scan.sub.x1y2.part").write_text("half", encoding="utf-8")
    assert _dry_run(inputs, out2).exit_code == 0
    assert (out2 / "event.json").is_file() and "half" not in (out2 / "config.yaml").read_text()


def test_a_directory_holding_anything_else_is_still_refused(inputs: tuple[Path, Path], tmp_path: Path,
                                                            input_error: Any) -> None:
    out = tmp_path / "scan"
    (out / "logs").mkdir(parents=True)
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    input_error(_dry_run(inputs, out), "holds no skyscan scan")
    (out / "notes.txt").unlink()
    (out / "logs" / "prepare.out").write_text("a node ran here", encoding="utf-8")
    input_error(_dry_run(inputs, out), "holds no skyscan scan")
    assert sorted(p.name for p in out.iterdir()) == ["logs"]


def test_stale_set_up_folders_of_dead_processes_are_removed(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = tmp_path / f"{setup_prefix('scan')}{proc.pid}-abcd1234"
    live = tmp_path / f"{setup_prefix('scan')}1-abcd1234"  # pid 1 is alive: a set-up may be under way
    for folder in (dead, live):
        (folder / "logs").mkdir(parents=True)
    assert _dry_run(inputs, tmp_path / "scan").exit_code == 0
    assert not dead.exists() and live.exists()


def test_a_write_error_in_place_is_one_line_and_the_next_run_completes(
    inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, input_error: Any
) -> None:
    out = tmp_path / "scan"
    out.mkdir()  # an existing empty directory is written in place
    real = build.write_text

    def full(path: Any, text: str) -> None:
        if Path(path).name == "scan.sub":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, text)

    monkeypatch.setattr(build, "write_text", full)
    input_error(_dry_run(inputs, out), f"{out}: cannot write the scan directory (No space left on device)")
    assert not (out / "event.json").exists()  # not marked as a whole scan
    monkeypatch.undo()
    result = _dry_run(inputs, out)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == SETUP_FILES


@contextlib.contextmanager
def _tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mountpoint.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` up, then free ``leave`` bytes again; the filler file."""
    filler = folder / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def test_disk_full_during_set_up_then_the_same_command_succeeds(inputs: tuple[Path, Path], tmp_path: Path,
                                                               input_error: Any) -> None:
    event, config = inputs
    with _tmpfs(tmp_path / "disk", "4m") as disk:
        filler = _fill(disk, leave=8192)  # room for a few set-up files, not all of them
        out = disk / "scan"
        cmd = ["run", str(event), "-o", str(out), "--config", str(config), "--jobs", "2"]
        failed = CliRunner().invoke(cli, cmd)
        input_error(failed, f"{out}: cannot write the scan directory (No space left on device)")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # nothing half-written left behind
        filler.unlink()  # space is free again
        again = CliRunner().invoke(cli, cmd)
        assert again.exit_code == 0, again.output
        assert json.loads((out / "end_state.json").read_text())["state"] == "done"
        assert (out / "summary.json").is_file()
        stale = [p.name for p in disk.rglob("*") if p.name.endswith(".part") or p.name.startswith(".scan.setup-")]
        assert stale == []


def test_setup_error_type_is_the_input_error(tmp_path: Path) -> None:
    err = build._setup_error(tmp_path, OSError(errno.EROFS, os.strerror(errno.EROFS)))
    assert isinstance(err, InputError) and "Read-only file system" in str(err) and "\n" not in str(err)
