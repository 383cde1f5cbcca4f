"""notice.json checked field by field against the schema mapping documented in docs/gcn-drafts.md."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from skyscan.products.containment import Region
from skyscan.products.gcn import NOTICE_FIELDS, notice
from skyscan.products.meta import BestFit, SkymapMeta

DOC = Path(__file__).resolve().parents[1] / "docs" / "gcn-drafts.md"
_TYPES = {"string": str, "number": (int, float), "boolean": bool, "array of strings": list}


def _mapping() -> dict[str, tuple[str, str]]:
    """field -> (allowed, skyscan's value) from the table between the notice-mapping markers."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- notice-mapping:start -->")[1].split("<!-- notice-mapping:end -->")[0]
    rows = {}
    for line in block.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def _check(doc: dict[str, object], mapping: dict[str, tuple[str, str]]) -> None:
    for key, value in doc.items():
        assert key in mapping, f"{key} is not in the documented mapping"
        allowed = mapping[key][0]
        if allowed in _TYPES:
            assert isinstance(value, _TYPES[allowed]) and not (allowed == "number" and isinstance(value, bool)), key
            if allowed == "array of strings":
                assert all(isinstance(v, str) for v in value), key  # type: ignore[attr-defined]
        else:
            values = re.findall(r"`([^`]+)`", allowed)
            assert values and value in values, f"{key}={value!r} not among {values}"
        if key == "$schema":
            assert f"`{value}`" == mapping[key][1]


@pytest.fixture
def meta() -> SkymapMeta:
    region = Region(64.2, 4.567, 0.578, 0.401, 0.349, 0.301, 100, 1, False, True, "")
    return SkymapMeta(
        run_id=138632, event_id=31747601, event_time=datetime(2026, 3, 4, 5, 22, 26, 154574, tzinfo=timezone.utc),
        stream="gold", best_fit=BestFit(32.5234, -9.0071, 101.0, 20.0, 1234.5, 512),
        containment_method="calibrated", regions={"50": region, "90": region}, config_yaml="",
        created=datetime(2026, 3, 4, 6, 0, tzinfo=timezone.utc), software_version="1.2.3", git_revision=None,
        far_per_year=0.5524, signalness=0.61, energy_gev=1.27e5,
    )


def test_the_mapping_documents_every_field() -> None:
    assert set(_mapping()) == set(NOTICE_FIELDS)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"stream": "Bronze"},
        {"stream": "hese", "event_time": None, "far_per_year": None, "signalness": None, "energy_gev": None},
        {"truth_radec": (1.0, 2.0), "containment_method": "wilks"},
        {"is_real_event": False},
    ],
)
def test_notice_follows_the_documented_schema_mapping(meta: SkymapMeta, change: dict[str, object]) -> None:
    mapping = _mapping()
    m = replace(meta, **change)  # type: ignore[arg-type]
    doc = notice(m)
    _check(doc, mapping)
    assert doc["$schema"].endswith("/gcn/notices/icecube/single_neutrino_alerts.schema.json")
    assert doc["alert_tense"] == ("test" if m.simulated else "current")
    expected_pipeline = {"gold": "Gold Track Alert", "bronze": "Bronze Track Alert"}.get((m.stream or "").lower())
    assert doc.get("pipeline") == expected_pipeline
    assert "analysis_pipeline" not in doc and "additional_info" not in doc


def test_healpix_url_follows_the_mapping(meta: SkymapMeta) -> None:
    from skyscan.products.gcn import healpix_url

    url = healpix_url("https://alerts.example.org/outbox/", "run138632-evt31747601-r1")
    assert url == "https://alerts.example.org/outbox/run138632-evt31747601-r1/skymap.multiorder.fits"
    doc = notice(meta, healpix_url=url)
    _check(doc, _mapping())
    assert doc["healpix_url"] == url and list(doc) == [k for k in NOTICE_FIELDS if k in doc]
    assert "healpix_url" not in notice(meta)  # never guessed
