"""What makes a fresh merge fast without changing its products: no needless imports, plots drawn by a process
started before the map exists, the island count without scipy."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skyscan.errors import InputError
from skyscan.nodes import merge as merge_node
from skyscan.nodes.synthetic import write_synthetic_scan
from skyscan.products import write
from skyscan.products.containment import connected_components

FIXED_NOW = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)


def _fresh(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; its stdout lines."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_connected_components_agree_with_scipy() -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    rng = np.random.default_rng(7)
    for _ in range(400):
        n = int(rng.integers(1, 80))
        e = int(rng.integers(0, 3 * n))
        a, b = rng.integers(0, n, e).astype(np.int64), rng.integers(0, n, e).astype(np.int64)
        graph = coo_matrix((np.ones(e, dtype=np.int8), (a, b)), shape=(n, n)).tocsr()
        assert connected_components(n, a, b) == scipy_components(graph, directed=False)[0]
    chain = np.arange(2999, dtype=np.int64)[::-1].copy()  # a long path numbered against the propagation
    assert connected_components(3000, chain, chain + 1) == 1
    assert connected_components(5, np.array([0, 3], dtype=np.int64), np.array([1, 4], dtype=np.int64)) == 3


def test_the_command_line_and_the_merge_module_import_little() -> None:
    heavy = ["matplotlib", "healpy", "astropy", "h5py", "scipy", "skyscan.cli.reco", "skyscan.cli.watch"]
    loaded = _fresh(
        "import sys, skyscan.cli, skyscan.nodes.merge\n"
        f"print(*[m for m in {heavy!r} if m in sys.modules])"
    )
    assert loaded == []


def test_every_command_is_still_listed_and_found() -> None:
    from click.testing import CliRunner

    from skyscan.cli import cli

    names = set(cli.commands)
    assert {"simulate", "run", "submit", "merge", "campaign", "watch", "serve", "node", "geometry"} <= names
    node = cli.commands["node"]
    assert {"scan", "prepare", "plan", "merge", "final"} <= set(getattr(node, "commands", {}))
    result = CliRunner().invoke(cli, ["merge", "--help"])
    assert result.exit_code == 0 and "skyscan merge scan/" in result.output
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2


def test_healpy_for_the_products_leaves_matplotlib_out_and_importable() -> None:
    out = _fresh(
        "import sys\n"
        "from skyscan.products.healpix import healpy\n"
        "hp = healpy()\n"
        "print('mpl-before' if 'matplotlib' in sys.modules else 'no-mpl')\n"
        "print(int(hp.ang2pix(8, 1.0, 2.0, nest=True)))\n"
        "import matplotlib\n"
        "print('mpl-ok' if matplotlib.__version__ else 'mpl-bad')\n"
        "print('same' if healpy() is hp else 'other')\n"
    )
    import healpy as hp

    assert out == ["no-mpl", str(int(hp.ang2pix(8, 1.0, 2.0, nest=True))), "mpl-ok", "same"]


def test_a_fresh_merge_draws_its_plots_without_matplotlib_in_the_merging_process(tmp_path: Path) -> None:
    if not write.PLOTS_IN_CHILD:
        pytest.skip("no fork on this platform: the plots are drawn in the merging process")
    scan = tmp_path / "scan"
    write_synthetic_scan(scan)
    out = _fresh(
        "import sys\n"
        "from skyscan.nodes.merge import merge_scan\n"
        f"r = merge_scan({str(scan)!r})\n"
        "print('matplotlib' in sys.modules, sorted(k for k in r.products if k.startswith('plot')))\n"
    )
    assert out == ["False", "['plot_fullsky',", "'plot_zoom']"]
    assert (scan / "plots" / "skymap-fullsky.png").stat().st_size > 10000


@pytest.mark.parametrize("centre", [(77.36, 5.69), (200.0, 87.5)])  # an ordinary zoom, and a polar one
def test_plots_of_the_early_drawing_process_are_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, centre: tuple[float, float]
) -> None:
    if not write.PLOTS_IN_CHILD:
        pytest.skip("no fork on this platform")
    monkeypatch.setattr(merge_node, "_now", lambda: FIXED_NOW)
    files = {}
    for how, in_child in (("child", True), ("here", False)):
        scan = tmp_path / how
        write_synthetic_scan(scan, centre_radec=centre, sigma_deg=2.0)
        monkeypatch.setattr(write, "PLOTS_IN_CHILD", in_child)
        monkeypatch.setattr(merge_node, "PLOTS_IN_CHILD", in_child)
        files[how] = merge_node.merge_scan(scan).products
    assert list(files["child"]) == list(files["here"])
    for key, path in files["child"].items():
        if not key.endswith("_fits"):  # the FITS checksum cards carry the time they were written
            assert path.read_bytes() == files["here"][key].read_bytes(), key


def test_a_merge_that_fails_stops_its_drawing_process(tmp_path: Path) -> None:
    if not write.PLOTS_IN_CHILD:
        pytest.skip("no fork on this platform")
    scan = tmp_path / "scan"
    write_synthetic_scan(scan)
    victim = sorted(scan.glob("stage1/scan-s1-*.h5"))[0]
    victim.unlink()
    with pytest.raises(InputError, match="missing result file"):
        merge_node.merge_scan(scan)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind, running or unreaped
    assert not (scan / "plots").exists() or not any((scan / "plots").iterdir())
    assert not (scan / "summary.json").exists()


def test_the_resolve_settings_are_read_once_per_configuration_text() -> None:
    from skyscan.products import credible

    text = "scan:\n  resolve: {min_pixels: 7, max_nside: 2048}\n"
    credible._resolve_section.cache_clear()
    assert credible.resolve_min_pixels(text) == 7 and credible.resolve_max_nside(text) == 2048
    assert credible.resolve_min_pixels(text) == 7
    info = credible._resolve_section.cache_info()
    assert info.misses == 1 and info.hits == 2
    assert credible.resolve_min_pixels("") == credible.RESOLVE_MIN_PIXELS
    assert credible.resolve_min_pixels("scan: [1, 2") == credible.RESOLVE_MIN_PIXELS  # invalid YAML
    assert json.loads(json.dumps(credible.resolve_max_nside("scan: {resolve: {max_nside: true}}"))) == (
        credible.RESOLVE_MAX_NSIDE
    )
