"""`--containment` (and `containment:` in a config) is checked by run, submit and campaign create before anything is scanned; its help says which levels the numbers are."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skyscan.cli import cli
from skyscan.errors import InputError
from skyscan.products.levels import check_product_levels


@pytest.mark.parametrize("spec", ["90", "1,2,3", "nonsense", {"68": 2.3, "95": 5.9}])
def test_levels_the_merge_cannot_use_are_refused(spec: object) -> None:
    with pytest.raises(InputError, match="containment"):
        check_product_levels(spec)  # type: ignore[arg-type]


def test_levels_the_merge_can_use() -> None:
    assert check_product_levels("calibrated") == ("calibrated", {"50": 22.2, "90": 64.2})
    assert check_product_levels("4.61,1.39") == ("explicit", {"50": 1.39, "90": 4.61})


def test_run_refuses_bad_containment_before_scanning(tmp_path: Path) -> None:
    runner = CliRunner()
    event = tmp_path / "event.json"
    assert runner.invoke(cli, ["example", "-o", str(event)]).exit_code == 0
    out = tmp_path / "scan"
    result = runner.invoke(cli, ["run", str(event), "-o", str(out), "--containment", "90"])
    assert result.exit_code == 2
    assert "50% and 90%" in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing written: the same directory can be run with good levels


def test_run_help_names_the_levels_of_its_example() -> None:
    text = " ".join(CliRunner().invoke(cli, ["run", "--help"]).output.split())
    assert "1.39,4.61 (Wilks' 50%/90%; 2.3,5.9 would be the 68%/95% levels)" in text


@pytest.mark.parametrize("command", [["submit", "--site", "local", "--dry-run"], ["campaign", "create"]])
def test_submit_and_campaign_create_refuse_bad_containment_before_writing(tmp_path: Path, command: list[str]) -> None:
    runner = CliRunner()
    event = tmp_path / "event.json"
    assert runner.invoke(cli, ["example", "-o", str(event)]).exit_code == 0
    out = tmp_path / "out"
    config = tmp_path / "levels.yaml"
    config.write_text("containment: '90'\n", encoding="utf-8")
    result = runner.invoke(cli, [*command, str(event), "-o", str(out), "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "containment" in result.output and "Traceback" not in result.output
    assert not out.exists()
