"""A poison-proof watcher: no inbox entry, whatever it holds or is, stops a pass or escapes into the logs raw.

Scans are run by tests/fake_scan.py, as in tests/test_watch.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from skyscan.cli.watch import standalone_group
from skyscan.ops import catalog
from skyscan.ops.logs import one_line, safe_text
from skyscan.ops.watchconfig import load_watch_config

FAKE = Path(__file__).with_name("fake_scan.py")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ watch\[\d+\] (INFO|WARNING|ERROR) ")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(standalone_group(), list(args))


def write_config(tmp_path: Path, **settings: Any) -> Path:
    doc: dict[str, Any] = {
        "inbox": "inbox", "state_dir": "state", "settle_seconds": 0, "retry_delay_seconds": 0, "max_running": 5,
        "max_attempts": 2, "stall_seconds": 600, "kill_grace_seconds": 2,
        "scan_command": [sys.executable, str(FAKE), "--sleep", "0.1"],
    }
    doc.update(settings)
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


@pytest.fixture
def good(event_doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(event_doc)
    doc.pop("truth", None)
    return doc


def _with(doc: dict[str, Any], **changes: Any) -> str:
    out = copy.deepcopy(doc)
    out.update(changes)
    return json.dumps(out)


def _raw_field(doc: dict[str, Any], key: str, literal: str) -> str:
    """The event as JSON with ``"key": <literal>`` appended verbatim (a literal json.dumps would not write)."""
    out = copy.deepcopy(doc)
    out.pop(key, None)
    return json.dumps(out)[:-1] + f', "{key}": {literal}' + "}"


def poison(doc: dict[str, Any], inbox: Path, outside: Path) -> dict[str, str]:
    """Twenty bad inbox entries of different kinds; name -> a word its quarantine reason must contain."""
    text: dict[str, str | bytes] = {
        "far-400-digits.json": _raw_field(doc, "far_per_year", "1" * 400),
        "time-edge.json": _with(doc, time="0001-01-01T00:00:00+01:00"),
        "stream-surrogate.json": _raw_field(doc, "stream", '"\\ud800"'),
        "energy-5000-digits.json": _raw_field(doc, "energy_gev", "9" * 5000),
        "duplicate-key.json": json.dumps(doc)[:-1] + ', "run_id": 7}',
        "not-utf8.json": b'{"schema": "skyscan-event/1", "stream": "\xff\xfe"}',
        "stream-newline.json": _with(doc, stream="gold\n2026-01-01T00:00:00Z watch[1] INFO forged"),
        "stream-ansi.json": _with(doc, stream="\x1b[31mgold"),
        "empty.json": "",
        "broken.json": '{"schema": ',
        "array.json": "[]",
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "nan-time.json": _raw_field(doc, "pulses", json.dumps({**doc["pulses"], "time": ["NaN"]})).replace(
            '["NaN"]', "[NaN]"),
        "run-id-2-63.json": _with(doc, run_id=2**63),
        "unknown-geometry.json": _with(doc, geometry="nowhere"),
        "evil\n2026-01-01T00:00:00Z watch[1] INFO forged \x1b[2J.json": "{",
    }
    expect = {
        "far-400-digits.json": "64-bit", "time-edge.json": "range", "stream-surrogate.json": "surrogate",
        "energy-5000-digits.json": "64-bit", "duplicate-key.json": "duplicate key", "not-utf8.json": "UTF-8",
        "stream-newline.json": "stream", "stream-ansi.json": "stream", "empty.json": "empty",
        "broken.json": "invalid JSON", "array.json": "JSON object", "deep.json": "deep",
        "nan-time.json": "finite", "run-id-2-63.json": "64-bit", "unknown-geometry.json": "geometry",
        "evil\\x0a2026-01-01T00:00:00Z watch[1] INFO forged \\x1b[2J.json": "invalid JSON",
    }
    for name, content in text.items():
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        (inbox / name).write_bytes(data)
    target = outside / "target.json"
    target.write_text(_with(doc, run_id=900, event_id=1))
    os.symlink(target, inbox / "symlink.json")
    secret = outside / "secret.json"
    secret.write_text(_with(doc, run_id=901, event_id=1))
    os.link(secret, inbox / "hardlink.json")
    (inbox / "folder.json").mkdir()
    os.mkfifo(inbox / "fifo.json")
    expect.update({"symlink.json": "symbolic link", "hardlink.json": "hard link", "folder.json": "folder",
                   "fifo.json": "not a regular file"})
    assert len(expect) == 20
    return expect


def test_twenty_poisoned_files_among_five_good_ones(tmp_path: Path, good: dict[str, Any]) -> None:
    cfg_path = write_config(tmp_path)
    inbox, outside = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    outside.mkdir()
    expect = poison(good, inbox, outside)
    for i in range(5):
        (inbox / f"good-{i}.json").write_text(_with(good, run_id=100 + i, event_id=i))

    cfg = load_watch_config(cfg_path)
    deadline = time.monotonic() + 90
    passes = 0
    while True:
        result = invoke("watch", "--config", str(cfg_path), "--once")
        passes += 1
        assert result.exit_code == 0, result.output
        conn = catalog.connect(cfg.database, create=False)
        try:
            states = [r["state"] for r in conn.execute("SELECT state FROM scans")]
        finally:
            conn.close()
        if len(states) == 5 and all(s == "done" for s in states):
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)

    # the 5 good ones scanned and published
    assert sorted(p.name for p in cfg.outbox.iterdir()) == [f"run{100 + i}-evt{i}-r1" for i in range(5)]
    # the inbox is empty: the 20 are quarantined, each with a reason naming its problem
    assert list(inbox.iterdir()) == []
    notes = {p: p.read_text(encoding="utf-8") for p in cfg.quarantine.glob("*.reason")}
    assert len(notes) == 20
    by_file = {}
    for note in notes.values():
        reason, file_line = note.splitlines()[:2]
        assert file_line.startswith("file: ")
        by_file[file_line[len("file: "):]] = reason
    assert set(by_file) == set(expect)
    for name, word in expect.items():
        assert word in by_file[name], (name, by_file[name])
    # links were moved as links: their targets were neither archived nor moved
    assert (outside / "target.json").is_file() and (outside / "secret.json").is_file()
    archived = [p.read_bytes() for p in cfg.archive.rglob("*.json")]
    assert len(archived) == 5 + 16  # the good ones and the 16 regular poisoned files, never a link's target
    assert not any(b'"run_id": 900' in a or b'"run_id": 901' in a for a in archived)
    assert (cfg.quarantine / next(p.name for p in cfg.quarantine.iterdir() if p.name.endswith("symlink.json"))
            ).is_symlink()
    # every line of the log is a log line: no alert text forged one, no raw control character is in it
    log = cfg.log_file.read_text(encoding="utf-8")
    for line in log.splitlines():
        assert LOG_LINE.match(line), line
        assert not any(ord(c) < 32 for c in line), line
    assert "forged" in log  # the evil file name is there, escaped on its line
    # the catalog lists the quarantined entries, one line each
    conn = catalog.connect(cfg.database, create=False)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM files WHERE outcome = 'quarantined'")]
    finally:
        conn.close()
    assert len(names) == 20 and all(n.isprintable() for n in names)


def test_unexpected_error_in_one_item_quarantines_it_and_the_pass_goes_on(
    tmp_path: Path, good: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validator bug (any exception) on one file: that file is quarantined with the error, the other taken."""
    from skyscan.ops import ingest

    cfg_path = write_config(tmp_path)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a-bad.json").write_text(_with(good, run_id=1, event_id=1))
    (inbox / "b-good.json").write_text(_with(good, run_id=2, event_id=2))
    real = ingest.Inbox.validate

    def flaky(self: ingest.Inbox, archived: Path, name: str) -> Any:
        if name == "a-bad.json":
            raise ZeroDivisionError("a bug")
        return real(self, archived, name)

    monkeypatch.setattr(ingest.Inbox, "validate", flaky)
    result = invoke("watch", "--config", str(cfg_path), "--once")
    assert result.exit_code == 0, result.output
    cfg = load_watch_config(cfg_path)
    reasons = [p.read_text() for p in cfg.quarantine.glob("*.reason")]
    assert len(reasons) == 1 and "ZeroDivisionError: a bug" in reasons[0]
    assert list(inbox.iterdir()) == []


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        pytest.param({"inbox": "."}, ("inbox", "contains the state dir"), id="inbox-is-config-folder"),
        pytest.param({"inbox": "state"}, ("inbox", "is the state dir"), id="inbox-is-state-dir"),
        pytest.param({"inbox": "state/archive"}, ("is the archive",), id="inbox-is-archive"),
        pytest.param({"inbox": "state/outbox/x"}, ("lies inside the outbox",), id="inbox-inside-outbox"),
        pytest.param({"inbox": "q", "quarantine": "q/sub"}, ("contains the quarantine",), id="inbox-holds-quarantine"),
        pytest.param({"inbox": "watch.yaml"}, ("is not a folder",), id="inbox-is-a-file"),
        pytest.param({"max_attempts": 10**30}, ("64-bit", "line"), id="huge-int"),
        pytest.param({"max_attempts": 2**40}, ("max_attempts", "at most"), id="big-int"),
        pytest.param({"retry_delay_seconds": 1e300}, ("retry_delay_seconds",), id="huge-delay"),
    ],
)
def test_bad_watch_config_exit_2_and_nothing_moved(tmp_path: Path, settings: dict[str, Any],
                                                   words: tuple[str, ...]) -> None:
    cfg_path = write_config(tmp_path, **settings)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = invoke("watch", "--config", str(cfg_path), "--once")
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skyscan: error: "), lines
    for word in words:
        assert word in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing quarantined, nothing created


def test_duplicate_key_in_watch_config_exit_2(tmp_path: Path) -> None:
    cfg_path = tmp_path / "watch.yaml"
    cfg_path.write_text("inbox: a\ninbox: b\n")
    result = invoke("watch", "--config", str(cfg_path), "--once")
    assert result.exit_code == 2
    assert "duplicate key 'inbox' at line 2" in result.stderr


def test_safe_text_escapes_what_could_forge_a_line() -> None:
    assert safe_text("a\nb") == "a\\x0ab"
    assert safe_text("\x1b[31mred") == "\\x1b[31mred"
    assert safe_text("bad\udcffname") == "bad\\udcffname"
    assert safe_text("Gamma é ✓") == "Gamma é ✓"  # printable text is unchanged
    assert one_line("x\r\ny\u2028z") == "x y z"
    assert one_line("a\x00b") == "a\\x00b"
