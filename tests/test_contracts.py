"""The contracts with one owner: summary.json through the typed Summary, the campaign report's column
aliases, and the submission record the watcher reads instead of the CLI's text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from skyscan.campaign.report.rows import ALIASES
from skyscan.errors import InputError
from skyscan.nodes.merge import merge_scan
from skyscan.nodes.synthetic import write_synthetic_scan
from skyscan.ops.catalog.listing import COLUMN_NAMES as CATALOG_COLUMNS
from skyscan.ops.submission import SUBMISSION_SCHEMA, read_submission, record_submission
from skyscan.ops.watcher import submitted_cluster
from skyscan.products.summary import SUMMARY_SCHEMA, Summary, read_summary


@pytest.fixture(scope="module")
def summary_doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = write_synthetic_scan(tmp_path_factory.mktemp("contracts") / "scan", plan=((8, 0), (64, 12)),
                               batch_size=256, config_text="containment: wilks\nmerge:\n  plots: false\n")
    merge_scan(out)
    path = out / "summary.json"
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_summary_model_round_trips_the_written_document(summary_doc: tuple[Path, dict[str, Any]]) -> None:
    path, doc = summary_doc
    model = read_summary(path)
    assert model.to_json() == doc
    assert json.dumps(model.to_json()) == json.dumps(doc)  # same key order as merge wrote
    assert doc["schema"] == SUMMARY_SCHEMA == "skyscan-summary/1"


def test_summary_model_refuses_a_document_without_schema_or_best_fit(summary_doc: tuple[Path, Any]) -> None:
    _, doc = summary_doc
    with pytest.raises(InputError, match="schema"):
        Summary.from_json({k: v for k, v in doc.items() if k != "schema"}, "x/summary.json")
    broken = dict(doc, best_fit={**doc["best_fit"], "ra_deg": float("nan")})
    with pytest.raises(InputError, match=r"x/summary\.json"):
        Summary.from_json(broken, "x/summary.json")


def test_campaign_aliases_map_the_old_names_onto_the_catalog_names() -> None:
    expected = {
        "best_nside": "nside",
        "containment": "containment_method",
        "area50_deg2": "area_50_deg2",
        "area90_deg2": "area_90_deg2",
        "ra_plus50_deg": "ra_plus_50_deg",
        "dec_minus90_deg": "dec_minus_90_deg",
        "level90_2dllh": "level_90_2dllh",
    }
    for old, new in expected.items():
        assert ALIASES[old] == new
    shared = {name for name in ALIASES.values() if name in CATALOG_COLUMNS}
    assert {"area_50_deg2", "area_90_deg2", "ra_plus_50_deg"} <= shared


def test_submission_record_is_what_the_watcher_reads(tmp_path: Path) -> None:
    record_submission(tmp_path, 4242, "skyscan-1-2")
    doc = json.loads((tmp_path / "submission.json").read_text(encoding="utf-8"))
    assert doc["schema"] == SUBMISSION_SCHEMA == "skyscan-submission/1"
    assert (doc["cluster_id"], doc["batch_name"]) == (4242, "skyscan-1-2")
    record = read_submission(tmp_path)
    assert record is not None and record.cluster_id == 4242
    # this attempt's record wins over the command's text; a record older than the attempt does not
    assert submitted_cluster(str(tmp_path), "2000-01-01T00:00:00Z", "submitted to cluster 7.") == 4242
    assert submitted_cluster(str(tmp_path), "2999-01-01T00:00:00Z", "submitted to cluster 7.") == 7
