/* One sweep (/sweeps/{id}): its runs and their status, a parallel-coordinates chart of the swept fields
   against a metric, the runs' final and best eval metrics, mean ± std per setting, the best run by the
   metric the user picks, and Stop all. GET /api/sweeps/{id} is read again every few seconds while a run
   of the sweep is still queued or running (runs train in other processes; this page has no socket). */
"use strict";

(function () {
  const { api, escapeHtml, fmtNum, statusBadge, isTerminal, confirmAction, toast } = Dash;

  const REFRESH_MS = 3000;
  const page = document.getElementById("sweep-page");
  const sweepId = Number(page.dataset.sweepId);
  const select = document.getElementById("best-metric");
  const stopBtn = document.getElementById("stop-all-btn");
  const directions = JSON.parse(document.getElementById("metric-directions").textContent);
  const STATS = ["final", "best"];
  let sweep = null;
  let drawnChart = "";
  const drawnHtml = {};

  const baseName = (metric) => metric.replace(/^eval\//, "");
  const higherIsBetter = (metric) => directions.higher.includes(baseName(metric));
  const hasDirection = (metric) => higherIsBetter(metric) || directions.lower.includes(baseName(metric));
  const [statOf, metricOf] = [(choice) => choice.split(":")[0], (choice) => choice.slice(choice.indexOf(":") + 1)];
  const valueOf = (run, choice) => {
    const v = (run[statOf(choice)] || {})[metricOf(choice)];
    return typeof v === "number" && Number.isFinite(v) ? v : null;
  };
  const choiceLabel = (choice) => `${metricOf(choice)} (${statOf(choice)})`;
  const better = (metric, a, b) => (higherIsBetter(metric) ? a > b : a < b);

  /** The id of the best run by the chosen metric (ties: the earlier run), or null when no run has it. */
  function bestRun(choice) {
    let best = null;
    for (const run of sweep.runs) {
      const v = valueOf(run, choice);
      if (v !== null && (best === null || better(metricOf(choice), v, valueOf(best, choice)))) best = run;
    }
    return best;
  }

  function setHtml(id, html) {
    if (drawnHtml[id] === html) return;       // unchanged: keep the DOM (and a selection in it) as it is
    document.getElementById(id).innerHTML = html;
    drawnHtml[id] = html;
  }

  // --- header: what was swept, how far it got -------------------------------------------------------
  function renderHeader() {
    const axes = Object.entries(sweep.axes || {}).map(([f, text]) => `<span>${escapeHtml(f)}: <code>${escapeHtml(text)}</code></span>`);
    setHtml("sweep-meta", [
      ...axes,
      `<span>${sweep.mode === "random" ? "random sample" : "grid"}</span>`,
      `<span>${sweep.seeds} seed${sweep.seeds === 1 ? "" : "s"} per setting</span>`,
      `<span>${sweep.max_concurrent} at a time</span>`,
      sweep.stop_on_critical ? "<span>stops a run on a critical alert</span>" : "",
    ].join(""));
    const counts = Object.entries(sweep.status_counts || {}).filter(([, n]) => n > 0);
    setHtml("sweep-counts", counts.map(([status, n]) => `<span class="sweep-count" data-status-count="${escapeHtml(status)}">${n} ${statusBadge(status)}</span>`).join(""));
    const live = sweep.runs.some((r) => !isTerminal(r.status));
    const state = document.getElementById("live-state");
    state.dataset.state = live ? "live" : "finished";
    state.textContent = live ? "Updating every few seconds" : "All runs finished";
    // The API's rule: the member who started the sweep, or an admin.
    const why = Dash.caller.whyNotChange(sweep);
    stopBtn.disabled = !live || Boolean(why);
    stopBtn.title = why || (live ? "" : "Every run of this sweep has finished.");
  }

  function renderChoices() {
    if (select.options.length) return;
    const metrics = (sweep.metrics || []).filter(hasDirection);
    select.innerHTML = metrics.flatMap((m) => STATS.map((stat) => {
      const choice = `${stat}:${m}`;
      return `<option value="${escapeHtml(choice)}">${escapeHtml(m)}, ${stat} (${higherIsBetter(m) ? "highest" : "lowest"})</option>`;
    })).join("");
    const wanted = new URLSearchParams(location.search).get("metric");
    if (wanted && [...select.options].some((o) => o.value === wanted)) select.value = wanted;
  }

  function renderBest() {
    const choice = select.value;
    const best = choice ? bestRun(choice) : null;
    setHtml("best-line", best
      ? `<a href="/runs/${best.id}" id="best-run-link">${escapeHtml(shortName(best))}</a> <span class="muted">#${best.id}</span>: ` +
        `${escapeHtml(choiceLabel(choice))} <strong>${fmtNum(valueOf(best, choice))}</strong>`
      : `<span class="muted">No run has ${choice ? escapeHtml(choiceLabel(choice)) : "an eval metric"} yet.</span>`);
    document.getElementById("best-caveat").hidden = !((sweep.fields || []).includes("beta") && baseName(metricOf(choice || "")) === "loss");
    return best;
  }

  // --- parallel coordinates (static/js/parallel_coords.js) ------------------------------------------
  function renderChart(best) {
    const choice = select.value;
    document.getElementById("parcoords-metric").textContent = choice ? choiceLabel(choice) : "the metric";
    const div = document.getElementById("parcoords");
    const runs = sweep.runs.filter((r) => choice && valueOf(r, choice) !== null);
    const narrow = innerWidth < 700;
    const key = JSON.stringify([choice, runs.map((r) => [r.id, r.values, valueOf(r, choice)]), best && best.id, narrow]);
    if (key === drawnChart) return;
    drawnChart = key;
    const missing = sweep.runs.length - runs.length;
    const note = document.getElementById("parcoords-note");
    note.hidden = missing === 0;
    note.textContent = `${missing} run${missing === 1 ? " has" : "s have"} no ${choice ? choiceLabel(choice) : "metric"} yet ` +
      "(queued, still training, or stopped before its first eval): not drawn.";
    div.dataset.lineCount = String(runs.length);
    div.hidden = !runs.length;                  // an empty 380 px box said nothing the note does not
    if (!runs.length) { Plotly.purge(div); return; }
    const isLog = (f) => /^\s*log\b/i.test((sweep.axes || {})[f] || "");
    const dims = (sweep.fields || []).map((f) => ({ label: f, log: isLog(f), of: (r) => r.values[f] }));
    if (sweep.seeds > 1) dims.push({ label: "seed", log: false, of: (r) => r.seed });
    dims.push({ label: choiceLabel(choice), log: false, of: (r) => valueOf(r, choice) });
    // Each run's colour: where its metric lies between the worst and the best of the sweep.
    const scores = runs.map((r) => valueOf(r, choice));
    const lo = Math.min(...scores), hi = Math.max(...scores);
    const score = (v) => (hi === lo ? 0.5 : higherIsBetter(metricOf(choice)) ? (v - lo) / (hi - lo) : (hi - v) / (hi - lo));
    const lines = runs.map((r) => ({ id: r.id, name: shortName(r), values: dims.map((d) => d.of(r)),
      score: score(valueOf(r, choice)), highlight: Boolean(best && best.id === r.id) }));
    ParallelCoords.draw(div, dims.map(({ label, log }) => ({ label, log })), lines,
      { narrow, onClick: (id) => { location.href = `/runs/${id}`; } });
    div.dataset.dimensions = JSON.stringify(dims.map((d) => d.label));
  }

  // --- tables -------------------------------------------------------------------------------------------
  const shortName = (run) => {
    const prefix = `${sweep.name} · `;
    return run.name.startsWith(prefix) && run.name.length > prefix.length ? run.name.slice(prefix.length) : run.name;
  };

  function alertsCell(run) {
    const critical = run.critical_alerts || 0, warnings = Math.max(0, (run.alerts || 0) - critical);
    const parts = [];
    if (critical) parts.push(`<span class="badge alert-critical" data-alert-severity="critical">◆ ${critical} critical</span>`);
    if (warnings) parts.push(`<span class="badge alert-warning" data-alert-severity="warning">▲ ${warnings} warning</span>`);
    return parts.join(" ") || '<span class="muted">none</span>';
  }

  function renderRuns(best) {
    const fields = sweep.fields || [], metrics = sweep.metrics || [], choice = select.value;
    document.getElementById("runs-count").textContent = String(sweep.runs.length);
    const head = `<thead><tr><th scope="col" rowspan="2">Run</th><th scope="col" rowspan="2">Status</th>
        ${fields.map((f) => `<th scope="col" rowspan="2" class="num no-upper">${escapeHtml(f)}</th>`).join("")}
        <th scope="col" rowspan="2" class="num">Seed</th>
        ${metrics.map((m) => `<th scope="colgroup" colspan="2" class="no-upper">${escapeHtml(m)}</th>`).join("")}
        <th scope="col" rowspan="2">Alerts</th></tr>
      <tr>${metrics.map(() => STATS.map((s) => `<th scope="col" class="num">${s}</th>`).join("")).join("")}</tr></thead>`;
    const rows = sweep.runs.map((r) => {
      const isBest = best && best.id === r.id;
      return `<tr data-run-id="${r.id}" data-status="${escapeHtml(r.status)}"${isBest ? ' class="best-run"' : ""}>
        <th scope="row"><a href="/runs/${r.id}">${escapeHtml(shortName(r))}</a> <span class="muted small">#${r.id}</span>${isBest ? '<span class="best-badge">★ best</span>' : ""}</th>
        <td>${statusBadge(r.status)}</td>
        ${fields.map((f) => `<td class="num" data-field="${escapeHtml(f)}">${fmtNum(r.values[f])}</td>`).join("")}
        <td class="num" data-field="seed">${fmtNum(r.seed)}</td>
        ${metrics.map((m) => STATS.map((s) => {
          const v = valueOf(r, `${s}:${m}`);
          const chosen = isBest && choice === `${s}:${m}`;
          return `<td class="num${chosen ? " metric-best" : ""}" data-metric="${escapeHtml(`${s}:${m}`)}">${fmtNum(v)}</td>`;
        }).join("")).join("")}
        <td data-alerts="${r.alerts || 0}">${alertsCell(r)}</td></tr>`;
    }).join("");
    setHtml("sweep-runs", head + `<tbody>${rows}</tbody>`);
  }

  function renderSettings() {
    const fields = sweep.fields || [], metrics = sweep.metrics || [], settings = sweep.settings || [];
    const choice = select.value, metric = metricOf(choice || "");
    document.getElementById("settings-note").hidden = sweep.seeds > 1;
    let winner = null;
    for (const s of settings) {
      const v = (s.mean || {})[metric];
      if (typeof v === "number" && (winner === null || better(metric, v, winner.mean[metric]))) winner = s;
    }
    const cell = (s, m) => {
      const mean = (s.mean || {})[m], std = (s.std || {})[m];
      if (typeof mean !== "number") return '<span class="muted">—</span>';
      return fmtNum(mean) + (s.n > 1 && typeof std === "number" ? ` <span class="pm">± ${fmtNum(std, 2)}</span>` : "");
    };
    const head = `<thead><tr>${fields.map((f) => `<th scope="col" class="num no-upper">${escapeHtml(f)}</th>`).join("")}
      <th scope="col" class="num">Runs</th>${metrics.map((m) => `<th scope="col" class="num no-upper">${escapeHtml(m)}</th>`).join("")}</tr></thead>`;
    const rows = settings.map((s, i) => `<tr data-setting="${i}"${s === winner ? ' class="best-run"' : ""}>
      ${fields.map((f, j) => `<${j ? "td" : 'th scope="row"'} class="num" data-field="${escapeHtml(f)}">${fmtNum(s.values[f])}${j === 0 && s === winner ? '<span class="best-badge">★ best</span>' : ""}</${j ? "td" : "th"}>`).join("")}
      <td class="num" data-n="${s.n}">${s.n}</td>
      ${metrics.map((m) => `<td class="num${s === winner && m === metric ? " metric-best" : ""}" data-metric="${escapeHtml(m)}">${cell(s, m)}</td>`).join("")}</tr>`).join("");
    setHtml("sweep-settings", head + `<tbody>${rows}</tbody>`);
  }

  function render() {
    renderHeader();
    renderChoices();
    const best = renderBest();
    renderRuns(best);
    renderSettings();
    renderChart(best);
  }

  // --- live: read the sweep again while it has unfinished runs --------------------------------------------
  let timer = null;
  let failing = false;                  // one toast per outage, not one every 3 s
  async function load() {
    clearTimeout(timer);
    try {
      sweep = await api("GET", `/api/sweeps/${sweepId}`);
      failing = false;
      render();
    } catch (err) {
      if (!failing) toast(`Could not load the sweep: ${err.message}`, "error");
      failing = true;
    }
    const unfinished = !sweep || sweep.runs.some((r) => !isTerminal(r.status));
    if (unfinished) timer = setTimeout(() => { if (document.visibilityState === "visible") load(); else timer = null; }, REFRESH_MS);
  }
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible" && timer === null) load(); });

  select.addEventListener("change", () => {
    const url = new URL(location.href);
    url.searchParams.set("metric", select.value);
    history.replaceState(null, "", url);
    render();
  });
  addEventListener("resize", Dash.debounce(() => { if (sweep) renderChart(bestRun(select.value)); }, 200));

  stopBtn.addEventListener("click", async () => {
    const open = sweep ? sweep.runs.filter((r) => !isTerminal(r.status)).length : 0;
    const ok = await confirmAction("Stop the whole sweep?",
      `${open} run${open === 1 ? "" : "s"} of this sweep ${open === 1 ? "is" : "are"} not finished: queued runs will not start and running ` +
      "runs stop at their next step. Finished runs keep their results.", "Stop all");
    if (!ok) return;
    stopBtn.disabled = true;
    try {
      sweep = await api("POST", `/api/sweeps/${sweepId}/stop`);
      render();
      toast(`Stop requested for ${open} run${open === 1 ? "" : "s"}.`);
    } catch (err) {
      toast(`Could not stop the sweep: ${err.message}`, "error");
    }
    load();
  });

  load();
})();
