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

  // --- parallel coordinates: Plotly's parcoords trace (WebGL; the strict bundle draws it under our CSP) --
  // Okabe-Ito vermillion (worse) to blue (better): readable on white and apart under the common colour-vision
  // deficiencies; the best run alone is near-black. The metric's own axis says the same, so colour is never
  // the only cue. parcoords has no per-line width, hover or click: the table below opens the runs.
  const WORSE = "rgb(213,94,0)", BETTER = "rgb(0,114,178)", BEST = "rgb(17,24,39)";
  const OTHERS_UP_TO = 0.97;       // the other runs' colours stay below the best one's stop of the scale
  const COLORSCALE = [[0, WORSE], [OTHERS_UP_TO, BETTER], [0.985, BEST], [1, BEST]];
  const MAX_EXACT_TICKS = 6;

  /** One parcoords dimension: values on the axis (log10 for a log-range field: parcoords has no log axis),
   *  with tick labels that read as the real values: the swept values themselves when there are few, none
   *  closer than MIN_TICK_GAP of the axis to the next (their labels would overlap). `exact` false: Plotly's
   *  own round ticks (the metric, whose values may lie close together). */
  const MIN_TICK_GAP = 0.07;
  function dimension(label, log, realValues, exact) {
    const values = realValues.map((v) => (log ? Math.log10(v) : v));
    const lo = Math.min(...values), hi = Math.max(...values);
    const pad = hi > lo ? 0 : Math.abs(lo) * 0.5 || 1;     // one distinct value: an axis around it
    const dim = { label: log ? `${label} (log)` : label, values, range: [lo - pad, hi + pad] };
    const distinct = [...new Set(realValues)].sort((a, b) => a - b);
    const ticks = exact && distinct.length <= MAX_EXACT_TICKS ? distinct
      : log ? [0, 0.25, 0.5, 0.75, 1].map((p) => 10 ** (lo + p * (hi - lo))) : null;
    if (!ticks) return dim;
    const at = (t) => (log ? Math.log10(t) : t);
    const kept = [];
    for (const t of ticks) {
      if (!kept.length || (at(t) - at(kept[kept.length - 1])) / (hi - lo || 1) >= MIN_TICK_GAP) kept.push(t);
      else if (t === ticks[ticks.length - 1] && kept.length > 1) kept[kept.length - 1] = t;  // the top one wins
    }
    return Object.assign(dim, { tickvals: kept.map(at), ticktext: kept.map((t) => fmtNum(t, 3)) });
  }

  /** Axis names: level, centred on their axes, while they fit side by side; otherwise slanted (a phone, many
   *  swept fields), starting at their axes. And the room they need beside the outer axes (parcoords clips
   *  them at the chart's edge), with the first axis's tick labels on its left. Widths are estimates. */
  const LABEL_ANGLE = -25;
  function axisNames(labels, fontPx, chartWidth) {
    const width = (text) => text.length * fontPx * 0.55;
    const angled = labels.length > 1 && labels.reduce((sum, text) => sum + width(text), 0) > 0.8 * chartWidth;
    const first = width(labels[0]), last = width(labels[labels.length - 1]);
    const margin = angled
      ? { l: 44, r: Math.ceil(last * Math.cos(-LABEL_ANGLE * Math.PI / 180)) + 6,
          t: 34 + Math.ceil(Math.max(...labels.map(width)) * Math.sin(-LABEL_ANGLE * Math.PI / 180)), b: 16 }
      : { l: Math.max(44, Math.ceil(first / 2) + 6), r: Math.max(24, Math.ceil(last / 2) + 6), t: 48, b: 16 };
    return { angle: angled ? LABEL_ANGLE : 0, margin };
  }

  function renderChart(best) {
    const choice = select.value;
    document.getElementById("parcoords-metric").textContent = choice ? choiceLabel(choice) : "the metric";
    const div = document.getElementById("parcoords");
    const isLog = (f) => /^\s*log\b/i.test((sweep.axes || {})[f] || "");
    const drawable = (r) => (sweep.fields || []).every((f) => Number.isFinite(r.values[f]) && (!isLog(f) || r.values[f] > 0));
    // The best run last, so that it is drawn over the others.
    const runs = sweep.runs.filter((r) => choice && valueOf(r, choice) !== null && drawable(r))
      .sort((a, b) => Number(best !== null && a.id === best.id) - Number(best !== null && b.id === best.id));
    const narrow = innerWidth < 700;
    const key = JSON.stringify([choice, runs.map((r) => [r.id, r.values, valueOf(r, choice)]), best && best.id, innerWidth]);
    if (key === drawnChart) return;
    drawnChart = key;
    const missing = sweep.runs.length - runs.length;
    const note = document.getElementById("parcoords-note");
    note.hidden = missing === 0;
    note.textContent = `${missing} run${missing === 1 ? " has" : "s have"} no ${choice ? choiceLabel(choice) : "metric"} yet ` +
      "(queued, still training, or stopped before its first eval): not drawn.";
    div.dataset.lineCount = String(runs.length);
    div.hidden = !runs.length;                  // an empty 380 px box said nothing the note does not
    const legend = document.getElementById("parcoords-best");
    legend.hidden = !best || !runs.length;
    if (!runs.length) { Plotly.purge(div); return; }
    if (best) {
      legend.innerHTML = `The near-black line is the best run, <a href="/runs/${best.id}">${escapeHtml(shortName(best))}</a> ` +
        `<span class="muted">#${best.id}</span>: ${(sweep.fields || []).map((f) => `${escapeHtml(f)} ${fmtNum(best.values[f])}`).join(", ")}, ` +
        `${escapeHtml(choiceLabel(choice))} <strong>${fmtNum(valueOf(best, choice))}</strong>.`;
    }
    const dims = (sweep.fields || []).map((f) => ({ label: f, log: isLog(f), of: (r) => r.values[f] }));
    if (sweep.seeds > 1) dims.push({ label: "seed", log: false, of: (r) => r.seed });
    dims.push({ label: choiceLabel(choice), log: false, of: (r) => valueOf(r, choice) });
    // Each run's colour: where its metric lies between the worst and the best of the sweep.
    const scores = runs.map((r) => valueOf(r, choice));
    const lo = Math.min(...scores), hi = Math.max(...scores);
    const score = (v) => (hi === lo ? 0.5 : higherIsBetter(metricOf(choice)) ? (v - lo) / (hi - lo) : (hi - v) / (hi - lo));
    const colour = runs.map((r) => (best && r.id === best.id ? 1 : score(valueOf(r, choice)) * OTHERS_UP_TO));
    const metricDim = dims.length - 1;
    const dimensions = dims.map((d, i) => dimension(d.label, d.log, runs.map(d.of), i !== metricDim));
    // Ranges dragged on the axes stay while the page refreshes (parcoords writes them into the trace;
    // uirevision does not carry them over new data), until the metric changes.
    const drawn = div.data && div.data[0];
    if (drawn && drawn.meta && drawn.meta.choice === choice) {
      const dragged = new Map(drawn.dimensions.filter((d) => d.constraintrange).map((d) => [d.label, d.constraintrange]));
      for (const d of dimensions) if (dragged.has(d.label)) d.constraintrange = dragged.get(d.label);
    }
    const labelPx = narrow ? 10 : 12;
    const names = axisNames(dimensions.map((d) => d.label), labelPx, div.clientWidth);
    const trace = {
      type: "parcoords",
      dimensions,
      line: { color: colour, colorscale: COLORSCALE, cmin: 0, cmax: 1, showscale: false },
      labelfont: { size: labelPx, color: "#1f2937" },
      tickfont: { size: narrow ? 9 : 11, color: "#4b5563" },
      // The numbers at the axis ends would be log10 values on a log axis: hidden; the ticks read as real values.
      rangefont: { size: 1, color: "rgba(0,0,0,0)" },
      labelangle: names.angle,
      meta: { ids: runs.map((r) => r.id), best: best ? best.id : null, choice },
    };
    const layout = {
      margin: names.margin,
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2937" },
      paper_bgcolor: "rgba(0,0,0,0)",
    };
    Plotly.react(div, [trace], layout, { responsive: true, displaylogo: false, displayModeBar: false });
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
