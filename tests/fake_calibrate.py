"""A stand-in for `skyscan calibrate` and `skyscan merge --containment` in the service's calibration tests.

  fake_calibrate.py calibrate OUTDIR -o CALDIR --n N ...    writes CALDIR/calibration.json (skyscan-calibration/1,
                                                            levels 2.0 / 6.0); fails (exit 3) for an OUTDIR whose
                                                            name contains "-evt2-"
  fake_calibrate.py merge OUTDIR --containment FILE         re-contours OUTDIR/summary.json with FILE's levels and
                                                            records the calibration as `skyscan merge` does
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def calibrate(outdir: Path, caldir: Path, n: int) -> int:
    if "-evt2-" in outdir.name:
        print("injected calibration failure", file=sys.stderr)
        return 3
    summary = json.loads((outdir / "summary.json").read_text(encoding="utf-8"))
    caldir.mkdir(parents=True, exist_ok=True)
    _write_json(caldir / "calibration.json", {
        "schema": "skyscan-calibration/1", "levels": {"50": 2.0, "90": 6.0}, "n": n,
        "source": {"run_id": summary["run_id"], "event_id": summary["event_id"]},
    })
    return 0


def merge(outdir: Path, calibration: Path) -> int:
    doc = json.loads(calibration.read_text(encoding="utf-8"))
    sha = hashlib.sha256(calibration.read_bytes()).hexdigest()
    summary = json.loads((outdir / "summary.json").read_text(encoding="utf-8"))
    containment = summary["containment"]
    containment["method"] = f"resimulation (calibration.json, N={doc['n']}, sha256 {sha[:12]})"
    containment["calibration"] = {"kind": "resimulation", "schema": "skyscan-calibration/1",
                                  "file": calibration.name, "sha256": sha, "n": doc["n"], "levels": doc["levels"]}
    for label in ("50", "90"):
        containment[label]["level_2dllh"] = doc["levels"][label]
    _write_json(outdir / "summary.json", summary)
    return 0


def main(argv: list[str]) -> int:
    mode, outdir = argv[0], Path(argv[1])
    if mode == "calibrate":
        return calibrate(outdir, Path(argv[argv.index("-o") + 1]), int(argv[argv.index("--n") + 1]))
    return merge(outdir, Path(argv[argv.index("--containment") + 1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
