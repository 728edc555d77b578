/* The run page: draws everything recorded so far over HTTP (downsampled), then follows the run
   live over the websocket; no polling loop. */
"use strict";

(function () {
  const { api, escapeHtml, fmtNum, fmtExact, fmtDuration, fmtDate, isTerminal, statusBadge, confirmAction, errorTooltip, errorHeadline, toast, RunSocket } = Dash;
  const { PALETTE, Series, Timeline, ChartPanel, splitMetric, chartOptions, metricAxes } = Charts;
  const { fmtBytes, plannedSteps, queueText, phaseText } = RunProgress;

  const root = document.getElementById("run-page");
  const runId = Number(root.dataset.runId);
  const configGroups = JSON.parse(document.getElementById("config-groups").textContent);
  const MAX_POINTS = 2000;          // per series on first draw; zooming fetches full resolution
  const MAX_LOG_LINES = 500;

  const options = chartOptions("orpo-dash:chart-options", () => redrawAll());
  const store = new Map();           // metric name -> Series
  const timeline = new Timeline((name) => store.get(name));
  const panels = new Map();          // group id -> {panel, left, right}
  const metricPanel = new Map();     // metric name -> ChartPanel
  let run = null;
  let alerts = [];
  let downsampled = false;
  let socket = null;

  // --- charts ---------------------------------------------------------------------------------
  const axes = metricAxes();
  for (const div of root.querySelectorAll(".chart[data-metric-group]")) {
    const left = div.dataset.metrics ? div.dataset.metrics.split(",") : [];
    const right = div.dataset.metricsRight ? div.dataset.metricsRight.split(",") : [];
    const panel = new ChartPanel(div, {
      options, yTitle: div.dataset.yTitle, y2Title: div.dataset.y2Title, onZoom: zoomed, axes,
    });
    panels.set(div.dataset.metricGroup, { panel, left, right, extra: 0 });
  }

  function groupOf(base) {
    for (const [id, g] of panels) if (g.left.includes(base) || g.right.includes(base)) return id;
    return "other";
  }

  function ensureLine(name) {
    if (metricPanel.has(name) || name === "epoch") return;
    const { base, isEval } = splitMetric(name);
    const id = groupOf(base);
    const group = panels.get(id);
    let index = [...group.left, ...group.right].indexOf(base);
    if (index < 0) { index = group.left.length + group.right.length + group.extra; group.extra += isEval ? 0 : 1; }
    group.panel.addLine({
      key: name, label: name, metric: base, series: store.get(name), timeline,
      color: PALETTE[index % PALETTE.length], dashed: isEval, train: !isEval,
      axis: group.right.includes(base) ? "y2" : "y",
    });
    metricPanel.set(name, group.panel);
    const card = document.getElementById(`card-${id}`);
    if (card.hidden) {                  // "other" and "system" appear with their first line
      card.hidden = false;
      if (group.panel.drawn) Plotly.Plots.resize(group.panel.div);   // it was laid out while hidden
    }
  }

  let maxStep = -1;
  function addPoints(points) {
    let grew = false;
    for (const [step, name, value, time] of points) {
      let series = store.get(name);
      if (!series) { series = new Series(); store.set(name, series); ensureLine(name); }
      if (!series.add(step, value, time)) continue;
      grew = true;
      if (step > maxStep) maxStep = step;
      const panel = metricPanel.get(name);
      if (panel) panel.grew(name);
      // Epoch or time positions feed every other chart's x values.
      if (name === "epoch" && options.xMode === "epoch") panels.forEach((g) => g.panel.scheduleFull());
    }
    if (grew) renderProgress();
  }

  function addSeries(seriesByName) {
    const points = [];
    for (const [name, s] of Object.entries(seriesByName)) {
      for (let i = 0; i < s.step.length; i++) points.push([s.step[i], name, s.value[i], s.time[i]]);
    }
    points.sort((a, b) => a[0] - b[0]);
    addPoints(points);
  }

  /** Zoomed into a downsampled chart: fetch that range at full resolution. */
  async function zoomed(panel, range) {
    if (!downsampled || !range) return;
    const names = panel.lines.map((l) => l.key).join(",");
    const url = `/api/runs/${runId}/metrics?names=${encodeURIComponent(names)}&min_step=${range.min}` +
      `&max_step=${range.max}&max_points=${MAX_POINTS}`;
    try {
      const data = await api("GET", url);
      for (const [name, s] of Object.entries(data.series)) {
        if (store.has(name)) store.get(name).replaceRange(range.min, range.max, s);
      }
      await panel.renderNow();  // the marker below tells tests the zoomed data is drawn
      panel.div.dataset.zoomedRange = `${range.min}-${range.max}`;
    } catch (err) { toast(`Could not load full resolution: ${err.message}`, "error"); }
  }

  function redrawAll() { panels.forEach((g) => g.panel.scheduleFull()); }

  // --- header, progress, error ----------------------------------------------------------------
  function renderRun(next) {
    run = next;
    document.getElementById("run-name").textContent = run.name;
    document.title = `${run.name} · ORPO Dashboard`;
    const statusBox = document.getElementById("run-status");
    statusBox.innerHTML = statusBadge(run.status);
    if (run.error) statusBox.title = errorTooltip(run.error); else statusBox.removeAttribute("title");
    const c = run.config || {};
    const tags = (run.tags || []).map((t) => `<span class="tag">${escapeHtml(t)}</span>`).join(" ");
    document.getElementById("run-meta").innerHTML =
      `<span>model <code>${escapeHtml(c.model)}</code></span> <span>dataset <code>${escapeHtml(c.dataset)}</code></span> ` +
      `<span>λ ${fmtNum(c.beta)}</span> <span>lr ${fmtNum(c.learning_rate)}</span> ` +
      `<span>created ${fmtDate(run.created_at)}</span> ${tags}`;
    const stopBtn = document.getElementById("stop-btn");
    stopBtn.hidden = isTerminal(run.status);
    const whyNotStop = Dash.caller.whyNotChange(run);
    stopBtn.disabled = Boolean(whyNotStop);
    stopBtn.title = whyNotStop || "";
    const failed = (run.status === "failed" || run.status === "lost") && run.error;
    document.getElementById("run-error").hidden = !failed;
    document.getElementById("run-error-title").textContent =
      run.status === "lost" ? "This run's worker was lost." : "This run failed.";
    renderError(failed ? run.error : "");
    // Only a folder that exists: an external worker's, or one nothing was saved to yet, would mislead.
    document.getElementById("output-dir-line").hidden = !run.output_dir_exists;
    document.getElementById("output-dir").textContent = run.output_dir_exists ? run.output_dir : "";
    document.getElementById("checkpoints-size").textContent = run.checkpoint_bytes ? fmtBytes(run.checkpoint_bytes) : "";
    document.getElementById("delete-checkpoints-btn").hidden = !(run.checkpoints || []).length || !isTerminal(run.status);
    renderCheckpoints(run.checkpoints || []);
    if (socket) alertsArrived(run.alerts || []);   // the first load renders its alerts itself
    if (socket) {
      // An ended run stops reconnecting; while the socket is open it still draws what arrives (the
      // points of a lost run's worker that came back).
      socket.finished = isTerminal(run.status);
      if (socket.finished) setLiveState("finished");
    }
    pollWhileQueued();
    const emptyText = isTerminal(run.status) ? "Not logged by this run" : "Waiting for data…";
    panels.forEach((g) => { if (g.panel.emptyText !== emptyText) { g.panel.emptyText = emptyText; g.panel.scheduleFull(); } });
    renderProgress();
  }

  // A queued run's place in line changes when runs ahead of it start, stop or are deleted, none of
  // which is news on this run's socket: while it waits, ask every few seconds (and only then).
  const QUEUE_POLL_MS = 5000;
  let queuePoll = null;
  function pollWhileQueued() {
    if (run.status !== "queued" || queuePoll) return;
    queuePoll = setTimeout(async () => {
      queuePoll = null;
      try {
        const next = await api("GET", `/api/runs/${runId}`);
        if (run.status === "queued") renderRun(next);   // the socket may have said "running" meanwhile
      } catch (err) { pollWhileQueued(); }
    }, QUEUE_POLL_MS);
  }

  /** The error's last line up front, and all of it (a traceback) one click away. */
  function renderError(error) {
    const lines = error.split("\n").filter((line) => line.trim()).length;
    document.getElementById("run-error-headline").textContent = errorHeadline(error);
    const full = document.getElementById("run-error-full");
    full.hidden = lines < 2;
    document.getElementById("run-error-lines").textContent = `Full error (${lines} lines)`;
    document.getElementById("run-error-text").textContent = error;
  }

  function secondsPerStep() {
    const s = store.get("loss");
    if (!s || s.length < 2) return null;
    const last = s.length - 1, first = Math.max(0, last - 20);
    const steps = s.step[last] - s.step[first];
    return steps > 0 ? (s.time[last] - s.time[first]) / steps : null;
  }

  function renderProgress() {
    if (!run) return;
    const step = Math.max(run.last_step || 0, maxStep, 0);
    const total = run.total_steps || 0;
    const pct = total ? Math.min(100, (100 * step) / total) : 0;
    document.getElementById("progress-fill").style.width = `${pct}%`;
    const bar = document.getElementById("progress");
    bar.setAttribute("aria-valuenow", pct.toFixed(0));
    bar.dataset.status = run.status;
    const planned = plannedSteps(run);
    let text = `step ${step} / ${planned || "?"}`;
    const doing = phaseText(run);
    bar.dataset.phase = run.status === "running" && run.phase ? run.phase.name : "";
    if (run.status === "queued") {
      text = `${queueText(run)}: starts when a worker slot is free` + (planned ? ` · ${planned} steps planned` : "");
    } else if (run.status === "running" && !step && !doing) {
      text = "starting: loading the model and the dataset (the first step follows)" + (planned ? ` · ${planned} steps planned` : "");
    } else if (doing) {
      text += ` · ${doing}`;        // an evaluation or a save has its own progress; a step ETA would say 0 s
    } else if (run.status === "running") {
      const sps = secondsPerStep();
      if (sps && total) text += ` · ETA ${fmtDuration(sps * (total - step))}`;
    } else if (run.started_at) {
      text += ` · ${run.status} in ${fmtDuration(Dash.runDuration(run))}`;
    }
    document.getElementById("progress-text").textContent = text;
  }

  document.getElementById("stop-btn").addEventListener("click", async () => {
    const name = run ? run.name : runId;
    // A queued run has no step to finish and nothing to save: stopping it just cancels it.
    const queued = run && run.status === "queued";
    const ok = queued
      ? await confirmAction("Cancel this queued run?",
        `“${name}” has not started yet: it is taken out of the queue and never trains. Its settings stay here, so you can clone it later.`,
        "Cancel run", "Keep it queued")
      : await confirmAction("Stop this run?",
        `“${name}” will stop after the current step and keep its metrics and last checkpoint.`, "Stop run");
    if (!ok) return;
    try {
      const updated = await api("POST", `/api/runs/${runId}/stop`);
      // The reply is a snapshot from before the worker stopped; the websocket may already have pushed
      // "stopped", and the older snapshot must not turn the page back to "running".
      if (updated && updated.status && !isTerminal(run.status)) renderRun(updated);
      toast(queued ? "Run cancelled." : "Stop requested.");
    } catch (err) { toast(`Could not stop the run: ${err.message}`, "error"); }
  });

  // --- alerts ---------------------------------------------------------------------------------
  // Severities are exactly "warning" and "critical" (orpo_dash/diagnostics/alerts.py). Okabe-Ito
  // orange and vermillion, and never colour alone: the marker's dash and the label's shape differ too
  // (plain geometric glyphs that every font has, no emoji).
  const SEVERITY = {
    critical: { colour: "#D55E00", icon: "◆", dash: "solid", rank: 0 },
    warning: { colour: "#E69F00", icon: "▲", dash: "dot", rank: 1 },
  };
  const severityOf = (a) => SEVERITY[a.severity] || SEVERITY.warning;
  // Charts an alert kind is about; kinds not listed (non_finite, new ones) mark every chart.
  const ALERT_CHARTS = {
    log_odds_flat: ["preference"],
    loss_rising: ["loss"],
    over_penalization: ["logps", "preference"],
    catastrophic_forgetting: ["loss"],
    format_not_learned: ["loss"],
  };
  const kindLabel = (kind) => kind.replaceAll("_", " ");
  /** An alert's message as a sentence: capital first letter, full stop (the detectors write lower-case clauses). */
  const sentence = (text) => {
    const t = String(text || "").trim();
    return t ? t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".") : "";
  };
  const dismissed = new Set();       // alert ids hidden from the banner (they stay in the panel)
  const notified = new Set();        // alert ids already shown as a desktop notification

  /** Adds or updates an alert; returns true when it is newly open. */
  function upsertAlert(alert) {
    const i = alerts.findIndex((a) => a.id === alert.id);
    const wasOpen = i >= 0 && alerts[i].state !== "closed";
    if (i >= 0) alerts[i] = alert; else alerts.push(alert);
    return alert.state !== "closed" && !wasOpen;
  }

  /** "Clone with this fix": the new-run form, pre-filled from this run with the alert's change applied. */
  function fixLink(a) {
    const change = a.suggested_change;
    if (!change) return "";
    return `<p class="fix-row"><a class="btn btn-small btn-fix" href="/runs/new?clone=${runId}&amp;fix=${Number(a.id)}"
        data-fix-alert="${Number(a.id)}">Clone with this fix</a>
      <span class="muted small"><code>${escapeHtml(change.field)}</code> ${escapeHtml(fmtChange(change.from))} → ${escapeHtml(fmtChange(change.to))}</span></p>`;
  }
  const fmtChange = (value) => (typeof value === "number" ? fmtNum(value) : String(value));

  function renderAlerts() {
    const list = document.getElementById("alerts-list");
    document.getElementById("alerts-count").textContent = alerts.filter((a) => a.state !== "closed").length;
    document.getElementById("alerts-empty").hidden = alerts.length > 0;
    list.innerHTML = alerts.slice().sort((a, b) => (a.state === "closed") - (b.state === "closed") || b.onset_step - a.onset_step)
      .map((a) => `
        <li class="alert alert-${escapeHtml(a.severity)}${a.state === "closed" ? " closed" : ""}" id="alert-${Number(a.id)}" data-kind="${escapeHtml(a.kind)}" data-alert-id="${a.id}" tabindex="-1">
          <div class="alert-head">
            <span class="badge alert-${escapeHtml(a.severity)}">${severityOf(a).icon} ${escapeHtml(a.severity)}</span>
            <strong>${escapeHtml(kindLabel(a.kind))}</strong>
            <span class="muted small">from step ${a.onset_step}${a.state === "closed" ? ` · resolved at step ${a.closed_step ?? a.step}` : ""}</span>
          </div>
          <p class="alert-message">${escapeHtml(sentence(a.message))}</p>
          ${a.details ? `<p class="alert-details muted small"><span class="alert-details-label">Statistics:</span> ${escapeHtml(a.details)}</p>` : ""}
          ${a.advice ? `<p class="advice"><strong>What to try:</strong> ${escapeHtml(a.advice)}</p>` : ""}
          ${fixLink(a)}
        </li>`).join("");
    renderBanner();
    for (const [id, g] of panels) {
      const markers = alerts.filter((a) => !ALERT_CHARTS[a.kind] || ALERT_CHARTS[a.kind].includes(id)).map((a) => ({
        step: a.onset_step, label: kindLabel(a.kind), timeline, color: severityOf(a).colour,
        dash: severityOf(a).dash, icon: severityOf(a).icon, alertId: a.id,
      }));
      g.panel.setMarkers(markers);
    }
  }

  // The banner is one line per open alert, pointing at its entry in the alerts panel, where the full
  // alert lives (sentence, statistics, advice, fix): each alert is read in one place, not twice.
  const banner = document.getElementById("alert-banner");
  function renderBanner() {
    const open = alerts.filter((a) => a.state !== "closed" && !dismissed.has(a.id))
      .sort((a, b) => severityOf(a).rank - severityOf(b).rank || b.onset_step - a.onset_step);
    banner.hidden = open.length === 0;
    banner.dataset.severity = open.length ? open[0].severity : "";
    banner.innerHTML = open.map((a) => `
      <div class="banner-item banner-${escapeHtml(a.severity)}" data-alert-id="${a.id}" data-kind="${escapeHtml(a.kind)}">
        <span class="banner-icon" aria-hidden="true">!</span>
        <p class="banner-text">
          <strong>${escapeHtml(a.severity === "critical" ? "Critical" : "Warning")}: ${escapeHtml(kindLabel(a.kind))}</strong>
          <span class="banner-sentence">${escapeHtml(sentence(a.message))}</span>
          <a class="banner-more" href="#alert-${Number(a.id)}" data-goto-alert="${Number(a.id)}">Details and what to try</a>
        </p>
        <button type="button" class="btn-link banner-dismiss" data-dismiss="${a.id}" aria-label="Hide this alert from the banner">Dismiss</button>
      </div>`).join("");
  }
  banner.addEventListener("click", (event) => {
    const more = event.target.closest("[data-goto-alert]");
    if (more) {   // scroll to the panel entry and flash it (a plain #hash would not re-flash on a second click)
      event.preventDefault();
      const entry = document.getElementById(`alert-${more.dataset.gotoAlert}`);
      if (entry) {
        entry.scrollIntoView({ behavior: "smooth", block: "center" });
        entry.focus({ preventScroll: true });
        entry.classList.remove("flash");
        void entry.offsetWidth;   // restart the animation
        entry.classList.add("flash");
      }
      return;
    }
    const btn = event.target.closest("[data-dismiss]");
    if (!btn) return;
    dismissed.add(Number(btn.dataset.dismiss));
    renderBanner();
  });

  // Desktop notifications: permission is asked from the button (browsers refuse unprompted asks),
  // and a notification is shown only while this tab is hidden; the banner covers the visible case.
  const notifyBtn = document.getElementById("notify-btn");
  const NOTIFY_KEY = "orpo-dash:notify-alerts";
  const canNotify = "Notification" in window;
  function notifyEnabled() { return canNotify && Notification.permission === "granted" && localStorage.getItem(NOTIFY_KEY) !== "off"; }
  function renderNotifyBtn() {
    notifyBtn.hidden = !canNotify;
    if (!canNotify) return;
    const permission = Notification.permission;
    notifyBtn.disabled = permission === "denied";
    notifyBtn.setAttribute("aria-pressed", String(notifyEnabled()));
    notifyBtn.textContent = permission === "denied" ? "Notifications blocked by the browser"
      : notifyEnabled() ? "Notifying when hidden ✓" : "Notify me of alerts";
    notifyBtn.title = "Show a desktop notification when an alert opens while this tab is in the background";
  }
  notifyBtn.addEventListener("click", async () => {
    if (Notification.permission === "default") {
      const answer = await Notification.requestPermission();
      if (answer === "granted") localStorage.setItem(NOTIFY_KEY, "on");
    } else if (Notification.permission === "granted") {
      localStorage.setItem(NOTIFY_KEY, notifyEnabled() ? "off" : "on");
    }
    renderNotifyBtn();
  });
  renderNotifyBtn();

  function notify(alert) {
    if (notified.has(alert.id)) return;
    notified.add(alert.id);
    if (!notifyEnabled() || !document.hidden) return;
    const note = new Notification(`${run ? run.name : `Run ${runId}`}: ${kindLabel(alert.kind)} (${alert.severity})`, {
      body: `${sentence(alert.message)}${alert.advice ? `\nWhat to try: ${alert.advice}` : ""}`,
      tag: `orpo-dash-alert-${alert.id}`,
    });
    note.onclick = () => { window.focus(); note.close(); };
  }

  /** Alerts from a live frame or a run update: newly open ones are notified and flash the banner. */
  function alertsArrived(list) {
    let changed = false;
    for (const alert of list) {
      const known = alerts.find((a) => a.id === alert.id);
      if (known && known.state === alert.state && known.severity === alert.severity &&
          known.onset_step === alert.onset_step && known.message === alert.message) {
        Object.assign(known, alert);   // only its latest step moved: nothing to redraw
        continue;
      }
      changed = true;
      if (upsertAlert(alert)) { dismissed.delete(alert.id); notify(alert); }
    }
    if (changed) renderAlerts();
  }

  // --- logs, samples, config, checkpoints -----------------------------------------------------
  const logTail = document.getElementById("log-tail");
  // Lines are added at most four times a second: a run logging every step would otherwise lay the
  // whole page out once per line (reading scrollHeight forces a layout).
  const LOG_FLUSH_MS = 250;
  let pendingLogs = [];
  function appendLogs(lines) {
    if (!lines.length) return;
    if (!pendingLogs.length) setTimeout(() => { const batch = pendingLogs; pendingLogs = []; drawLogs(batch); }, LOG_FLUSH_MS);
    pendingLogs.push(...lines);
  }
  function drawLogs(lines) {
    lines = lines.slice(-MAX_LOG_LINES);
    const atBottom = logTail.scrollHeight - logTail.scrollTop - logTail.clientHeight < 30;
    const frag = document.createDocumentFragment();
    for (const line of lines) {
      const span = document.createElement("span");
      span.className = `log-line log-${line.stream}`;
      const when = new Date(line.time * 1000).toLocaleTimeString(undefined, { hour12: false });
      span.textContent = `${when}  ${line.text}\n`;
      frag.appendChild(span);
    }
    logTail.appendChild(frag);
    while (logTail.childElementCount > MAX_LOG_LINES) logTail.firstElementChild.remove();
    if (atBottom) logTail.scrollTop = logTail.scrollHeight;
  }

  const samplesBox = document.getElementById("samples");
  function appendSamples(samples) {
    if (!samples.length) return;
    document.getElementById("samples-empty").hidden = true;
    for (const s of samples) {
      const el = document.createElement("article");
      el.className = "sample";
      el.innerHTML = `<div class="sample-step">step ${s.step}</div>
        <div class="sample-prompt">${escapeHtml(s.prompt)}</div>
        <div class="sample-completion">${escapeHtml(s.completion)}</div>`;
      samplesBox.prepend(el);              // newest first
    }
    while (samplesBox.childElementCount > 60) samplesBox.lastElementChild.remove();
  }

  function renderConfig(config) {
    const tables = [];
    for (const [section, names] of configGroups) {
      const rows = [`<tr class="kv-section"><th colspan="2">${escapeHtml(section)}</th></tr>`];
      for (const name of names) {
        const value = config[name];
        const text = value === null || value === undefined ? "—" : typeof value === "number" ? fmtExact(value)
          : typeof value === "object" ? JSON.stringify(value) : String(value);
        rows.push(`<tr><th scope="row">${escapeHtml(name === "beta" ? "beta (λ)" : name)}</th><td><code>${escapeHtml(text)}</code></td></tr>`);
      }
      tables.push(`<table class="kv-table">${rows.join("")}</table>`);
    }
    document.getElementById("config-tables").innerHTML = tables.join("");
  }

  // Checkpoint folders come with every run update; their files are listed (and downloaded) through
  // /api/runs/{id}/files, which serves nothing outside the run's output folder.
  let checkpointKey = null;
  function renderCheckpoints(paths) {
    const key = `${paths.join("|")}|${run ? run.status : ""}`;
    if (key === checkpointKey) return;
    checkpointKey = key;
    document.getElementById("checkpoints-count").textContent = paths.length;
    document.getElementById("checkpoints-empty").hidden = paths.length > 0;
    if (!paths.length) { document.getElementById("checkpoints").innerHTML = ""; return; }
    api("GET", `/api/runs/${runId}/files`).then((listing) => {
      if (key === checkpointKey) drawCheckpoints(paths, listing.files);
    }).catch((err) => toast(`Could not list the checkpoint files: ${err.message}`, "error"));
  }

  function drawCheckpoints(paths, files) {
    const fileUrl = (path) => `/api/runs/${runId}/files/${path.split("/").map(encodeURIComponent).join("/")}`;
    const items = paths.slice().reverse().map((full) => {           // newest first
      const folder = full.replace(/\/+$/, "").split("/").pop();
      const inside = files.filter((f) => f.path.startsWith(`${folder}/`));
      const total = inside.reduce((n, f) => n + f.size, 0);
      const step = folder.replace(/^checkpoint-/, "");
      const rows = inside.map((f) => `<li><a href="${escapeHtml(fileUrl(f.path))}" download data-file="${escapeHtml(f.path)}">${escapeHtml(f.path.slice(folder.length + 1))}</a>
        <span class="muted small">${fmtBytes(f.size)}</span></li>`).join("");
      return `<li class="checkpoint" data-checkpoint="${escapeHtml(folder)}">
        <details>
          <summary><strong>${escapeHtml(folder)}</strong>
            <span class="muted small">step ${escapeHtml(step)} · ${inside.length} file${inside.length === 1 ? "" : "s"} · ${fmtBytes(total)}</span></summary>
          <ul class="checkpoint-files">${rows || '<li class="muted small">No files.</li>'}</ul>
        </details>
        <button type="button" class="btn btn-small copy-path" data-path="${escapeHtml(full)}" aria-label="Copy the path of ${escapeHtml(folder)}">Copy path</button>
      </li>`;
    });
    document.getElementById("checkpoints").innerHTML = items.join("");
    const first = document.querySelector("#checkpoints details");
    if (first) first.open = true;                                 // the latest checkpoint's files at a glance
  }
  document.getElementById("delete-checkpoints-btn").addEventListener("click", async () => {
    const count = (run.checkpoints || []).length;
    const ok = await confirmAction("Delete this run's checkpoints?",
      `${count} checkpoint folder${count === 1 ? "" : "s"} (${fmtBytes(run.checkpoint_bytes || 0)}) will be deleted from disk. ` +
      "The run, its metrics, logs and samples stay.", "Delete checkpoints");
    if (!ok) return;
    try {
      const result = await api("DELETE", `/api/runs/${runId}/checkpoints`);
      toast(`Deleted ${result.deleted} checkpoint${result.deleted === 1 ? "" : "s"}, freed ${fmtBytes(result.freed_bytes)}.`);
      renderRun(await api("GET", `/api/runs/${runId}`));
    } catch (err) { toast(`Could not delete the checkpoints: ${err.message}`, "error"); }
  });
  document.getElementById("checkpoints").addEventListener("click", (event) => {
    const btn = event.target.closest(".copy-path");
    if (btn && navigator.clipboard) navigator.clipboard.writeText(btn.dataset.path).then(() => toast("Path copied."));
  });

  // --- live -----------------------------------------------------------------------------------
  const liveState = document.getElementById("live-state");
  const STATE_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", finished: "run finished", closed: "offline" };
  function setLiveState(state) {
    if (state === "live" && run && isTerminal(run.status)) state = "finished";
    liveState.dataset.state = state;
    liveState.textContent = STATE_TEXT[state] || state;
  }

  function onMessage(message) {
    switch (message.type) {
      case "points": addPoints(message.points); break;
      case "run": renderRun(message.run); break;
      case "alert": alertsArrived([message.alert]); break;
      case "logs": appendLogs(message.lines); break;
      case "samples": appendSamples(message.samples); break;
      default: break;
    }
  }

  async function start() {
    try {
      const [first, metrics, logs, samples] = await Promise.all([
        api("GET", `/api/runs/${runId}`),
        api("GET", `/api/runs/${runId}/metrics?max_points=${MAX_POINTS}`),
        api("GET", `/api/runs/${runId}/logs?tail=200`),
        api("GET", `/api/runs/${runId}/samples`),
      ]);
      renderRun(first);
      renderConfig(first.config || {});
      for (const alert of first.alerts || []) { upsertAlert(alert); notified.add(alert.id); }
      renderAlerts();
      downsampled = !!metrics.downsampled;
      addSeries(metrics.series);
      drawLogs(logs);
      appendSamples(samples);
    } catch (err) {
      toast(`Could not load the run: ${err.message}`, "error");
    }
    redrawAll();
    // Subscribe from one step before the last one drawn: an eval point logged for that same
    // step after our HTTP read still arrives, and the Series drops the repeated train points.
    socket = new RunSocket(runId, { afterStep: () => Math.max(-1, maxStep - 1), onMessage, onState: setLiveState });
    if (run && isTerminal(run.status)) socket.finished = true;
  }

  start();
})();
