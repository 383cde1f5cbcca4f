"""Scan configuration and site profiles: defaults, merging, and one key-path error per bad value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from skyscan.errors import InputError
from skyscan.settings.scan import default_mapping, flag_overrides, load_config, merge_mappings, parse_config
from skyscan.settings.site import load_site, parse_site, site_names


def with_change(path: str, value: Any) -> dict[str, Any]:
    """The default mapping with one dotted path (list indices as numbers) set to ``value``."""
    doc: dict[str, Any] = default_mapping()
    keys = path.split(".")
    node: Any = doc
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_defaults_follow_the_skymap_scanner_progression() -> None:
    cfg = load_config()
    assert [s.nside for s in cfg.stages] == [8, 64, 512]
    assert [s.refine for s in cfg.stages] == [None, 12, 24]
    assert cfg.rule == "fixed"
    assert cfg.retries == 3 and cfg.maxjobs == {"scan": 100}
    assert cfg.containment["90"] == pytest.approx(4.61, abs=0.01)
    assert set(cfg.jobs) == {"prepare", "scan", "merge", "final"}
    # compiled_kernel: the scan's default (skyscan.settings.scan.COMPILED_KERNEL_DEFAULT), written into config.yaml
    assert cfg.reco == {"noise_rate_hz": 500.0, "jitter_ns": 3.0, "use_hit_no_hit": True, "use_mpe": True,
                        "max_iterations": 200, "compiled_kernel": True}
    assert load_config(overrides={"reco": {"compiled_kernel": False}}).reco["compiled_kernel"] is False


BAD = [
    ("scan.stages.1.nside", 100, "scan.stages[1].nside", "power of two"),
    ("scan.stages.0.nside", 0, "scan.stages[0].nside", "power of two"),
    ("scan.stages.2.nside", 2**30, "scan.stages[2].nside", "power of two"),
    ("scan.stages.1.nside", 4, "scan.stages[1].nside", "ascend"),
    ("scan.stages.2.nside", 64, "scan.stages[2].nside", "ascend"),
    ("scan.stages.1.nside", "64", "scan.stages[1].nside", "integer"),
    ("scan.stages.1.pixels_per_job", 0, "scan.stages[1].pixels_per_job", ">= 1"),
    ("scan.stages.1.pixels_per_job", True, "scan.stages[1].pixels_per_job", "integer"),
    ("scan.stages.1.refine", 769, "scan.stages[1].refine", "768"),
    ("scan.stages.1.refine", 0, "scan.stages[1].refine", ">= 1"),
    ("scan.stages.0.refine", 3, "scan.stages[0].refine", "whole sky"),
    ("scan.stages.1.colour", "red", "scan.stages[1].colour", "unknown key"),
    ("scan.stages", [], "scan.stages", "non-empty"),
    ("scan.rule", "greedy", "scan.rule", "fixed, adaptive"),
    ("scan.speed", 3, "scan.speed", "unknown key"),
    ("scan.adaptive.level", "95", "scan.adaptive.level", "not a containment level"),
    ("scan.adaptive.margin", -1.0, "scan.adaptive.margin", ">= 0"),
    ("scan.adaptive.max_refine", 0, "scan.adaptive.max_refine", ">= 1"),
    ("scan.adaptive.extra", 1, "scan.adaptive.extra", "unknown key"),
    ("containment", "wilkes", "containment", "wilks"),
    ("dag.retries", -1, "dag.retries", ">= 0"),
    ("dag.maxjobs.merge", 3, "dag.maxjobs.merge", "unknown key"),
    ("dag.maxjobs.scan", 2.5, "dag.maxjobs.scan", "integer"),
    ("jobs.scan.request_memory_mb", 0, "jobs.scan.request_memory_mb", ">= 1"),
    ("jobs.scan.gpus", 1, "jobs.scan.gpus", "unknown key"),
    ("jobs.plot", {}, "jobs.plot", "unknown key"),
    ("reco.jitter_ns", -3.0, "reco.jitter_ns", "positive"),
    ("reco.colour", 1, "reco.colour", "unknown"),
    ("plots", True, "plots", "unknown key"),
    ("merge.flat_nside", 100, "merge.flat_nside", "power of two"),
    ("merge.colour", "red", "merge.colour", "unknown"),
]


@pytest.mark.parametrize(("path", "value", "where", "words"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_every_bad_value_names_its_key_path(path: str, value: Any, where: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_config(with_change(path, value))
    message = str(err.value)
    assert message.startswith(where + ":"), message
    assert words in message
    assert "\n" not in message


def test_fixed_rule_needs_refine_but_adaptive_does_not() -> None:
    doc = default_mapping()
    del doc["scan"]["stages"][2]["refine"]
    with pytest.raises(InputError, match=r"scan\.stages\[2\]\.refine: missing"):
        parse_config(doc)
    doc["scan"]["rule"] = "adaptive"
    assert parse_config(doc).stages[2].refine is None


def test_merge_replaces_lists_and_merges_mappings() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 4}
    merged = merge_mappings(base, {"a": {"c": [9]}, "e": 5})
    assert merged == {"a": {"b": 1, "c": [9]}, "d": 4, "e": 5}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 4}  # not modified


def test_config_file_is_merged_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("scan:\n  stages:\n    - {nside: 4, pixels_per_job: 10}\n    - {nside: 16, refine: 3}\n"
                    "dag: {maxjobs: {scan: 7}}\n", encoding="utf-8")
    cfg = load_config(path)
    assert [(s.nside, s.pixels_per_job, s.refine) for s in cfg.stages] == [(4, 10, None), (16, 64, 3)]
    assert cfg.maxjobs == {"scan": 7}
    assert cfg.retries == 3  # untouched default
    assert cfg.doc["reco"]["jitter_ns"] == 3.0


def test_config_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("scan:\n  stages:\n    - {nside: 8}\n    - {nside: 6, refine: 2}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"mine\.yaml: scan\.stages\[1\]\.nside: .*power of two"):
        load_config(path)
    path.write_text("scan: [1, 2\n", encoding="utf-8")
    with pytest.raises(InputError, match="invalid YAML"):
        load_config(path)
    path.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(InputError, match="mapping at the top level"):
        load_config(path)
    with pytest.raises(InputError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_flags_override_file_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("dag: {retries: 1}\n", encoding="utf-8")
    cfg = load_config(path, flag_overrides(rule="adaptive", maxjobs=5, retries=0))
    assert (cfg.rule, cfg.maxjobs, cfg.retries) == ("adaptive", {"scan": 5}, 0)
    with pytest.raises(InputError, match=r"dag\.maxjobs\.scan: must be >= 0"):
        load_config(None, flag_overrides(maxjobs=-2))


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, flag_overrides(rule="adaptive"))
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    again = load_config(path)
    assert again.doc == cfg.doc
    assert again.to_yaml() == cfg.to_yaml()
    assert yaml.safe_load(cfg.to_yaml())["scan"]["rule"] == "adaptive"


def test_containment_mapping_and_adaptive_level() -> None:
    doc = with_change("containment", {"50": 22.2, "90": 64.2})
    cfg = parse_config(doc)
    assert cfg.threshold("90") == 64.2
    doc = with_change("containment", {"68": 2.3})
    with pytest.raises(InputError, match=r"scan\.adaptive\.level: '90' is not a containment level"):
        parse_config(doc)


# --- site profiles ---------------------------------------------------------------------------------------------
def test_shipped_site_profiles_load() -> None:
    assert {"local", "osg"} <= set(site_names())
    local = load_site("local")
    assert local.shared_filesystem and local.universe == "vanilla" and local.job_python == "current"
    osg = load_site("osg")
    assert not osg.shared_filesystem and osg.universe_of("scan") == "container" and osg.container_image
    assert all(osg.universe_of(k) == "local" for k in ("prepare", "merge", "final"))
    assert osg.resources_of("scan", load_config()).request_disk_mb == 2048
    assert osg.resources_of("scan", load_config()).request_memory_mb == load_config().jobs["scan"].request_memory_mb


def test_unknown_site_name_lists_the_shipped_ones() -> None:
    with pytest.raises(InputError, match=r"no site profile 'mars'.*local.*osg"):
        load_site("mars")


def _site(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"description": "t", "shared_filesystem": True, "universe": "vanilla"}
    doc.update(changes)
    return doc


BAD_SITES = [
    (_site(colour=1), "colour", "unknown key"),
    ({"universe": "vanilla"}, "shared_filesystem", "missing"),
    (_site(universe="grid"), "universe", "vanilla, container, local"),
    (_site(universe="container"), "universe", "container_image"),
    (_site(shared_filesystem=False), "kinds.prepare.universe", "local universe"),
    (_site(container_image="x.sif"), "container_image", "no node kind"),
    (_site(container_image="a.sif", singularity_image="b.sif"), "singularity_image", "not both"),
    (_site(requirements="(Memory > 5"), "requirements", "ClassAd"),
    (_site(periodic_release="&&"), "periodic_release", "ClassAd"),
    (_site(environment={"1BAD": "x"}), "environment.1BAD", "variable name"),
    (_site(environment={"SKYSCAN_PYTHON": "x"}), "environment.SKYSCAN_PYTHON", "job_python"),
    (_site(extra={"queue": "3"}), "extra.queue", "writes this command"),
    (_site(extra={"bad key": "3"}), "extra.bad key", "submit command"),
    (_site(kinds={"scan": {"gpus": 1}}), "kinds.scan.gpus", "unknown key"),
    (_site(kinds={"plot": {}}), "kinds.plot", "unknown key"),
    (_site(kinds={"scan": {"request_memory_mb": -5}}), "kinds.scan.request_memory_mb", ">= 1"),
    (_site(on_exit_hold_subcode="x"), "on_exit_hold_subcode", "integer"),
]


@pytest.mark.parametrize(("doc", "where", "words"), BAD_SITES, ids=[b[1] for b in BAD_SITES])
def test_bad_site_profiles_name_the_key(doc: dict[str, Any], where: str, words: str) -> None:
    with pytest.raises(InputError) as err:
        parse_site(doc, "t")
    assert str(err.value).startswith(where + ":"), str(err.value)
    assert words in str(err.value)


def test_site_profile_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mysite.yaml"
    path.write_text("shared_filesystem: true\nuniverse: docker\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"mysite\.yaml: universe: must be one of"):
        load_site(str(path))
    path.write_text("shared_filesystem: true\nuniverse: vanilla\n", encoding="utf-8")
    assert load_site(str(path)).name == "mysite"
