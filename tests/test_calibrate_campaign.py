"""`skyscan calibrate --campaign`: a calibration table from a campaign of synthetic scans with known truths.

Each event's scan is a paraboloid (2*delta-llh = (d / sigma)^2) centred at a known offset from the event's true
direction, so the truth's 2*delta-llh T is about offset^2: the table's levels follow from the offsets chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import skyscan.campaign as cp
from skyscan.campaign import report as cr
from skyscan.cli import cli
from skyscan.nodes import merge
from skyscan.nodes.final import write_end_state
from skyscan.nodes.synthetic import write_synthetic_scan
from skyscan.products.levels import read_calibration_table
from skyscan.reco.event import event_to_dict
from skyscan.reco.geometry import ic86
from skyscan.reco.simbatch import BatchSpec, simulate_batch, truth_radec_deg
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

OFFSETS = [0.2, 0.5, 0.8, 1.1, 1.4, 1.7]  # truth offset from the map's centre, in sigma (Dec direction)
BATCH = BatchSpec(count=6, seed=9, energy_range_gev=(5e3, 2e4), noise_rate_hz=0.0, run_id=5, first_event_id=1)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("calcamp")
    inputs = base / "inputs"
    inputs.mkdir()
    items = simulate_batch(BATCH, ic86())
    for item in items:
        (inputs / f"ev{item.event.event_id}.json").write_text(json.dumps(event_to_dict(item.event, item.truth)))
    config = base / "c.yaml"
    config.write_text("scan: {rule: fixed, stages: [{nside: 8}, {nside: 64, refine: 12}]}\n", encoding="utf-8")
    m = cp.create_campaign([str(inputs)], base / "camp", load_config(config), load_site("local"), python="python3")
    charges = {}
    for entry, item, offset in zip(m.events, items, OFFSETS, strict=True):
        folder = m.event_dir(entry)
        ra, dec = truth_radec_deg(item.event, item.truth)
        write_synthetic_scan(folder, centre_radec=(ra, dec - offset), sigma_deg=1.0, plan=((8, 0), (64, 12)),
                             run_id=entry.run_id, event_id=entry.event_id, event_time=item.event.time_iso)  # fmt: skip
        # the synthetic scan's one-pulse event replaced the simulated one: put the event with its truth back
        (folder / "event.json").write_text(json.dumps(event_to_dict(item.event, item.truth)))
        merge.merge_scan(folder, plots=False)
        write_end_state(folder, 0, 0)
        charges[entry.name] = float(item.event.pulses.charge.sum())
    return {"camp": base / "camp", "charges": charges}


def test_table_from_a_campaign(campaign: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "table.json"
    result = CliRunner().invoke(cli, ["calibrate", "--campaign", str(campaign["camp"]), "-o", str(out),
                                      "--min-per-bin", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "skyscan-calibration-table/1" and doc["observable"] == "total_charge"
    assert doc["n"] == 6 and [b["n"] for b in doc["bins"]] == [3, 3]
    assert doc["campaign"]["events"] == 6 and doc["software"]["version"]
    rows = {r["name"]: r for r in cr.build_catalog(campaign["camp"])[1]}
    t_by_charge = sorted((campaign["charges"][name], rows[name]["ref_dllh2"]) for name in campaign["charges"])
    for b, chunk in zip(doc["bins"], (t_by_charge[:3], t_by_charge[3:]), strict=True):
        values = sorted(t for _, t in chunk)
        assert b["levels"]["50"] == pytest.approx(values[1])  # 2 of 3 inside: the smallest level reaching 50%
        assert b["levels"]["90"] == pytest.approx(values[2])
        assert all(b["lo"] <= c < b["hi"] for c, _ in chunk)
    table = read_calibration_table(out)
    assert table.observable == "total_charge" and len(table.bins) == 2
    # the campaign report uses it for the coverage after calibration: every truth is inside its bin's 90% level
    report = cr.write_report(campaign["camp"], tmp_path / "report", calibration=out)
    assert report.stats.calibrated is not None
    assert (report.stats.calibrated.coverage["90"].k, report.stats.calibrated.coverage["90"].n) == (6, 6)


def test_table_needs_enough_events(campaign: dict[str, Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["calibrate", "--campaign", str(campaign["camp"]), "-o",
                                      str(tmp_path / "t.json"), "--min-per-bin", "10"])  # fmt: skip
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "min-per-bin 10" in result.stderr
    assert not (tmp_path / "t.json").exists()
