"""The circular's draft notes list every sentence still to write; areas carry two significant figures."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from skyscan.products.containment import Region
from skyscan.products.gcn import render_circular, two_significant
from skyscan.products.meta import BestFit, SkymapMeta

END = "==== END OF DRAFT NOTES ===="


@pytest.fixture
def meta() -> SkymapMeta:
    region = Region(4.61, 0.0131, 0.1, 0.1, 0.1, 0.1, 1, 1, False, True, "")
    return SkymapMeta(
        run_id=140123, event_id=5678901, event_time=datetime(2026, 6, 21, 3, 14, 15, 920000, tzinfo=timezone.utc),
        stream="bronze", best_fit=BestFit(110.65, 14.02, None, None, 10.0, 512), containment_method="wilks",
        regions={"50": replace(region, level_2dllh=1.39), "90": region}, config_yaml="",
        created=datetime(2026, 6, 21, 4, 0, tzinfo=timezone.utc), software_version="1.2.3", git_revision=None,
    )


@pytest.mark.parametrize(
    "change", [{}, {"event_time": None, "stream": None}, {"stream": "hese"}, {"far_per_year": 2.5}]
)
def test_notes_list_every_sentence_to_write(meta: SkymapMeta, change: dict[str, object]) -> None:
    text = render_circular(replace(meta, **change))  # type: ignore[arg-type]
    notes, body = text.split(END)
    listed = re.findall(r"^  \d+\. (.+)$", notes, flags=re.M)
    body_todos = re.findall(r"\[\[TODO: ([^\]]+)\]\]", body)
    assert body_todos  # catalog paragraph and contact line at least
    assert f"Sentences still to write ({len(listed)}):" in notes
    for t in body_todos:
        assert any(t in item for item in listed), t
    assert len(listed) == len(dict.fromkeys(listed))


def test_far_sentence_and_wording(meta: SkymapMeta) -> None:
    text = render_circular(replace(meta, far_per_year=2.93127))
    assert "estimated false alarm rate of 2.931 events per year" in text
    assert "moderate probability of being of astrophysical origin" in text
    assert "ICECUBE_Astrotrack_BRONZE" in text
    assert "covers 0.013 square degrees" in text  # not "0.01"
    assert "no false alarm rate" in render_circular(meta)  # the note asks for it when it is unknown


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0131, "0.013"), (0.289, "0.29"), (4.567, "4.6"), (9.96, "10"), (123.4, "120"), (0.105, "0.10"), (1.0, "1.0")],
)
def test_two_significant(value: float, text: str) -> None:
    assert two_significant(value) == text


def test_levels_from_a_calibration_count_as_calibrated(meta: SkymapMeta) -> None:
    note = "IceCube circulars quote levels calibrated with simulations"
    assert note in render_circular(meta)  # wilks
    assert note not in render_circular(replace(meta, containment_method="calibrated"))
    # A calibration file's levels (the method name the level chooser gives them) are calibrated too.
    assert note not in render_circular(replace(meta, containment_method="resimulation (calibration.json)"))
    assert note in render_circular(replace(meta, containment_method="explicit"))


def test_unresolved_regions_are_listed_in_the_notes(meta: SkymapMeta) -> None:
    from skyscan.products.credible import MapProbability

    mp = MapProbability(weight=1.0, matched_label=None, finest_nside=512, finest_pixels={"50": 1, "90": 1})
    text = render_circular(replace(meta, map_probability=mp, config_yaml="scan:\n  resolve:\n    max_nside: 512\n"))
    notes = text.split(END)[0]
    assert "the 90% region is not resolved: it holds 1 pixel(s) of nside 512 (fewer than 30)" in notes
    assert "the 50% region is not resolved" in notes and "higher scan.resolve.max_nside" in notes
    resolved = replace(mp, finest_nside=4096, finest_pixels={"50": 31, "90": 109})
    assert "not resolved" not in render_circular(replace(meta, map_probability=resolved))
    assert "not resolved" not in render_circular(meta)  # not measured: no claim either way
