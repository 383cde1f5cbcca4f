"""Regions that are resolved: refinement past the last stage while the 90% region holds too few finest pixels.

A synthetic llh bowl stands in for the likelihood; the stages are planned with `skyscan node plan` exactly as the
DAG's PRE scripts run it, so the sub-DAG files, the plan records and the flags are the real ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.graph import build as scangraph
from skyscan.graph import layout
from skyscan.graph.refine import Resolution, region_resolution, resolve_nside
from skyscan.nodes.merge import merge_scan
from skyscan.nodes.synthetic import write_result_file, write_synthetic_scan
from skyscan.products.credible import map_probability, resolution_of, resolve_min_pixels
from skyscan.products.gcn import unresolved_notes
from skyscan.products.summary import RESOLVE_MAX_NSIDE, RESOLVE_MIN_PIXELS, RegionRecord
from skyscan.settings.scan import load_config
from skyscan.settings.site import load_site

STAGES = [
    {"nside": 8, "pixels_per_job": 256},
    {"nside": 64, "refine": 12, "pixels_per_job": 256},
    {"nside": 512, "refine": 24, "pixels_per_job": 256},
]
CENTRE = (1.1, 2.2)  # theta, phi (radians) of the bowl's minimum
EVENT: dict[str, Any] = {
    "schema": "skyscan-event/1", "run_id": 12, "event_id": 345, "time": "2026-03-14T15:09:26Z",
    "pulses": {"string": [35, 36, 44], "om": [20, 24, 28], "time": [10000.0, 10180.0, 10390.0],
               "charge": [2.1, 1.8, 2.5]},
}


def bowl_llh(nside: int, ipix: np.ndarray, curvature: float) -> np.ndarray:
    """-ln L = 20 + curvature * angle**2 (angle in radians to CENTRE): 2*delta-llh = 2 * curvature * angle**2."""
    vec = np.asarray(hp.pix2vec(nside, ipix, nest=True)).T
    ang = np.arccos(np.clip(vec @ hp.ang2vec(*CENTRE), -1.0, 1.0))
    return np.asarray(20.0 + curvature * ang**2, dtype=np.float64)


def fake_stage(outdir: Path, stage: int, nside: int, curvature: float) -> None:
    """Result files for every batch of a stage, as the scan node writes them (nside, ipix, llh)."""
    for batch in sorted((outdir / f"stage{stage}").glob("batch-*.txt")):
        b = int(batch.stem.split("-")[1])
        ipix = np.loadtxt(batch, dtype=np.int64, ndmin=1)
        write_result_file(outdir / layout.result_path(stage, b), nside, ipix, bowl_llh(nside, ipix, curvature),
                          EVENT["run_id"], EVENT["event_id"])


def new_scan(tmp_path: Path, name: str, resolve: dict[str, Any] | None = None) -> Path:
    scan: dict[str, Any] = {"stages": STAGES}
    if resolve is not None:
        scan["resolve"] = resolve
    config = load_config(None, {"scan": scan})
    event = tmp_path / f"{name}.json"
    event.write_text(json.dumps(EVENT), encoding="utf-8")
    out = tmp_path / name
    scangraph.write_scan(event, out, config, load_site("local"), python="python3")
    from skyscan.graph.refine import all_pixels, split_batches

    for b, pix in enumerate(split_batches(all_pixels(8), 256)):
        path = out / layout.batch_path(0, b)
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"{p}\n" for p in pix), encoding="utf-8")
    return out


def plan(out: Path, stage: int) -> Any:
    return CliRunner().invoke(cli, ["node", "plan", str(out), "--stage", str(stage)])


def run_configured_stages(out: Path, curvature: float) -> None:
    fake_stage(out, 0, 8, curvature)
    for stage, nside in ((1, 64), (2, 512)):
        result = plan(out, stage)
        assert result.exit_code == 0, result.output
        fake_stage(out, stage, nside, curvature)


# A sharp bowl: 2*delta-llh = 4.61 at 0.02 deg, far inside one nside-512 pixel (0.11 deg across), like the
# benchmark's 500 TeV track. A broad one: 4.61 at 1 deg, hundreds of nside-512 pixels.
SHARP = 4.61 / 2.0 / np.radians(0.02) ** 2
BROAD = 4.61 / 2.0 / np.radians(1.0) ** 2


def test_resolution_and_next_nside() -> None:
    ipix = np.arange(12 * 512 * 512)[:100]
    res = region_resolution(512, ipix, np.r_[0.0, np.full(99, 10.0)], threshold=4.61, min_pixels=30)
    assert (res.nside, res.pixels, res.resolved) == (512, 1, False)
    # One pixel needs a factor 8 (64 children >= 30), capped at max_nside; 10 pixels a factor 2 (40 >= 30).
    assert resolve_nside(res, 4096) == 4096
    assert resolve_nside(res, 2048) == 2048
    assert resolve_nside(replace(res, pixels=10), 4096) == 1024
    assert resolve_nside(replace(res, pixels=30), 4096) is None  # resolved
    assert resolve_nside(replace(res, nside=4096), 4096) is None  # max_nside reached: stays unresolved
    assert Resolution(4096, 29, 4.61, 30).resolved is False and Resolution(4096, 30, 4.61, 30).resolved


def test_config_keys() -> None:
    assert load_config().resolve.min_pixels == RESOLVE_MIN_PIXELS == 30
    assert load_config().resolve.max_nside == RESOLVE_MAX_NSIDE
    with pytest.raises(InputError, match=r"scan.resolve.max_nside: nside must be a power of two"):
        load_config(None, {"scan": {"resolve": {"max_nside": 3000}}})
    with pytest.raises(InputError, match=r"scan.resolve.min_pixels"):
        load_config(None, {"scan": {"resolve": {"min_pixels": -1}}})
    assert resolve_min_pixels("scan:\n  resolve:\n    min_pixels: 12\n") == 12
    assert resolve_min_pixels("") == RESOLVE_MIN_PIXELS


def test_unresolved_region_gets_a_resolving_stage(tmp_path: Path) -> None:
    out = new_scan(tmp_path, "sharp")
    run_configured_stages(out, SHARP)
    stage2 = (out / "stage2.dag").read_text(encoding="utf-8")
    assert "SUBDAG EXTERNAL stage3 stage3.dag" in stage2
    assert "SCRIPT PRE stage3 ./skyscan-node plan . --stage 3" in stage2 and "PRE_SKIP stage3 100" in stage2
    result = plan(out, 3)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "stage3" / "plan.json").read_text())
    assert record["rule"] == "resolve" and record["nside"] == 4096
    assert record["resolve"] == {"level": "90", "dllh2": 4.61, "min_pixels": 30, "max_nside": 4096,
                                 "finest_nside": 512, "pixels": 1, "resolved": False}
    # Only the region's neighbourhood is refined: a few nside-512 pixels, 64 children each.
    assert 1 <= len(record["refined"]["ipix"]) <= 20 and record["npix"] == 64 * len(record["refined"]["ipix"])
    stage3 = (out / "stage3.dag").read_text(encoding="utf-8")
    assert 'nside="4096"' in stage3 and "SUBDAG" not in stage3  # max_nside reached: no further stage
    again = (out / "stage3.dag").read_text(encoding="utf-8")
    assert plan(out, 3).exit_code == 0 and (out / "stage3.dag").read_text(encoding="utf-8") == again
    fake_stage(out, 3, 4096, SHARP)
    # The DAG has no stage 4; planned by hand it is skipped, and its record says the region stays unresolved.
    assert plan(out, 4).exit_code == 100
    assert json.loads((out / "stage4" / "plan.json").read_text())["resolve"]["resolved"] is False

    merged = merge_scan(out)
    summary = merged.summary_model
    assert summary.pixels.by_nside["4096"] == record["npix"]
    mp = merged.meta.map_probability
    assert mp is not None and mp.finest_nside == 4096
    # 4.61 at 0.02 deg: a disc of 0.00126 deg2, about 6 nside-4096 pixels (0.000205 deg2 each): still < 30.
    assert 1 <= mp.finest_pixels["90"] < 30
    assert resolution_of(mp, "90", 30)["resolved"] is False
    circular = (out / "circular.txt").read_text(encoding="utf-8")
    assert "the 90% region is not resolved" in circular and "of nside 4096" in circular
    assert "scan.resolve.max_nside" in circular
    # `skyscan status` lists the resolving stage that was scanned, not the skipped one after it
    from skyscan.graph.status import scan_status

    listed = scan_status(out).stages
    assert [(s.stage, s.nside) for s in listed] == [(0, 8), (1, 64), (2, 512), (3, 4096)]
    assert listed[3].pixels.total == record["npix"]


def test_resolving_stage_reaches_the_configured_pixel_count(tmp_path: Path) -> None:
    """A 90% region of 0.08 deg (radius) is one-to-few nside-512 pixels; the resolving stage resolves it."""
    curvature = 4.61 / 2.0 / np.radians(0.08) ** 2
    out = new_scan(tmp_path, "medium")
    run_configured_stages(out, curvature)
    assert plan(out, 3).exit_code == 0
    record = json.loads((out / "stage3" / "plan.json").read_text())
    assert record["resolve"]["pixels"] < 30 and record["nside"] > 512
    # Each resolving stage plans the next one from its results, until the region is resolved (or max_nside).
    stage, nside = 3, record["nside"]
    while True:
        fake_stage(out, stage, nside, curvature)
        stage += 1
        result = plan(out, stage)
        after = json.loads((out / f"stage{stage}" / "plan.json").read_text())
        if result.exit_code == 100:
            break
        assert result.exit_code == 0, result.output
        assert after["nside"] > nside and stage < 6
        nside = after["nside"]
    assert after["skipped"] and after["resolve"]["resolved"] and after["resolve"]["pixels"] >= 30
    merged = merge_scan(out)
    mp = merged.meta.map_probability
    assert mp is not None and mp.finest_pixels["90"] >= 30
    assert "the 90% region is not resolved" not in (out / "circular.txt").read_text(encoding="utf-8")


def test_resolved_scan_is_unchanged(tmp_path: Path) -> None:
    out = new_scan(tmp_path, "broad")
    run_configured_stages(out, BROAD)
    before = sorted(p.name for p in out.rglob("*.h5"))
    result = plan(out, 3)
    assert result.exit_code == 100, result.output  # PRE_SKIP: DAGMan counts the node as done
    record = json.loads((out / "stage3" / "plan.json").read_text())
    assert record["skipped"] and record["resolve"]["resolved"] and record["resolve"]["pixels"] >= 30
    assert not (out / "stage3.dag").exists() and not list((out / "stage3").glob("batch-*.txt"))
    assert sorted(p.name for p in out.rglob("*.h5")) == before
    # The configured stages chose what they always chose: compare with resolving turned off.
    off = new_scan(tmp_path, "off", resolve={"min_pixels": 0})
    run_configured_stages(off, BROAD)
    for k in (1, 2):
        assert (off / f"stage{k}" / "plan.json").read_text() == (out / f"stage{k}" / "plan.json").read_text()
        assert (off / f"stage{k}.dag").read_text() == (out / f"stage{k}.dag").read_text() or k == 2
    assert "SUBDAG" not in (off / "stage2.dag").read_text()  # off: the last stage's DAG is as it always was
    assert plan(off, 3).exit_code == 2


def test_max_nside_at_the_last_stage_adds_nothing(tmp_path: Path) -> None:
    out = new_scan(tmp_path, "capped", resolve={"max_nside": 512})
    run_configured_stages(out, SHARP)
    assert "SUBDAG" not in (out / "stage2.dag").read_text()
    merged = merge_scan(out)
    circular = (out / "circular.txt").read_text(encoding="utf-8")
    assert "the 90% region is not resolved: it holds 1 pixel(s) of nside 512" in circular
    assert "the 50% region is not resolved" in circular
    assert [n for n in unresolved_notes(merged.meta) if "90%" in n]


def test_region_record_round_trip() -> None:
    rec = RegionRecord(level_2dllh=4.61, area_deg2=0.02, n_pixels=109, resolved=True, finest_nside=4096,
                       finest_pixels=109)
    doc = rec.to_json()
    assert (doc["resolved"], doc["finest_nside"], doc["finest_pixels"]) == (True, 4096, 109)
    assert RegionRecord.from_json(doc) == rec
    assert RegionRecord.from_json({"area_deg2": 1.0}).resolved is None  # older summaries: unknown


def test_map_probability_counts_finest_pixels(tmp_path: Path) -> None:
    out = write_synthetic_scan(tmp_path / "syn", sigma_deg=0.02, config_text="containment: wilks\nmerge:\n  plots: false\n")
    merged = merge_scan(out)
    mp = map_probability(merged.map, "wilks", {"50": 1.39, "90": 4.61})
    # The region (containment.py's) lies wholly at nside 512 here: its pixel count is the finest count.
    assert mp.finest_nside == 512
    assert mp.finest_pixels == {k: merged.meta.regions[k].n_pixels for k in ("50", "90")}
    assert 1 <= mp.finest_pixels["90"] <= 4
    n90 = mp.finest_pixels["90"]
    assert resolution_of(mp, "90", n90) == {"resolved": True, "finest_nside": 512, "finest_pixels": n90}
    assert resolution_of(mp, "90", n90 + 1)["resolved"] is False
    assert resolution_of(None, "90", 30)["resolved"] is None


def test_summary_flags_per_level(tmp_path: Path) -> None:
    out = write_synthetic_scan(tmp_path / "syn", sigma_deg=0.02, config_text="containment: wilks\nmerge:\n  plots: false\n")
    merge_scan(out)
    doc = json.loads((out / "summary.json").read_text())
    assert doc["containment"]["90"]["resolved"] is False and doc["containment"]["50"]["resolved"] is False
    assert doc["containment"]["90"]["finest_nside"] == 512
