"""The service keeps resolved scan configurations in memory (skyscan.service.store.resolve_config): the kept
answer must be the one a fresh resolution gives, an edit of the service's ``scan_config`` must apply to the next
submission, and a bad configuration must keep failing with its message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from servicekit import FAST_SCAN_CONFIG, write_serve_config

from skyscan.errors import InputError
from skyscan.service import store
from skyscan.service.config import ServeConfig, load_serve_config
from skyscan.service.store import FieldError


def serve_config(tmp_path: Path) -> ServeConfig:
    cfg = load_serve_config(write_serve_config(tmp_path))
    cfg.configs.mkdir(parents=True, exist_ok=True)
    return cfg


def resolved_doc(resolved: store.ResolvedConfig) -> dict[str, object]:
    doc = yaml.safe_load(resolved.path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_a_repeated_configuration_answers_the_same_file_and_it_is_rewritten_if_deleted(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    first = store.resolve_config(cfg, {"reco": {"max_iterations": 33}})
    again = store.resolve_config(cfg, {"reco": {"max_iterations": 33}})
    assert again == first
    assert resolved_doc(first)["reco"]["max_iterations"] == 33  # type: ignore[index]
    other = store.resolve_config(cfg, {"reco": {"max_iterations": 34}})
    assert other.digest != first.digest
    assert resolved_doc(other)["reco"]["max_iterations"] == 34  # type: ignore[index]
    first.path.unlink()
    third = store.resolve_config(cfg, {"reco": {"max_iterations": 33}})
    assert third == first and third.path.is_file()
    assert resolved_doc(third)["reco"]["max_iterations"] == 33  # type: ignore[index]


def test_an_edit_of_the_service_scan_config_applies_to_the_next_submission(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    assert cfg.scan_config is not None
    before = store.resolve_config(cfg, None)
    assert resolved_doc(before)["reco"]["max_iterations"] == FAST_SCAN_CONFIG["reco"]["max_iterations"]  # type: ignore[index]
    edited = {**FAST_SCAN_CONFIG, "reco": {"max_iterations": 21}}  # the same number of bytes as 20
    cfg.scan_config.write_text(yaml.safe_dump(edited), encoding="utf-8")
    after = store.resolve_config(cfg, None)
    assert after.digest != before.digest
    assert resolved_doc(after)["reco"]["max_iterations"] == 21  # type: ignore[index]
    cfg.scan_config.write_text(yaml.safe_dump(FAST_SCAN_CONFIG), encoding="utf-8")
    assert store.resolve_config(cfg, None).digest == before.digest


def test_a_bad_configuration_keeps_failing_with_its_message(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    store.resolve_config(cfg, {"reco": {"max_iterations": 5}})
    for _ in range(2):
        with pytest.raises(FieldError) as err:
            store.resolve_config(cfg, {"reco": {"max_iterations": -1}})
        assert str(err.value) == "config: reco.max_iterations: expected a positive integer"
        assert err.value.field == "config.reco.max_iterations"


def test_a_scan_config_that_disappears_is_named(tmp_path: Path) -> None:
    cfg = serve_config(tmp_path)
    assert cfg.scan_config is not None
    store.resolve_config(cfg, None)
    cfg.scan_config.unlink()
    with pytest.raises(InputError, match="no such file"):
        store.resolve_config(cfg, None)
