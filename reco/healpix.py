"""Centres of HEALPix NESTED pixels without importing healpy.

healpy pulls in matplotlib at import, which costs a scan node more time than fitting a dozen
pixels. The scan node only needs pixel centres, computed here from the NESTED index following
Górski et al. 2005 (ApJ 622, 759): split the index into base face and the (x, y) position
inside the face, find the ring and the position along it, and convert to (theta, phi).
Tests compare it with healpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_FACE_RING = np.array([2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4], dtype=np.int64)
_FACE_PHI = np.array([1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7], dtype=np.int64)


def nside_to_npix(nside: int) -> int:
    return 12 * nside * nside


def _compact_bits(v: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Keep the even bits of v, packed together (undo bit interleaving)."""
    x = v & 0x5555555555555555
    x = (x | (x >> 1)) & 0x3333333333333333
    x = (x | (x >> 2)) & 0x0F0F0F0F0F0F0F0F
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FF
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFF
    x = (x | (x >> 16)) & 0x00000000FFFFFFFF
    return x


def nest_to_ang(nside: int, ipix: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(theta, phi) in radians of the centres of NESTED pixels."""
    p = np.asarray(ipix, dtype=np.int64)
    n = np.int64(nside)
    face = p // (n * n)
    inface = p % (n * n)
    ix = _compact_bits(inface)
    iy = _compact_bits(inface >> 1)
    ring = _FACE_RING[face] * n - ix - iy - 1  # 1 .. 4n-1 from the north pole
    north = ring < n
    south = ring > 3 * n
    nr = np.where(north, ring, np.where(south, 4 * n - ring, n))
    fn = float(nside)
    z = np.where(
        north,
        1.0 - nr.astype(np.float64) ** 2 / (3.0 * fn * fn),
        np.where(south, nr.astype(np.float64) ** 2 / (3.0 * fn * fn) - 1.0, (2.0 * fn - ring) * 2.0 / (3.0 * fn)),
    )
    kshift = np.where(north | south, 0, (ring - n) & 1)
    jp = (_FACE_PHI[face] * nr + ix - iy + 1 + kshift) // 2
    jp = np.where(jp > 4 * n, jp - 4 * n, jp)
    jp = np.where(jp < 1, jp + 4 * n, jp)
    phi = (jp - (kshift + 1) * 0.5) * (np.pi / 2.0 / nr)
    theta = np.arccos(np.clip(z, -1.0, 1.0))
    return np.asarray(theta, dtype=np.float64), np.asarray(phi, dtype=np.float64)
