"""The set-up texts rendered once per campaign (``ScanRendering``) give the same scan directories, byte for byte,
as rendering them per event; and many set-ups in one folder list that folder once, not once per set-up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skyscan.graph import build
from skyscan.graph.build import ScanRendering, write_scan
from skyscan.graph.layout import setup_prefix
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simulate import TrackSpec, simulate_track
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site, site_names


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("events")
    spec = TrackSpec(zenith_deg=101.0, azimuth_deg=210.0, energy_gev=2e5, vertex=(10.0, -20.0, 30.0))
    paths = []
    for i, (run, evt) in enumerate([(7, 11), (123456, 987654321)]):
        event, truth = simulate_track(spec, ic86(), np.random.default_rng(5 + i), run_id=run, event_id=evt)
        path = folder / f"event-{i}.json"
        path.write_text(json.dumps(event_to_dict(event, truth)))
        paths.append(path)
    return paths


def _tree(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry below ``folder``: (mode, bytes of a file)."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = (p.stat().st_mode, p.read_bytes() if p.is_file() else None)
    return out


@pytest.mark.parametrize("site_name", site_names())
def test_the_cached_rendering_writes_the_same_directories(events: list[Path], tmp_path: Path, site_name: str) -> None:
    config, site = load_config(), load_site(site_name)
    rendering = ScanRendering.of(config, site, "python3")
    for i, event in enumerate(events):
        plain = write_scan(event, tmp_path / "plain" / str(i), config, site, python="python3")
        cached = write_scan(event, tmp_path / "cached" / str(i), config, site, python="python3", rendering=rendering)
        a, b = _tree(plain.outdir), _tree(cached.outdir)
        assert sorted(a) == sorted(b) and len(a) >= 10
        for name in a:
            assert a[name] == b[name], name
        assert plain.batch_name == cached.batch_name and plain.batch_name in (a["scan.sub"][1] or b"").decode()
    # the two events' directories differ where the event does: the batch name and the DAG's title
    first, second = _tree(tmp_path / "cached" / "0"), _tree(tmp_path / "cached" / "1")
    assert first["scan.sub"] != second["scan.sub"] and first["skyscan.dag"] != second["skyscan.dag"]
    assert first["config.yaml"] == second["config.yaml"]


def test_a_rendering_is_refused_for_other_settings(events: list[Path], tmp_path: Path) -> None:
    rendering = ScanRendering.of(load_config(), load_site("local"), "python3")
    with pytest.raises(ValueError, match="other settings"):
        write_scan(events[0], tmp_path / "scan", load_config(), load_site("local"), python="python4",
                   rendering=rendering)
    assert not (tmp_path / "scan").exists()


def test_many_set_ups_in_one_folder_list_it_once(events: list[Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "events"
    listed: list[Any] = []
    real = os.scandir

    def counting(path: Any = ".") -> Any:
        listed.append(path if isinstance(path, int) else os.fspath(path))
        return real(path)

    monkeypatch.setattr(build.os, "scandir", counting)
    config, site = load_config(), load_site("local")
    rendering = ScanRendering.of(config, site, "python3")
    for i in range(6):
        write_scan(events[i % 2], parent / f"scan{i}", config, site, python="python3", rendering=rendering)
    assert listed.count(str(parent)) == 1
    # a folder another process changed is swept again: a stale set-up of a dead process goes, a live one stays
    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = parent / f"{setup_prefix('other')}{proc.pid}-abcd1234"
    live = parent / f"{setup_prefix('other')}1-abcd1234"  # pid 1 is alive
    for folder in (dead, live):
        (folder / "logs").mkdir(parents=True)
    write_scan(events[0], parent / "scan-last", config, site, python="python3", rendering=rendering)
    assert listed.count(str(parent)) == 2
    assert not dead.exists() and live.exists()
