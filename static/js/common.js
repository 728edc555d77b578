/* Shared helpers for every page: JSON API calls, formatting, the confirm dialog and the
   run websocket with reconnect. Plain browser JS, no build step; exposes `window.Dash`. */
"use strict";

(function () {
  // Close codes after which reconnecting cannot help (run not found, bad subscribe). The server
  // renders them from orpo_dash.protocol into this script's tag (templates/base.html).
  const FINAL_CLOSE_CODES = (document.currentScript.dataset.finalCloseCodes || "")
    .split(" ").filter(Boolean).map(Number);
  // Statuses a run never leaves (orpo_dash.protocol.TERMINAL_STATUSES, rendered the same way), e.g.
  // "lost": the dashboard stopped hearing from the run's worker.
  const TERMINAL = (document.currentScript.dataset.terminalStatuses || "").split(" ").filter(Boolean);

  // Who is looking, rendered by templates/base.html (server/page_rights.py holds the same rules, the
  // API enforces them): controls the caller cannot use are drawn disabled with the reason as tooltip.
  const NEEDS_MEMBER = "needs the member role";
  const caller = {
    role: document.body.dataset.role || "admin",
    name: document.body.dataset.user || null,
    get canStart() { return this.role === "member" || this.role === "admin"; },
    // Why this caller may not stop or delete the run; null if they may.
    whyNotChange(run) {
      if (this.role === "admin") return null;
      if (!this.canStart) return NEEDS_MEMBER;
      if (this.name && run.created_by === this.name) return null;
      return `started by ${run.created_by || "someone while auth was off"}; only they or an admin can do this`;
    },
  };

  class ApiError extends Error {
    constructor(status, body) {
      super(ApiError.describe(status, body));
      this.status = status;
      this.body = body;
    }
    static describe(status, body) {
      if (body && typeof body.detail === "string") return body.detail;
      if (body && Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
      return `Request failed (HTTP ${status})`;
    }
  }

  async function api(method, url, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) {
      // Auth on and the login expired: log in again, then come back here.
      location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = text; }
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  const escapeHtml = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  /**
   * Every number on every page, by one rule (the same as orpo_dash/number_format.py, tested on one
   * table of cases): below 1e-3 or from 1e5 up in scientific notation without "+", leading or
   * trailing zeros (2e-5, 1.5e-6, 1.23e5), the rest as plain decimals (0.005, 14.9); `digits`
   * significant digits, or null for every digit needed to read the same number back (form inputs).
   */
  function fmtNum(value, digits = 4) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (typeof value !== "number") return String(value);
    if (!Number.isFinite(value)) return value > 0 ? "∞" : "-∞";
    if (value === 0) return "0";
    if (digits === null && Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
    const abs = Math.abs(value);
    if (abs >= 1e-3 && abs < 1e5) return String(digits === null ? value : Number(value.toPrecision(digits)));
    const [mantissa, exponent] = (digits === null ? value.toExponential() : value.toExponential(digits - 1)).split("e");
    const trimmed = mantissa.includes(".") ? mantissa.replace(/0+$/, "").replace(/\.$/, "") : mantissa;
    return `${trimmed}e${Number(exponent)}`;
  }

  /** A number as a form input or a config table holds it: fmtNum's notation, every digit kept. */
  const fmtExact = (value) => fmtNum(value, null);

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
    return `${s}s`;
  }

  function fmtDate(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
  }

  /** Seconds the run has been (or was) running; null before it starts. */
  function runDuration(run) {
    if (!run.started_at) return null;
    const end = run.finished_at ? new Date(run.finished_at) : new Date();
    return (end - new Date(run.started_at)) / 1000;
  }

  const isTerminal = (status) => TERMINAL.includes(status);

  function statusBadge(status) {
    return `<span class="badge status-${escapeHtml(status)}" data-status="${escapeHtml(status)}">${escapeHtml(status)}</span>`;
  }

  // Alert severities are exactly "warning" and "critical"; the shape keeps them apart without colour.
  const SEVERITY_ICON = { critical: "◆", warning: "▲" };

  /** Badges counting a run's open alerts per severity (critical first); the title lists the kinds. */
  function alertBadges(alerts) {
    const open = (alerts || []).filter((a) => a.state !== "closed");
    return ["critical", "warning"].map((sev) => {
      const these = open.filter((a) => a.severity === sev);
      if (!these.length) return "";
      const kinds = [...new Set(these.map((a) => a.kind.replaceAll("_", " ")))].join(", ");
      return `<span class="badge alert-${sev}" data-alert-severity="${sev}" title="${escapeHtml(kinds)}">` +
        `${SEVERITY_ICON[sev]} ${these.length} ${sev}</span>`;
    }).filter(Boolean).join(" ");
  }

  /** Resolves true when the user confirms in the shared <dialog>. */
  function confirmAction(title, message, okLabel = "Confirm", cancelLabel = "Cancel") {
    const dialog = document.getElementById("confirm-dialog");
    dialog.querySelector("#confirm-title").textContent = title;
    dialog.querySelector("#confirm-message").textContent = message;
    dialog.querySelector("#confirm-ok").textContent = okLabel;
    dialog.querySelector("#confirm-cancel").textContent = cancelLabel;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  // A tooltip holds a whole traceback up to this size; beyond it, its end (where the cause is) is kept.
  const ERROR_TOOLTIP_CHARS = 3000;

  /** A run's error for a title attribute: all of it, bounded, never only its last line. */
  function errorTooltip(error) {
    const text = String(error || "").trim();
    return text.length <= ERROR_TOOLTIP_CHARS ? text : `…${text.slice(-ERROR_TOOLTIP_CHARS)}`;
  }

  /** The line that says what went wrong: a traceback's last line, or the message itself. */
  function errorHeadline(error) {
    return String(error || "").split("\n").map((line) => line.trim()).filter(Boolean).pop() || "";
  }

  function toast(message, kind = "info") {
    let box = document.getElementById("toasts");
    if (!box) {
      box = document.createElement("div");
      box.id = "toasts";
      box.className = "toasts";
      box.setAttribute("role", "status");
      box.setAttribute("aria-live", "polite");
      document.body.appendChild(box);
    }
    const el = document.createElement("div");
    el.className = `toast toast-${kind}`;
    el.textContent = message;
    box.appendChild(el);
    setTimeout(() => el.remove(), 5000);
  }

  function download(filename, content, type) {
    const url = URL.createObjectURL(new Blob([content], { type }));
    const a = Object.assign(document.createElement("a"), { href: url, download: filename });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  /**
   * The browser websocket for one run (`/ws/runs/{id}`). Subscribes with the last step the page
   * already holds, hands every frame to `onMessage`, and reconnects with exponential backoff
   * until the run is finished or `close()` is called.
   */
  class RunSocket {
    constructor(runId, { afterStep, onMessage, onState }) {
      this.runId = runId;
      this.afterStep = afterStep;   // () => last step already drawn
      this.onMessage = onMessage;
      this.onState = onState || (() => {});
      this.delay = 500;
      this.closed = false;
      this.finished = false;        // set by the page once the run reached a terminal status
      this.connect();
    }
    connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const ws = new WebSocket(`${scheme}://${location.host}/ws/runs/${this.runId}`);
      this.ws = ws;
      this.onState("connecting");
      ws.onopen = () => {
        this.delay = 500;
        ws.send(JSON.stringify({ type: "subscribe", after_step: this.afterStep() }));
        this.onState("live");
      };
      ws.onmessage = (event) => {
        let message;
        try { message = JSON.parse(event.data); } catch (_) { return; }
        this.onMessage(message);
      };
      ws.onclose = (event) => {
        if (this.closed || FINAL_CLOSE_CODES.includes(event.code)) { this.onState("closed"); return; }
        if (this.finished) { this.onState("finished"); return; }
        this.onState("reconnecting");
        setTimeout(() => { if (!this.closed) this.connect(); }, this.delay);
        this.delay = Math.min(this.delay * 2, 15000);
      };
    }
    close() {
      this.closed = true;
      if (this.ws) this.ws.close();
    }
  }

  function debounce(fn, ms) {
    let timer;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }

  window.Dash = {
    api, ApiError, escapeHtml, fmtNum, fmtExact, fmtDuration, fmtDate, runDuration, isTerminal, statusBadge,
    alertBadges, confirmAction, errorTooltip, errorHeadline, toast, download, RunSocket, debounce, FINAL_CLOSE_CODES,
    caller, NEEDS_MEMBER,
  };
})();
