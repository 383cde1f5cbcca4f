"""GCN drafts: the circular's formatted lines and placeholders, the template override, and the notice fields."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from skyscan.errors import InputError
from skyscan.products.containment import Region
from skyscan.products.gcn import event_name, load_template, notice, render_circular, rounded_time
from skyscan.products.meta import BestFit, SkymapMeta


def _region(level: float, area: float, ra: tuple[float, float], dec: tuple[float, float], ok: bool = True) -> Region:
    return Region(level, area, ra[0], ra[1], dec[0], dec[1], 100, 1, not ok, ok, "" if ok else "pole note")


@pytest.fixture
def meta() -> SkymapMeta:
    return SkymapMeta(
        run_id=138632,
        event_id=31747601,
        event_time=datetime(2026, 3, 4, 5, 22, 26, 154574, tzinfo=timezone.utc),
        stream="gold",
        best_fit=BestFit(32.5234, -9.0071, 101.0, 20.0, 1234.5, 512),
        containment_method="calibrated",
        regions={
            "50": _region(22.2, 1.234, (0.31, 0.22), (0.18, 0.2)),
            "90": _region(64.2, 4.567, (0.578, 0.401), (0.349, 0.301)),
        },
        config_yaml="containment: calibrated\n",
        created=datetime(2026, 3, 4, 6, 0, tzinfo=timezone.utc),
        software_version="1.2.3",
        git_revision=None,
        far_per_year=0.5524,
        signalness=0.61,
        energy_gev=1.27e5,
    )


def test_circular_lines(meta: SkymapMeta) -> None:
    text = render_circular(meta)
    lines = text.splitlines()
    assert "SUBJECT: IceCube-260304A - IceCube observation of a high-energy neutrino candidate track-like event" in lines
    assert "RA: 32.52 (+0.58, -0.40 deg 90% PSF containment) J2000" in lines
    assert "Dec: -9.01 (+0.35, -0.30 deg 90% PSF containment) J2000" in lines
    assert "Time: 05:22:26.15 UT" in lines
    # One date format (issue 11): the slashes IceCube's circulars use, in the sentence and the date line alike.
    assert "Date: 2026/03/04" in lines
    assert "2026-03-04" not in text.split("==== END OF DRAFT NOTES ====")[1]
    assert "On 2026/03/04 at 05:22:26.15 UT" in text
    assert "with a high probability of being of astrophysical origin" in text
    assert "ICECUBE_Astrotrack_GOLD alert stream" in text and "purity for Gold alerts is 50%" in text
    # IceCube's FAR sentence, 4 significant figures.
    assert "estimated false alarm rate of 0.5524 events per year due to atmospheric backgrounds" in text
    # Areas with two significant figures.
    assert "covers 4.6 square degrees and the 50% region 1.2 square degrees" in text
    assert not any(line.startswith("#") for line in lines)  # template comments are dropped
    assert not any(line != line.rstrip() for line in lines)


def test_circular_placeholders(meta: SkymapMeta) -> None:
    text = render_circular(meta)
    todos = re.findall(r"\[\[TODO: [^\]]+\]\]", text)
    assert any("letter" in t and "'A'" in t and "IceCube-260304A" in t for t in todos)
    assert any("catalog" in t.lower() for t in todos)
    assert "calibrated" not in " ".join(todos)  # calibrated levels need no warning
    wilks = render_circular(replace(meta, containment_method="wilks"))
    assert any("wilks" in t for t in re.findall(r"\[\[TODO: [^\]]+\]\]", wilks))
    pole = dict(meta.regions)
    pole["90"] = _region(64.2, 50.0, (180.0, 180.0), (3.0, 10.0), ok=False)
    assert "RA errors are not meaningful" in render_circular(replace(meta, regions=pole))
    assert "SIMULATED" in render_circular(replace(meta, truth_radec=(1.0, 2.0)))


def test_circular_unknowns(meta: SkymapMeta) -> None:
    text = render_circular(replace(meta, event_time=None, stream=None, far_per_year=None))
    assert "IceCube-YYMMDDA" in text
    assert "Time: [[TODO: HH:MM:SS.SS]] UT" in text
    assert "[[TODO: alert stream" in text
    assert "false-alarm" not in text and "false alarm rate of" not in text
    assert all(line == line.rstrip() for line in text.splitlines())
    bronze = render_circular(replace(meta, stream="Bronze"))
    assert "ICECUBE_Astrotrack_BRONZE alert stream" in bronze and "purity for Bronze alerts is 30%" in bronze
    assert "with a moderate probability of being of astrophysical origin" in bronze
    assert "high probability" not in bronze
    other = render_circular(replace(meta, stream="hese"))
    assert "hese alert stream" in other and "[[TODO: the purity of the hese stream]]" in other


@pytest.mark.parametrize(
    ("when", "expect"),
    [
        (datetime(2026, 3, 4, 5, 22, 26, 154999, tzinfo=timezone.utc), "05:22:26.15"),
        (datetime(2026, 3, 4, 5, 22, 26, 155000, tzinfo=timezone.utc), "05:22:26.16"),
        (datetime(2026, 12, 31, 23, 59, 59, 996000, tzinfo=timezone.utc), "00:00:00.00"),
    ],
)
def test_time_rounding(when: datetime, expect: str) -> None:
    t = rounded_time(when)
    assert t.strftime("%H:%M:%S.") + f"{t.microsecond // 10000:02d}" == expect


def test_event_name_follows_the_rounded_date() -> None:
    assert event_name(datetime(2026, 12, 31, 23, 59, 59, 996000, tzinfo=timezone.utc)) == "IceCube-270101A"
    assert event_name(None) == "IceCube-YYMMDDA"


def test_template_override(tmp_path: Path, meta: SkymapMeta) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# comment\n$event_name costs $$5 at $time_ut\n$ra_line_50\n")
    text = render_circular(meta, load_template(path))
    assert text == "IceCube-260304A costs $5 at 05:22:26.15\n32.52 (+0.31, -0.22 deg 50% PSF containment) J2000\n"
    path.write_text("$event_name $colour\n")
    with pytest.raises(InputError, match=r"\$colour"):
        render_circular(meta, load_template(path), source=str(path))
    path.write_text("costs $5\n")
    with pytest.raises(InputError, match=r"\$\$"):
        render_circular(meta, load_template(path))
    with pytest.raises(InputError, match="no such circular template"):
        load_template(tmp_path / "absent.txt")


def test_packaged_template_is_the_default(meta: SkymapMeta) -> None:
    template = load_template()
    assert "${ra_line}" in template
    assert render_circular(meta) == render_circular(meta, template)


def test_notice_fields(meta: SkymapMeta) -> None:
    doc = notice(meta)
    schema_fields = {
        "$schema", "mission", "instrument", "messenger", "event_name", "id", "alert_datetime", "alert_type",
        "alert_tense", "pipeline", "alert_topology", "number_of_events", "ra", "dec", "ra_dec_error",
        "containment_probability", "systematic_included", "trigger_time", "far", "p_astro", "nu_energy",
    }
    # The current single-neutrino schema (issue 11): analysis_pipeline and additional_info are not its fields.
    assert set(doc) <= schema_fields
    assert doc["$schema"].endswith("/icecube/single_neutrino_alerts.schema.json")
    assert doc["id"] == ["138632_31747601"]
    assert doc["event_name"] == ["IceCube-260304A"]
    assert (doc["ra"], doc["dec"]) == (32.5234, -9.0071)
    # One error radius: a circle with the 90% area.
    assert math.pi * doc["ra_dec_error"] ** 2 == pytest.approx(4.567, rel=1e-3)
    assert doc["containment_probability"] == 0.9
    assert doc["systematic_included"] is True
    assert doc["trigger_time"] == "2026-03-04T05:22:26.154574Z"
    assert doc["far"] == pytest.approx(0.5524 / (365.25 * 86400))
    assert doc["p_astro"] == 0.61 and doc["nu_energy"] == pytest.approx(127.0)
    assert doc["pipeline"] == "Gold Track Alert"
    assert notice(replace(meta, stream="Bronze"))["pipeline"] == "Bronze Track Alert"
    assert doc["alert_type"] == "update" and doc["alert_tense"] == "current"


def test_notice_leaves_unknowns_out(meta: SkymapMeta) -> None:
    doc = notice(replace(meta, event_time=None, far_per_year=None, signalness=None, energy_gev=None, stream=None,
                         truth_radec=(0.0, 0.0), containment_method="wilks"))
    for key in ("trigger_time", "far", "p_astro", "nu_energy", "pipeline"):
        assert key not in doc
    assert doc["systematic_included"] is False
    # A simulation: the schema's value for test triggers (issue 11; "mock" is not an allowed alert_tense).
    assert doc["alert_tense"] == "test" and doc["alert_type"] == "update"
    assert notice(replace(meta, is_real_event=False))["alert_tense"] == "test"


# --- healpix_url: only where the outbox publishes the map at a known address --------------------------------------
def _done_scan(folder: Path, meta: SkymapMeta) -> Path:
    import json

    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "skymap-fullsky.png").write_bytes(b"png")
    (folder / "summary.json").write_text("{}\n", encoding="utf-8")
    (folder / "circular.txt").write_text("circular\n", encoding="utf-8")
    (folder / "notice.json").write_text(json.dumps(notice(meta)), encoding="utf-8")
    (folder / "skymap.multiorder.fits").write_bytes(b"SIMPLE fits bytes")
    return folder


def test_healpix_url_rules() -> None:
    from skyscan.products.gcn import healpix_url

    assert healpix_url("http://h:8080/a", "run1-evt2-r1") == "http://h:8080/a/run1-evt2-r1/skymap.multiorder.fits"
    assert healpix_url("https://h/x", "a b") == "https://h/x/a%20b/skymap.multiorder.fits"
    for bad in ("ftp://h/x", "h/x", "https://h/x?key=1", "https://h/x#top", "https:///x"):
        with pytest.raises(InputError, match="outbox base URL"):
            healpix_url(bad, "run1-evt2-r1")


def test_outbox_with_a_base_url_publishes_the_map_and_its_url(
    tmp_path: Path, meta: SkymapMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from skyscan.ops.publish import BASE_URL_ENV, publish_outbox

    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    scan = _done_scan(tmp_path / "scan", meta)
    plain = tmp_path / "outbox" / "run138632-evt31747601-r1"
    assert publish_outbox(scan, plain) == []
    assert not (plain / "skymap.multiorder.fits").exists()
    assert "healpix_url" not in json.loads((plain / "notice.json").read_text())

    assert publish_outbox(scan, plain, base_url="https://alerts.example.org/outbox") == []
    doc = json.loads((plain / "notice.json").read_text())
    assert doc["healpix_url"] == "https://alerts.example.org/outbox/run138632-evt31747601-r1/skymap.multiorder.fits"
    assert (plain / "skymap.multiorder.fits").read_bytes() == b"SIMPLE fits bytes"
    assert {k: v for k, v in doc.items() if k != "healpix_url"} == json.loads((scan / "notice.json").read_text())
    assert "healpix_url" not in json.loads((scan / "notice.json").read_text())  # the scan's own draft unchanged

    monkeypatch.setenv(BASE_URL_ENV, "https://env.example.org/box/")
    other = tmp_path / "outbox" / "run1-evt2-r3"
    publish_outbox(scan, other)
    assert json.loads((other / "notice.json").read_text())["healpix_url"].startswith("https://env.example.org/box/run1-")
    with pytest.raises(InputError, match="outbox base URL"):
        publish_outbox(scan, tmp_path / "outbox" / "bad", base_url="ftp://nope")
    assert not (tmp_path / "outbox" / "bad").exists()  # refused before anything was copied
    (scan / "skymap.multiorder.fits").unlink()
    assert "skymap.multiorder.fits" in publish_outbox(scan, plain, base_url="https://alerts.example.org/outbox")
