// One scan (GET /scans/{id}): state and progress, result, plots, circular draft, notice, downloads.
"use strict";

(() => {
  const FAST_MS = 1500;     // redraw interval while the scan is received, queued or running
  const IDLE_MS = 30000;    // after it ended: only a rescan or replacement changes it
  const { el, clear } = Sky;

  const match = /\/scans\/([^/]+)\/?$/.exec(location.pathname);
  const scanId = match ? decodeURIComponent(match[1]) : "";
  const scanPath = "scans/" + encodeURIComponent(scanId);
  let productsFor = null;   // state for which the products were last drawn
  let objectUrls = [];
  let summary = null;       // summary.json of a done scan (GET .../result), read once

  function kv(dl, rows) {
    clear(dl);
    for (const [key, value] of rows) {
      if (value === null || value === undefined || value === "") continue;
      dl.append(el("dt", {}, key), el("dd", {}, value instanceof Node ? value : String(value)));
    }
  }

  function pageLink(id) {
    return el("a", { href: Sky.pageUrl("scans/" + encodeURIComponent(String(id))) }, String(id));
  }

  function classifierText(c) {
    if (!c || typeof c !== "object") return null;
    const parts = Object.entries(c).map(([k, v]) => k + "=" + String(v));
    return parts.length ? parts.join(", ") : null;
  }

  function drawScan(scan) {
    document.title = "skyscan · " + (scan.alert || scanId);
    document.getElementById("title").textContent = scan.alert || scanId;
    const state = document.getElementById("state");
    state.replaceWith(Object.assign(Sky.stateBadge(scan.state), { id: "state" }));

    const { fraction, text } = Sky.progressOf(scan);
    const bar = document.getElementById("bar");
    bar.value = fraction;
    bar.className = "bar bar-" + (Sky.STATES.includes(scan.state) ? scan.state : "unknown");
    let barText = Math.floor(fraction * 100) + "%";
    if (Sky.ACTIVE.has(scan.state) && text !== scan.state) barText += " · " + text;
    if (Sky.ACTIVE.has(scan.state) && Sky.isNum(scan.eta_seconds)) barText += " · about " + Sky.fmtDuration(scan.eta_seconds) + " left";
    document.getElementById("bar-text").textContent = barText;
    const stages = clear(document.getElementById("stages"));
    for (const p of Array.isArray(scan.progress) ? scan.progress : []) {
      if (!p || typeof p !== "object") continue;
      stages.append(el("li", {}, "stage " + p.stage + " · nside " + p.nside + " · " + p.done + " / " + p.total + " pixels"));
    }

    drawResult(scan);
    kv(document.getElementById("details"), [
      ["scan id", String(scan.scan_id)],
      ["run, event", Sky.isNum(scan.run_id) ? scan.run_id + ", " + scan.event_id : null],
      ["event time", scan.event_time ? Sky.fmtTime(scan.event_time, true) : null],
      ["stream", scan.stream],
      ["revision", scan.revision],
      ["priority", scan.priority],
      ["label", scan.label],
      ["classifiers", classifierText(scan.classifiers)],
      ["config digest", scan.config_digest],
      ["backend", scan.backend],
      ["attempts", scan.attempts],
      ["submitted by", scan.submitted_by],
      ["aborted by", scan.aborted_by],
      ["created", Sky.fmtTime(scan.created)],
      ["queued", scan.queued ? Sky.fmtTime(scan.queued) : null],
      ["started", scan.started ? Sky.fmtTime(scan.started) : null],
      ["finished", scan.finished ? Sky.fmtTime(scan.finished) : null],
    ]);
    const lastError = document.getElementById("last-error");
    lastError.textContent = scan.last_error && scan.state !== "done" ? "last error: " + scan.last_error : "";
    lastError.hidden = !lastError.textContent;

    const replaced = document.getElementById("replaced");
    clear(replaced);
    if (scan.replaced_by !== null && scan.replaced_by !== undefined && scan.replaced_by !== "") {
      replaced.append("This scan was replaced by scan ", pageLink(scan.replaced_by), ".");
      replaced.hidden = false;
    } else {
      replaced.hidden = true;
    }
  }

  // The result card: the scan document's numbers, and once done the containment from summary.json
  // (skyscan-summary/1: containment["50"|"90"] with area_deg2 and the RA/Dec extents in degrees).
  function drawResult(scan) {
    const rows = [
      ["best fit RA, Dec", Sky.fmtRaDec(scan.best_fit)],
      ["90% area", Sky.fmtArea(scan.area_90_deg2)],
    ];
    const c = summary && summary.containment && typeof summary.containment === "object" ? summary.containment : null;
    if (c) {
      const region = c["90"] || {};
      if (Sky.isNum(region.ra_plus_deg) && Sky.isNum(region.dec_plus_deg)) {
        rows.push(["90% extent", "RA +" + region.ra_plus_deg.toFixed(2) + " / −" + Sky.fmtNum(region.ra_minus_deg, 2) +
          "°, Dec +" + region.dec_plus_deg.toFixed(2) + " / −" + Sky.fmtNum(region.dec_minus_deg, 2) + "°"]);
      }
      const half = c["50"] || {};
      if (Sky.isNum(half.area_deg2)) rows.push(["50% area", Sky.fmtArea(half.area_deg2)]);
      if (typeof c.method === "string") rows.push(["containment", c.method]);
    }
    if (summary && summary.best_fit && Sky.isNum(summary.best_fit.nside)) rows.push(["best-fit nside", summary.best_fit.nside]);
    rows.push(["wall time", Sky.fmtDuration(scan.wall_seconds)]);
    kv(document.getElementById("result"), rows);
  }

  function rank(p) {
    const n = p.name.toLowerCase();
    return n.includes("zoom") ? 0 : (n.includes("full") ? 1 : 2);
  }

  function productPath(name) { return scanPath + "/products/" + encodeURIComponent(name); }

  function baseName(name) { return String(name).split("/").pop(); }

  function fmtBytes(n) {
    if (!Sky.isNum(n)) return "";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1024 / 1024).toFixed(1) + " MiB";
  }

  async function drawPlots(products) {
    const box = document.getElementById("plots");
    const images = products.filter(p => String(p.content_type || "").startsWith("image/"))
      .sort((a, b) => rank(a) - rank(b));
    for (const u of objectUrls) URL.revokeObjectURL(u);
    objectUrls = [];
    clear(box);
    if (!images.length) { box.append(el("p", { class: "muted" }, "No plots.")); return; }
    for (const p of images) {
      const kind = rank(p) === 0 ? "zoom" : (rank(p) === 1 ? "fullsky" : "other");
      const img = el("img", { alt: (kind === "zoom" ? "zoom on the best fit: " : kind === "fullsky" ? "full sky: " : "") + p.name,
                               "data-product": p.name, class: "plot plot-" + kind, id: kind !== "other" ? "plot-" + kind : null });
      box.append(el("figure", { class: "figure figure-" + kind }, img, el("figcaption", { class: "small muted" }, p.name)));
      try {
        const url = URL.createObjectURL(await Sky.getBlob(productPath(p.name)));
        objectUrls.push(url);
        img.src = url;
      } catch (err) {
        img.replaceWith(el("p", { class: "error" }, p.name + ": " + err.message));
      }
    }
  }

  async function drawText(products, id, test) {
    const pre = document.getElementById(id);
    const product = products.find(test);
    if (!product) { pre.textContent = "Not in the products of this scan."; pre.className = "text muted"; return; }
    try {
      let text = await Sky.getText(productPath(product.name));
      if (String(product.content_type || "").includes("json")) {
        try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* show as sent */ }
      }
      pre.textContent = text;
      pre.className = "text";
    } catch (err) {
      pre.textContent = err.message;
      pre.className = "text error";
    }
  }

  function drawDownloads(products) {
    const list = clear(document.getElementById("downloads"));
    if (!products.length) { list.append(el("li", { class: "muted" }, "No products.")); return; }
    for (const p of products) {
      const a = el("a", { href: Sky.apiUrl(productPath(p.name)), download: baseName(p.name), "data-product": p.name }, p.name);
      // With a token the browser cannot send it on a plain link: fetch with the header, then save the blob.
      a.addEventListener("click", async ev => {
        if (!Sky.token()) return;
        ev.preventDefault();
        try {
          const url = URL.createObjectURL(await Sky.getBlob(productPath(p.name)));
          const tmp = el("a", { href: url, download: baseName(p.name) });
          document.body.append(tmp); tmp.click(); tmp.remove();
          setTimeout(() => URL.revokeObjectURL(url), 10000);
        } catch (err) { Sky.showError(p.name + ": " + err.message); }
      });
      list.append(el("li", {}, a, el("span", { class: "small muted" }, " " + (p.content_type || "") + " · " + fmtBytes(p.bytes))));
    }
  }

  async function drawProducts(state) {
    let products;
    try {
      const doc = await Sky.getJson(scanPath + "/products");
      products = (Array.isArray(doc.products) ? doc.products : []).filter(p => p && typeof p.name === "string");
    } catch (err) {
      if (err.status === 409 || err.status === 404) return;  // not ready (yet)
      throw err;
    }
    productsFor = state;
    drawDownloads(products);
    await Promise.all([
      drawPlots(products),
      drawText(products, "circular", p => p.name.toLowerCase().includes("circular")),
      drawText(products, "notice", p => p.name.toLowerCase().includes("notice")),
    ]);
  }

  async function tick() {
    if (!scanId) { Sky.showError("no scan id in the address"); return IDLE_MS; }
    Sky.showHealth();
    let scan;
    try {
      scan = await Sky.getJson(scanPath + "?no_redirect=true");
    } catch (err) {
      if (err.status === 401 || err.status === 403) { Sky.showAuth(err, () => refresh()); Sky.showError(""); return IDLE_MS; }
      Sky.showError(err.message);
      return err.status === 404 ? IDLE_MS : FAST_MS * 4;
    }
    Sky.showError("");
    drawScan(scan);
    if (scan.state === "done" && productsFor !== "done") {
      try {
        summary = await Sky.getJson(scanPath + "/result");
        drawResult(scan);
      } catch (err) { if (err.status !== 409) Sky.showError(err.message); }
      try { await drawProducts("done"); } catch (err) { Sky.showError(err.message); }
    }
    return Sky.ACTIVE.has(scan.state) ? FAST_MS : IDLE_MS;
  }

  const refresh = Sky.loop(tick);
})();
