// The scan list (GET /): one row per scan, newest first, filterable by state, redrawn while scans run.
"use strict";

(() => {
  const PAGE = 50;          // scans per page read from the API
  const FAST_MS = 2000;     // redraw interval while a scan on the page is queued or running
  const SLOW_MS = 5000;     // otherwise: new submissions still show up within seconds
  const { el, clear } = Sky;

  const params = new URLSearchParams(location.search);
  let state = Sky.STATES.includes(params.get("state")) ? params.get("state") : "";
  let older = [];           // rows loaded with "Show more" (not redrawn: they are older scans)
  let olderCursor = null;
  let firstCursor = null;

  function buildFilters() {
    const nav = clear(document.getElementById("filters"));
    for (const s of ["", ...Sky.STATES]) {
      const button = el("button", { type: "button", class: "chip" + (s === state ? " active" : ""),
                                    "data-state": s || "all", "aria-pressed": s === state ? "true" : "false" },
                        s || "all");
      button.addEventListener("click", () => {
        state = s;
        const url = new URL(location.href);
        if (s) url.searchParams.set("state", s); else url.searchParams.delete("state");
        history.replaceState(history.state, "", url.pathname + url.search);
        older = []; olderCursor = null;
        buildFilters();
        refresh();
      });
      nav.append(button);
    }
  }

  function row(scan) {
    const id = String(scan.scan_id);
    const href = Sky.pageUrl("scans/" + encodeURIComponent(id));
    const label = typeof scan.label === "string" && scan.label ? el("span", { class: "label" }, scan.label) : null;
    const tr = el("tr", { "data-scan-id": id, "data-state": scan.state },
      el("td", { class: "alert" }, el("a", { href }, scan.alert || id), label),
      el("td", {}, scan.stream || "–"),
      el("td", { class: "num" + (scan.priority >= 100 ? " realtime" : "") }, scan.priority ?? "–"),
      el("td", { class: "state-col", title: scan.last_error && scan.state !== "done" ? scan.last_error : null },
         Sky.progressCell(scan)),
      el("td", { class: "num" }, Sky.fmtRaDec(scan.best_fit)),
      el("td", { class: "num" }, Sky.fmtArea(scan.area_90_deg2)),
      el("td", { class: "num" }, Sky.fmtDuration(scan.wall_seconds)),
      el("td", { class: "small" }, Sky.fmtTime(scan.created), scan.submitted_by ?
        el("span", { class: "muted" }, " · " + scan.submitted_by) : null));
    return tr;
  }

  function query(cursor) {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (state) q.set("state", state);
    if (cursor) q.set("cursor", cursor);
    return "scans?" + q.toString();
  }

  function draw(scans) {
    const body = clear(document.getElementById("rows"));
    for (const scan of scans) body.append(row(scan));
    document.getElementById("empty").hidden = scans.length > 0;
    document.getElementById("more").hidden = !(olderCursor || (older.length === 0 && firstCursor));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function tick() {
    Sky.showHealth();
    let page;
    try {
      page = await Sky.getJson(query(null));
    } catch (err) {
      if (err.status === 401 || err.status === 403) { Sky.showAuth(err, () => refresh()); Sky.showError(""); return SLOW_MS; }
      Sky.showError(err.message);
      return SLOW_MS;
    }
    Sky.showError("");
    const scans = Array.isArray(page.scans) ? page.scans : [];
    firstCursor = page.next_cursor || null;
    const seen = new Set(scans.map(s => String(s.scan_id)));
    draw(scans.concat(older.filter(s => !seen.has(String(s.scan_id)))));
    return scans.some(s => Sky.ACTIVE.has(s.state)) ? FAST_MS : SLOW_MS;
  }

  document.getElementById("more").addEventListener("click", async () => {
    const cursor = olderCursor || firstCursor;
    if (!cursor) return;
    try {
      const page = await Sky.getJson(query(cursor));
      older = older.concat(Array.isArray(page.scans) ? page.scans : []);
      olderCursor = page.next_cursor || null;
      if (!olderCursor) firstCursor = null;
      refresh();
    } catch (err) { Sky.showError(err.message); }
  });

  buildFilters();
  const refresh = Sky.loop(tick);
})();
