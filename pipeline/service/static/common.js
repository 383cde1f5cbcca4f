// Shared helpers of the skyscan status page: the API base, the token, DOM building, formatting.
// Every text that comes from the API is put into the page as a text node (textContent), never as HTML.
"use strict";

const Sky = (() => {
  const TOKEN_KEY = "skyscan.token";
  const ACTIVE = new Set(["received", "queued", "running"]);
  const STATES = ["received", "queued", "running", "done", "failed", "cancelled"];

  // The service root, from this script's own address (".../static/common.js"), so the page also works
  // behind a reverse proxy that serves it under a path prefix.
  const script = document.currentScript;
  const ROOT = new URL("..", script ? script.src : location.href).href;

  // A token given once as ?token=... goes to sessionStorage and leaves the address bar and the history.
  (function takeTokenFromUrl() {
    const url = new URL(location.href);
    const token = url.searchParams.get("token");
    if (token !== null) {
      if (token.trim()) sessionStorage.setItem(TOKEN_KEY, token.trim());
      url.searchParams.delete("token");
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    }
  })();

  function token() { return sessionStorage.getItem(TOKEN_KEY); }
  function setToken(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  }

  function apiUrl(path) { return ROOT + "api/v1/" + path; }
  function pageUrl(path) { return ROOT + path; }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function detailOf(status, body) {
    let detail = body && body.detail;
    if (Array.isArray(detail) && detail.length) {
      const first = detail[0] || {};
      const where = Array.isArray(first.loc) ? first.loc.join(".") : "";
      detail = (where ? where + ": " : "") + (first.msg || "invalid request");
    } else if (detail && typeof detail === "object") {
      detail = detail.message || detail.msg || JSON.stringify(detail);
    }
    return "HTTP " + status + (detail ? ": " + String(detail) : "");
  }

  async function request(path, accept) {
    const headers = { "Accept": accept };
    const t = token();
    if (t) headers["Authorization"] = "Bearer " + t;
    let response;
    try {
      response = await fetch(apiUrl(path), { headers, cache: "no-store", credentials: "omit" });
    } catch (err) {
      throw new ApiError(0, "cannot reach the service (" + err.message + ")");
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, detailOf(response.status, body));
    }
    return response;
  }

  async function getJson(path) { return (await request(path, "application/json")).json(); }
  async function getBlob(path) { return (await request(path, "*/*")).blob(); }
  async function getText(path) { return (await request(path, "*/*")).text(); }

  // el("td", {class: "num", title: "..."}, "text", childNode, ...): strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function isNum(x) { return typeof x === "number" && Number.isFinite(x); }

  function fmtNum(x, digits) { return isNum(x) ? x.toFixed(digits) : "–"; }

  // An area in square degrees: two decimals from 1 deg² up, two significant digits below (0.013 deg²).
  function fmtArea(deg2) {
    if (!isNum(deg2)) return "–";
    return (deg2 >= 100 ? deg2.toFixed(0) : deg2 >= 1 ? deg2.toFixed(2) : deg2.toPrecision(2)) + " deg²";
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds) || seconds < 0) return "–";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60), rest = s % 60;
    if (m < 60) return m + " min " + String(rest).padStart(2, "0") + " s";
    const h = Math.floor(m / 60);
    return h + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  // "2026-12-02T17:41:03.123Z" -> "2026-12-02 17:41 UTC" (the catalog keeps UTC; the page shows it as such).
  // With `seconds`, to the second ("2026-06-21 03:14:15 UTC"): for an event time.
  function fmtTime(stamp, seconds) {
    if (typeof stamp !== "string" || !stamp) return "–";
    const m = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)(:\d\d)?/.exec(stamp);
    return m ? m[1] + " " + m[2] + (seconds && m[3] ? m[3] : "") + " UTC" : stamp;
  }

  function fmtRaDec(best) {
    if (!best || !isNum(best.ra_deg) || !isNum(best.dec_deg)) return "–";
    return best.ra_deg.toFixed(2) + "°, " + (best.dec_deg >= 0 ? "+" : "") + best.dec_deg.toFixed(2) + "°";
  }

  // Fraction of a scan's pixels done (0..1), from its progress per stage. Later refinement stages are planned
  // only when the earlier ones end, so a running scan is shown below 100% until its document says done.
  function progressOf(scan) {
    if (scan.state === "done") return { fraction: 1, text: "done" };
    const stages = Array.isArray(scan.progress) ? scan.progress.filter(p => p && typeof p === "object") : [];
    let done = 0, total = 0;
    for (const p of stages) {
      if (isNum(p.done)) done += p.done;
      if (isNum(p.total)) total += p.total;
    }
    let fraction = total > 0 ? done / total : 0;
    if (ACTIVE.has(scan.state)) fraction = Math.min(fraction, 0.99);
    const last = stages.length ? stages[stages.length - 1] : null;
    let text = scan.state || "";
    if (last && ACTIVE.has(scan.state)) {
      text = "stage " + last.stage + " · nside " + last.nside + " · " + last.done + "/" + last.total;
    }
    return { fraction, text };
  }

  function stateBadge(state) {
    const s = typeof state === "string" ? state : "unknown";
    return el("span", { class: "state state-" + (STATES.includes(s) ? s : "unknown") }, s);
  }

  // The line under a bar: where a running scan is, where a failed or cancelled one stopped.
  function progressNote(scan, fraction, text) {
    const pct = Math.floor(fraction * 100) + "%";
    if (scan.state === "running") return pct + " · " + text;
    if (scan.state === "failed" || scan.state === "cancelled") return fraction > 0 ? "stopped at " + pct : "";
    return "";
  }

  function progressCell(scan) {
    const { fraction, text } = progressOf(scan);
    const bar = el("progress", { max: 1, value: fraction.toFixed(4), "aria-label": "progress" });
    bar.className = "bar bar-" + (STATES.includes(scan.state) ? scan.state : "unknown");
    return el("div", { class: "progress-cell" }, stateBadge(scan.state), bar,
      el("span", { class: "small muted" }, progressNote(scan, fraction, text)));
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message || "";
    box.hidden = !message;
  }

  // On 401/403: a small form to give the page a token (kept in sessionStorage for this tab only).
  function showAuth(err, retry) {
    const box = document.getElementById("auth");
    if (!box) return;
    clear(box);
    const input = el("input", { type: "password", id: "token-input", autocomplete: "off", placeholder: "token" });
    const form = el("form", { class: "auth-form" },
      el("label", { for: "token-input" }, err.status === 403 ? "This token may not read scans. Another token: "
        : "This service needs a token to read scans: "),
      input, el("button", { type: "submit" }, "Use token"));
    form.addEventListener("submit", ev => {
      ev.preventDefault();
      setToken(input.value.trim());
      box.hidden = true;
      retry();
    });
    box.append(form);
    box.hidden = false;
  }

  async function showHealth() {
    const node = document.getElementById("health");
    if (!node) return;
    try {
      const h = await getJson("health");
      const sch = h.scheduler || {};
      node.textContent = "v" + h.version + " · " + (sch.alive ? "scheduler up" : "scheduler down") +
        " · " + sch.running + " running · " + sch.queued + " queued";
      node.className = "health " + (sch.alive ? "ok" : "bad");
    } catch (err) {
      node.textContent = err.status === 0 ? "service unreachable" : "";
      node.className = "health bad";
    }
  }

  // Run `tick` now and again after the delay it returns (milliseconds), pausing while the tab is hidden.
  function loop(tick) {
    let timer = null;
    async function run() {
      clearTimeout(timer);
      let delay = 5000;
      try { delay = await tick(); } catch (err) { delay = 5000; }
      timer = setTimeout(() => { if (!document.hidden) run(); }, delay);
    }
    document.addEventListener("visibilitychange", () => { if (!document.hidden) run(); });
    run();
    return run;
  }

  return { ACTIVE, STATES, ApiError, apiUrl, pageUrl, token, getJson, getBlob, getText, el, clear, isNum,
           fmtNum, fmtArea, fmtDuration, fmtTime, fmtRaDec, progressOf, progressCell, stateBadge, showError, showAuth,
           showHealth, loop };
})();
