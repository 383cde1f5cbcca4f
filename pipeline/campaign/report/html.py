"""report.html: one offline page (no external resources) with the figures of merit, figures and every event.

Images and catalog files are referenced by paths relative to the report folder, so the folder can be copied or
published as a whole.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from skyscan.campaign.manifest import Manifest
from skyscan.campaign.report.rows import LABELS
from skyscan.campaign.report.stats import CI_LEVEL, Fraction, Stats
from skyscan.timestamps import utcnow

_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}td.l{text-align:left}"
    "img{max-width:48%;margin:4px}.bad{color:#a00}"
)


def _f(value: Any, fmt: str = ".3g") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _fraction_text(f: Fraction) -> str:
    if not f.n:
        return "- (no reference)"
    return f"{f.value:.3f} ({f.k}/{f.n}; {CI_LEVEL:.0%} interval {f.lo:.3f}-{f.hi:.3f})"


def report_html(title: str, manifest: Manifest, stats: Stats, rows: Sequence[Mapping[str, Any]],
                figures: Mapping[str, str], files: Mapping[str, str]) -> str:  # fmt: skip
    """The offline HTML page: images and catalogs referenced by relative path, no external resources."""
    e = html.escape
    c = stats.counts
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head><body>',
        f"<h1>{e(title)}</h1>",
        f"<p>Generated {e(utcnow())} by skyscan {e(str(manifest.doc.get('software', {}).get('version', '?')))}; "
        f"configuration sha256 {e(str(manifest.doc.get('config', {}).get('sha256', '?'))[:16])}&hellip;; "
        f"catalog: " + ", ".join(f'<a href="{e(v)}">{e(k)}</a>' for k, v in files.items()) + ".</p>",
        "<h2>Summary</h2><table>",
        f"<tr><th>events</th><td>{c.get('events', 0)}</td></tr>",
    ]
    for state in ("done", "failed", "interrupted", "running", "waiting", "rejected"):
        if c.get(state):
            parts.append(f"<tr><th>{state}</th><td>{c[state]}</td></tr>")
    parts += [
        f"<tr><th>median 90% area</th><td>{_f(stats.area90_median)} deg²</td></tr>",
        f"<tr><th>median wall time</th><td>{_f(stats.wall_median, '.1f')} s</td></tr>",
    ]
    n_ref = sum(stats.ref_sources.values())
    if n_ref:
        src = ", ".join(f"{k}: {v}" for k, v in sorted(stats.ref_sources.items()))
        parts += [
            f"<tr><th>events with a reference</th><td>{n_ref} ({e(src)})</td></tr>",
            f"<tr><th>median angular error</th><td>{_f(stats.error_median)} deg</td></tr>",
            f"<tr><th>68% quantile of the angular error</th><td>{_f(stats.error_q68)} deg</td></tr>",
            f"<tr><th>coverage of the 50% regions</th><td>{e(_fraction_text(stats.coverage['50']))}</td></tr>",
            f"<tr><th>coverage of the 90% regions</th><td>{e(_fraction_text(stats.coverage['90']))}</td></tr>",
        ]
        cal = stats.calibrated
        if cal is not None:
            for label in ("50", "90"):
                if label in cal.coverage:
                    parts.append(f"<tr><th>coverage with the calibrated {label}% levels ({e(cal.observable)} "
                                 f"table)</th><td>{e(_fraction_text(cal.coverage[label]))}</td></tr>")  # fmt: skip
    else:
        parts.append("<tr><th>references</th><td>none (no simulation truth, no --reference file)</td></tr>")
    parts.append("</table>")
    if figures:
        parts.append("<h2>Figures</h2><p>")
        for key, rel in figures.items():
            parts.append(f'<img src="{e(rel)}" alt="{e(key)}">')
        parts.append("</p>")
    if stats.curve and stats.curve[0][2].n:
        parts.append("<h2>Coverage against nominal level</h2><table><tr><th>nominal</th><th>2&Delta;LLH</th>"
                     "<th>inside</th><th>fraction</th><th>interval</th></tr>")  # fmt: skip
        for p, level, f in stats.curve:
            parts.append(
                f"<tr><td>{p:.0%}</td><td>{level:.3f}</td><td>{f.k}/{f.n}</td><td>{_f(f.value, '.3f')}</td>"
                f"<td>{_f(f.lo, '.3f')}-{_f(f.hi, '.3f')}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>Events</h2><table><tr><th>event</th><th>state</th><th>RA</th><th>Dec</th><th>90% area</th><th>error</th>"
        "<th>in 50%</th><th>in 90%</th><th>pixels</th><th>wall (s)</th><th>note</th></tr>"
    )
    for r in rows:
        cls = ' class="l bad"' if r["state"] not in ("done",) else ' class="l"'
        flags = ["-" if r[f"ref_in{lab}"] is None else "yes" if r[f"ref_in{lab}"] else "no" for lab in LABELS]
        parts.append(
            f'<tr><td class="l">{e(str(r["name"]))}</td><td{cls}>{e(str(r["state"]))}</td>'
            f'<td>{_f(r["ra_deg"], ".2f")}</td><td>{_f(r["dec_deg"], ".2f")}</td>'
            f'<td>{_f(r["area_90_deg2"])}</td><td>{_f(r["ang_error_deg"])}</td>'
            f"<td>{flags[0]}</td><td>{flags[1]}</td><td>{_f(r['pixels_scanned'], 'd')}</td>"
            f'<td>{_f(r["wall_seconds"], ".1f")}</td><td class="l">{e(str(r["note"] or ""))}</td></tr>'
        )
    parts.append("</table></body></html>")
    return "\n".join(parts) + "\n"


__all__ = ["report_html"]
