"""watch.yaml's outbox_base_url: checked when the configuration is read, handed to the publisher."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyscan.errors import InputError
from skyscan.ops import watchconfig
from skyscan.ops.watcher import scheduler_settings


def _cfg(tmp_path: Path, **extra: object) -> watchconfig.WatchConfig:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    raw = {"inbox": "inbox", "state_dir": "state", **extra}
    return watchconfig.config_from_mapping(raw, tmp_path, "watch.yaml")


def test_default_is_no_base_url(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cfg.outbox_base_url is None and scheduler_settings(cfg).outbox_base_url is None


def test_base_url_reaches_the_scheduler(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, outbox_base_url="https://alerts.example.org/skyscan/")
    assert scheduler_settings(cfg).outbox_base_url == "https://alerts.example.org/skyscan/"


@pytest.mark.parametrize("bad", ["ftp://alerts.example.org", "https://alerts.example.org/?x=1", "not a url", 5])
def test_bad_base_url_is_refused_at_load(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InputError) as err:
        _cfg(tmp_path, outbox_base_url=bad)
    message = str(err.value)
    assert message.startswith("watch.yaml: outbox_base_url:") and "\n" not in message
