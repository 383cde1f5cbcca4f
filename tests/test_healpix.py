"""Our NESTED pixel centres agree with healpy's."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest

from skyscan.reco.healpix import nest_to_ang, nside_to_npix


@pytest.mark.parametrize("nside", [1, 2, 8, 64, 512, 8192])
def test_nest_to_ang_matches_healpy(nside: int) -> None:
    npix = nside_to_npix(nside)
    assert npix == hp.nside2npix(nside)
    rng = np.random.default_rng(nside)
    ipix = np.arange(npix) if npix <= 50_000 else rng.integers(0, npix, 50_000)
    theta, phi = nest_to_ang(nside, ipix)
    theta_ref, phi_ref = hp.pix2ang(nside, ipix, nest=True)
    np.testing.assert_allclose(theta, theta_ref, atol=1e-12)
    dphi = np.angle(np.exp(1j * (phi - phi_ref)))
    assert np.max(np.abs(dphi * np.sin(theta_ref))) < 1e-12
