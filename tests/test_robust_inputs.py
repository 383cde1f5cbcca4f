"""Bad input at every boundary is exit 2 with one line, and leaves nothing half-written (issue points 1, 7, 8)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.reco import untrusted
from skyscan.reco.event import read_event
from skyscan.settings.scan import load_config
from skyscan.settings.yamlio import parse_yaml_text

Setup = Callable[[Path, dict[str, Any]], list[str]]


def _event(tmp: Path, doc: dict[str, Any], name: str = "ev.json", raw: str | None = None) -> str:
    path = tmp / name
    path.write_text(raw if raw is not None else json.dumps(doc), encoding="utf-8")
    return str(path)


def _raw(doc: dict[str, Any], key: str, literal: str) -> str:
    out = copy.deepcopy(doc)
    out.pop(key, None)
    return json.dumps(out)[:-1] + f', "{key}": {literal}' + "}"


def _file(tmp: Path, name: str, data: bytes) -> str:
    (tmp / name).write_bytes(data)
    return str(tmp / name)


CASES: list[Any] = [
    pytest.param(lambda t, d: ["run", _event(t, d, raw=_raw(d, "far_per_year", "1" * 400)), "-o", str(t / "o")],
                 ("64-bit",), id="event-400-digit-number"),
    pytest.param(lambda t, d: ["run", _event(t, d, raw=_raw(d, "energy_gev", "9" * 5000)), "-o", str(t / "o")],
                 ("64-bit",), id="event-5000-digit-integer"),
    pytest.param(lambda t, d: ["run", _event(t, {**d, "time": "0001-01-01T00:00:00+01:00"}), "-o", str(t / "o")],
                 ("time", "range"), id="event-time-at-datetime-edge"),
    pytest.param(lambda t, d: ["run", _event(t, d, raw=_raw(d, "stream", '"\\ud800"')), "-o", str(t / "o")],
                 ("surrogate",), id="event-lone-surrogate"),
    pytest.param(lambda t, d: ["run", _event(t, d, raw=json.dumps(d)[:-1] + ', "event_id": 3}'), "-o",
                               str(t / "o")], ("duplicate key 'event_id'",), id="event-duplicate-key"),
    pytest.param(lambda t, d: ["run", _event(t, {**d, "stream": "gold\nfake line"}), "-o", str(t / "o")],
                 ("stream", "not a stream name"), id="event-stream-newline"),
    pytest.param(lambda t, d: ["run", _event(t, d), "-o", str(t / "o"), "--config",
                               _file(t, "c.yaml", b"\xff\xfedag: {}\n")], ("UTF-8",), id="config-not-utf8"),
    pytest.param(lambda t, d: ["run", _event(t, d), "-o", str(t / "o"), "--config",
                               _file(t, "c.yaml", b"dag: {retries: 1}\ndag: {retries: 2}\n")],
                 ("duplicate key 'dag'",), id="config-duplicate-key"),
    pytest.param(lambda t, d: ["run", _event(t, d), "-o", str(t / "o"), "--config",
                               _file(t, "c.yaml", b"dag: {retries: 100000000000000000000}\n")],
                 ("64-bit",), id="config-retries-1e20"),
    pytest.param(lambda t, d: ["run", _event(t, d), "-o", str(t / "o"), "--config",
                               _file(t, "c.yaml", b"dag: {retries: 1000000}\n")],
                 ("dag.retries", "<= 100"), id="config-retries-too-many"),
    pytest.param(lambda t, d: ["run", _event(t, d), "-o", str(t / "o"), "--containment", "5,1"],
                 ("containment", "ascend"), id="containment-levels-descending"),
    pytest.param(lambda t, d: ["node", "scan", _event(t, d), "--nside", "8", "--pixels",
                               _file(t, "p.txt", b"9" * 5000 + b"\n"), "-o", str(t / "r.h5")],
                 ("out of range",), id="pixel-file-5000-digits"),
    pytest.param(lambda t, d: ["node", "scan", _event(t, d), "--nside", "8", "--pixels",
                               _file(t, "p.txt", b"\xff1\n"), "-o", str(t / "r.h5")],
                 ("UTF-8",), id="pixel-file-not-utf8"),
    pytest.param(lambda t, d: ["node", "scan", _event(t, d), "--nside", "8", "--pixels", "99999999999999999999999",
                               "-o", str(t / "r.h5")], ("--pixels", "out of range"), id="pixel-index-overflow"),
    pytest.param(lambda t, d: ["node", "scan", _event(t, d), "--nside", "8", "--pixels", "0-" + "9" * 300,
                               "-o", str(t / "r.h5")], ("--pixels",), id="pixel-range-name-too-long"),
    pytest.param(lambda t, d: ["coords", "--time", "0001-01-01T00:00:00+01:00", "--zenith", "1", "--azimuth", "1"],
                 ("--time", "range"), id="coords-time-edge"),
    pytest.param(lambda t, d: ["coords", "--time", "9999-12-31T23:59:59-05:00", "--zenith", "1", "--azimuth", "1"],
                 ("--time", "range"), id="coords-time-far-future"),
    pytest.param(lambda t, d: ["simulate", "--time-ns", "nan", "-o", str(t / "s.json")], ("--time-ns", "finite"),
                 id="simulate-time-ns-nan"),
    pytest.param(lambda t, d: ["simulate", "--run-id", str(2**63), "-o", str(t / "s.json")], ("--run-id",),
                 id="simulate-run-id-2-63"),
    pytest.param(lambda t, d: ["simulate", "--stream", "a b\nc", "-o", str(t / "s.json")], ("stream",),
                 id="simulate-bad-stream"),
    pytest.param(lambda t, d: ["catalog", "--db", _file(t, "empty.db", b"")], ("empty file",),
                 id="catalog-db-empty-file"),
    pytest.param(lambda t, d: ["catalog", "--db", _file(t, "bad.db", b"SQLite format 3\x00" + b"x" * 2000)],
                 ("not a usable catalog database",), id="catalog-db-corrupt"),
    pytest.param(lambda t, d: ["cancel", "9" * 30, "--db", str(t / "cat.sqlite")], ("id", "range"),
                 id="cancel-id-overflow"),
    pytest.param(lambda t, d: ["cancel", f"{2**64}:1", "--db", str(t / "cat.sqlite")], ("run", "range"),
                 id="cancel-run-overflow"),
    pytest.param(lambda t, d: ["catalog", "--db", str(t / "cat.sqlite"), "--since", "0001-01-01T00:00:00+01:00"],
                 ("--since",), id="catalog-since-edge"),
]


@pytest.fixture
def catalog_db(tmp_path: Path) -> Path:
    from skyscan.ops.catalog import connect

    conn = connect(tmp_path / "cat.sqlite")
    conn.close()
    return tmp_path / "cat.sqlite"


@pytest.mark.parametrize(("setup", "words"), CASES)
def test_bad_input_exit_2_one_line_nothing_written(
    setup: Setup, words: tuple[str, ...], tmp_path: Path, event_doc: dict[str, Any], catalog_db: Path,
    input_error: Callable[..., None],
) -> None:
    args = setup(tmp_path, event_doc)
    before = {p: p.stat().st_size for p in tmp_path.rglob("*")}
    result = CliRunner().invoke(cli, args)
    input_error(result, *words)
    after = {p: p.stat().st_size for p in tmp_path.rglob("*")}
    assert after == before  # no output, no scan directory, no schema written into an empty file


def test_campaign_create_lists_a_poisoned_event_as_rejected(tmp_path: Path, event_doc: dict[str, Any]) -> None:
    good = _event(tmp_path, event_doc, "good.json")
    bad = _event(tmp_path, event_doc, "bad.json", raw=_raw(event_doc, "far_per_year", "1" * 400))
    edge = _event(tmp_path, {**event_doc, "time": "0001-01-01T00:00:00+01:00"}, "edge.json")
    result = CliRunner().invoke(cli, ["campaign", "create", good, bad, edge, "-o", str(tmp_path / "camp")])
    assert result.exit_code == 0, result.output
    assert "1 events (2 rejected)" in result.output
    assert "bad.json" in result.output and "edge.json" in result.output


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("a: 1\na: 2\n", "duplicate key 'a' at line 2"),
        ("a: {b: 1, b: 2}\n", "duplicate key 'b'"),
        ("a: " + "1" * 5000 + "\n", "64-bit"),
        ("a: 2020-02-30\n", "day is out of range"),
        ("a: [b\n", "invalid YAML"),
    ],
)
def test_yaml_boundary(text: str, word: str) -> None:
    with pytest.raises(InputError) as info:
        parse_yaml_text(text, "f.yaml")
    assert str(info.value).startswith("f.yaml: ") and word in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_merge_keys_still_work() -> None:
    assert parse_yaml_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "f") == {
        "base": {"x": 1}, "other": {"x": 1, "y": 2}}


def test_containment_levels_in_order_are_accepted() -> None:
    assert load_config(None, {"containment": {"50": 1.0, "90": 5.0}, "scan": {"adaptive": {"level": "90"}}})
    with pytest.raises(InputError, match="ascend"):
        load_config(None, {"containment": {"50": 5.0, "90": 1.0}})


@pytest.mark.parametrize(
    ("value", "ok"),
    [("1900-01-01T00:00:00Z", True), ("2199-12-31T23:59:59Z", True), ("1899-12-31T23:59:59Z", False),
     ("2200-01-01T00:00:00+00:00", False), ("2200-01-01T00:30:00+01:00", True),
     ("0001-01-01T00:00:00+01:00", False), ("9999-12-31T23:59:59.999999-23:59", False)],
)
def test_time_range_edges(value: str, ok: bool) -> None:
    """The accepted range is [1900, 2200) UTC, compared before any time-zone conversion can overflow."""
    if ok:
        assert untrusted.TIME_MIN <= untrusted.parse_time(value) < untrusted.TIME_MAX
    else:
        with pytest.raises(InputError, match="range"):
            untrusted.parse_time(value)


@pytest.mark.parametrize(
    ("text", "minimum", "maximum", "expected"),
    [("12", 0, 100, 12), ("-5", -10, 0, -5), (" 7 ", 0, 9, 7), ("1_000", 0, 10**6, None), ("١٢", 0, 99, None),
     ("9" * 20, 0, untrusted.INT64_MAX, None), ("9" * 5000, 0, untrusted.INT64_MAX, None), ("", 0, 1, None)],
)
def test_parse_int(text: str, minimum: int, maximum: int, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(InputError):
            untrusted.parse_int(text, "--n", minimum, maximum)
    else:
        assert untrusted.parse_int(text, "--n", minimum, maximum) == expected


def test_read_event_message_names_the_file_and_is_one_line(tmp_path: Path, event_doc: dict[str, Any]) -> None:
    path = tmp_path / "e.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError) as info:
        read_event(path)
    assert str(info.value).startswith(f"{path}: ") and "deep" in str(info.value)


def test_config_key_with_a_newline_is_quoted_on_one_line(tmp_path: Path) -> None:
    """Found by the long fuzz run: a YAML key holding a line break reached the message raw."""
    path = tmp_path / "c.yaml"
    path.write_text('scan: {"\\n\\u001b[31m": 1}\n', encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message
    assert "scan.\\n\\x1b[31m: unknown key" in message


def test_input_error_escapes_control_characters_whatever_builds_the_message() -> None:
    assert str(InputError("bad\r\nline\tx")) == "bad\\r\\nline\\tx"
    assert str(InputError("RA 258.31°, 0.02 deg²")) == "RA 258.31°, 0.02 deg²"


def test_check_strings_skips_number_columns_but_not_what_they_hide() -> None:
    assert untrusted.check_strings({"t": [1.0, 2, True, None] * 100}, "ev") == {"t": [1.0, 2, True, None] * 100}
    with pytest.raises(InputError, match="unpaired surrogate"):
        untrusted.check_strings({"t": [1.0, 2, ["\ud800"]]}, "ev")
    with pytest.raises(InputError, match="unpaired surrogate"):
        untrusted.check_strings([0.5, "\udfff", 3], "ev")
    deep: list[object] = [1.0]
    for _ in range(untrusted.MAX_NESTING + 1):
        deep = [2.0, deep]
    with pytest.raises(InputError, match="nested more than"):
        untrusted.check_strings(deep, "ev")
