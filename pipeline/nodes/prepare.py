"""The prepare node (``skyscan node prepare``): validate the event, record a first guess, write stage 0's batches.

It runs first in every scan graph, inside the scan directory. Stage 0 covers the whole sky, so its batch files are
known from the configuration alone; the first guess (prepare.json) is a line fit, for the record and for people.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from skyscan.atomic import write_json
from skyscan.errors import InputError
from skyscan.graph.build import scan_config
from skyscan.graph.event import load_event
from skyscan.graph.layout import ScanLayout
from skyscan.graph.refine import all_pixels, split_batches
from skyscan.nodes.results import write_stage_batches

PREPARE_SCHEMA = "skyscan-prepare/1"


def prepare_scan(event_path: str | os.PathLike[str], outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """`skyscan node prepare`: validate the event, first guess (prepare.json), stage-0 batch files."""
    from skyscan import iers_cache
    from skyscan.reco.coords import local_to_equatorial
    from skyscan.reco.linefit import first_guess
    from skyscan.version import __version__

    iers_cache.install()

    folder = Path(outdir)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such scan directory")
    ef, geometry = load_event(event_path)
    config = scan_config(folder)
    guess = first_guess(ef.event, geometry)
    ra, dec = local_to_equatorial(np.radians(guess.zenith_deg), np.radians(guess.azimuth_deg), ef.event.time)
    first = config.stages[0]
    batches = split_batches(all_pixels(first.nside), first.pixels_per_job)
    write_stage_batches(folder, 0, batches)
    doc = {
        "schema": PREPARE_SCHEMA,
        "run_id": ef.event.run_id,
        "event_id": ef.event.event_id,
        "time": ef.event.time_iso,
        "first_guess": {
            "zenith_deg": round(float(guess.zenith_deg), 6),
            "azimuth_deg": round(float(guess.azimuth_deg), 6),
            "ra_deg": round(float(np.degrees(ra)) % 360.0, 6),
            "dec_deg": round(float(np.degrees(dec)), 6),
        },
        "stage0": {"nside": first.nside, "npix": int(12 * first.nside**2), "batches": len(batches)},
        "software_version": __version__,
    }
    write_json(ScanLayout(folder).prepare_record, doc)
    return doc
