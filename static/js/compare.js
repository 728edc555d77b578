/* Compare runs: every metric overlaid across runs (one colour per run, eval dashed), a summary
   of final/best values, and a config diff. Runs still training stream in over one socket each. */
"use strict";

(function () {
  const { api, escapeHtml, fmtNum, fmtExact, fmtDuration, runDuration, isTerminal, statusBadge, toast, RunSocket } = Dash;
  const { PALETTE, Series, Timeline, ChartPanel, Ema, splitMetric, chartOptions, metricAxes } = Charts;

  const root = document.getElementById("compare-page");
  const runIds = root.dataset.runIds.split(",").filter(Boolean).map(Number);
  const metrics = root.dataset.metrics.split(",");
  const configGroups = JSON.parse(document.getElementById("config-groups").textContent);
  const options = chartOptions("orpo-dash:compare-options", () => panels.forEach((p) => p.scheduleFull()));
  const directions = JSON.parse(document.getElementById("metric-directions").textContent);
  const LOWER_IS_BETTER = new Set(directions.lower);
  const HIGHER_IS_BETTER = new Set(directions.higher);
  // A train metric's value is its EMA (one batch is noise); its best skips the first steps, where the
  // EMA is still close to single batches.
  const SUMMARY_EMA = 0.95;
  const SUMMARY_WARMUP = 20;
  // Two runs' values of a metric are like with like only when these settings match: the data and the
  // lengths decide what is measured; the held-out split for eval metrics; λ weighs the total loss.
  const SAME_DATA = ["dataset", "max_length", "max_prompt_length", "prompt_loss"];
  const SAME_EVAL_DATA = ["eval_dataset", "eval_fraction"];
  const comparabilityFields = (metric) => {
    const { base, isEval } = splitMetric(metric);
    return [...SAME_DATA, ...(isEval ? SAME_EVAL_DATA : []), ...(base === "loss" ? ["beta"] : [])];
  };
  const PICKED_KEY = "orpo-dash:compare-hidden-metrics";
  let hiddenMetrics = new Set();
  try { hiddenMetrics = new Set(JSON.parse(localStorage.getItem(PICKED_KEY) || "[]")); } catch (err) { /* none hidden */ }
  const hasData = new Set();        // metrics some run has logged: only those get a chart

  const MAX_POINTS = 1000;          // per series on first draw; zooming fetches full resolution
  const runs = new Map();           // id -> {run, colour, store: Map(name -> Series), timeline, socket, downsampled}
  const axes = metricAxes();
  const panels = new Map();         // metric -> ChartPanel
  for (const metric of metrics) {
    const div = document.getElementById(`chart-${metric}`);
    panels.set(metric, new ChartPanel(div, {
      options, axes, yTitle: (axes[metric] || {}).title || metric, onZoom: (panel, range) => zoomed(metric, panel, range),
    }));
  }

  /** Zoomed into a chart: refetch that step range at full resolution for every run that was downsampled. */
  async function zoomed(metric, panel, range) {
    if (!range) return;
    const names = [metric, `eval/${metric}`].join(",");
    const wanted = [...runs].filter(([, e]) => e.downsampled);
    if (!wanted.length) return;
    try {
      await Promise.all(wanted.map(async ([id, e]) => {
        const data = await api("GET", `/api/runs/${id}/metrics?names=${encodeURIComponent(names)}` +
          `&min_step=${range.min}&max_step=${range.max}&max_points=${2 * MAX_POINTS}`);
        for (const [name, s] of Object.entries(data.series)) {
          if (e.store.has(name)) e.store.get(name).replaceRange(range.min, range.max, s);
        }
      }));
      await panel.renderNow();  // the marker below tells tests the zoomed data is drawn
      panel.div.dataset.zoomedRange = `${range.min}-${range.max}`;
    } catch (err) { toast(`Could not load full resolution: ${err.message}`, "error"); }
  }

  function entry(id) { return runs.get(id); }

  function ensureLine(id, name) {
    const { base, isEval } = splitMetric(name);
    const panel = panels.get(base);
    const key = `${id}:${name}`;
    if (!panel || panel.line(key)) return;
    const e = entry(id);
    panel.addLine({
      key, label: isEval ? `${e.run.name} (eval)` : e.run.name, metric: base, series: e.store.get(name), timeline: e.timeline,
      color: e.colour, dashed: isEval, train: !isEval,
    });
    hasData.add(base);                    // charts appear once some run has the metric (and it is picked)
    showCard(base);
  }

  function showCard(metric) {
    const card = document.getElementById(`card-${metric}`);
    const visible = hasData.has(metric) && !hiddenMetrics.has(metric);
    if (card.hidden === !visible) return;
    card.hidden = !visible;
    const panel = panels.get(metric);
    if (visible && panel.drawn) Plotly.Plots.resize(panel.div);
  }

  // The metric picker: which charts are drawn, remembered for the next comparison.
  for (const box of document.querySelectorAll("#metric-picker input[data-metric]")) {
    box.checked = !hiddenMetrics.has(box.dataset.metric);
    box.addEventListener("change", () => {
      if (box.checked) hiddenMetrics.delete(box.dataset.metric); else hiddenMetrics.add(box.dataset.metric);
      localStorage.setItem(PICKED_KEY, JSON.stringify([...hiddenMetrics]));
      showCard(box.dataset.metric);
    });
  }

  function addPoints(id, points) {
    const e = entry(id);
    for (const [step, name, value, time] of points) {
      let series = e.store.get(name);
      if (!series) { series = new Series(); e.store.set(name, series); ensureLine(id, name); }
      if (!series.add(step, value, time)) continue;
      const panel = panels.get(splitMetric(name).base);
      if (panel) panel.grew(`${id}:${name}`);
      if (step > e.maxStep) e.maxStep = step;
    }
    summarySoon();
  }

  // --- legend, summary, diff ------------------------------------------------------------------
  function renderLegend() {
    document.getElementById("run-legend").innerHTML = runIds.filter((id) => runs.has(id)).map((id) => {
      const { run, colour } = entry(id);
      return `<a href="/runs/${id}" data-run-id="${id}"><span class="swatch" style="background:${colour}"></span>${escapeHtml(run.name)}
        <span class="muted small">#${id}</span> ${statusBadge(run.status)}</a>`;
    }).join("");
  }

  /** The value a run ends on and the best it reached: eval points as they are (each one is a whole
   *  held-out pass); a train metric through an EMA, so neither is one lucky batch. */
  function finalAndBest(series, metric) {
    if (!series || !series.length) return { final: null, best: null };
    const { base, isEval } = splitMetric(metric);
    let values = series.value;
    let from = 0;
    if (!isEval) {
      const ema = new Ema(SUMMARY_EMA);
      values = Array.from(values, (v) => ema.next(v));
      from = values.length > SUMMARY_WARMUP ? SUMMARY_WARMUP : values.length;   // too short: no best claimed
    }
    const seen = values.slice(from).filter(Number.isFinite);
    const finite = values.filter(Number.isFinite);
    const final = finite.length ? finite[finite.length - 1] : null;
    let best = null;
    if (LOWER_IS_BETTER.has(base) && seen.length) best = Math.min(...seen);
    if (HIGHER_IS_BETTER.has(base) && seen.length) best = Math.max(...seen);
    return { final, best };
  }

  /** The settings that differ across the runs and make `metric` not like with like ([] when comparable). */
  function incomparableBecause(metric, ids) {
    return comparabilityFields(metric).filter((field) =>
      new Set(ids.map((id) => JSON.stringify((entry(id).run.config || {})[field] ?? null))).size > 1);
  }

  function renderSummary() {
    const ids = runIds.filter((id) => runs.has(id));
    const head = `<thead><tr><th scope="col">Metric</th>${ids.map((id) =>
      `<th scope="col" class="num no-upper"><span class="swatch" style="background:${entry(id).colour}"></span> ${escapeHtml(entry(id).run.name)}</th>`).join("")}</tr></thead>`;
    const rows = [];
    const info = (label, fn) => rows.push(`<tr><th scope="row">${label}</th>${ids.map((id) => `<td class="num">${fn(entry(id))}</td>`).join("")}</tr>`);
    info("Status", (e) => statusBadge(e.run.status));
    info("Steps", (e) => `${Math.max(e.run.last_step || 0, e.maxStep, 0)} / ${e.run.total_steps ?? "?"}`);
    info("Duration", (e) => fmtDuration(runDuration(e.run)));
    info("Open alerts", (e) => String((e.run.alerts || []).filter((a) => a.state !== "closed").length));
    // Eval metrics first: a held-out pass is what compares runs best.
    for (const metric of [...metrics.map((m) => `eval/${m}`), ...metrics]) {
      const cells = ids.map((id) => finalAndBest(entry(id).store.get(metric), metric));
      if (cells.every((c) => c.final === null)) continue;
      const base = splitMetric(metric).base;
      const finals = cells.map((c) => c.final).filter(Number.isFinite);
      const differ = incomparableBecause(metric, ids);
      let winner = null;
      if (!differ.length && finals.length > 1) {
        winner = LOWER_IS_BETTER.has(base) ? Math.min(...finals) : HIGHER_IS_BETTER.has(base) ? Math.max(...finals) : null;
      }
      const note = differ.length && (LOWER_IS_BETTER.has(base) || HIGHER_IS_BETTER.has(base))
        ? `<span class="muted not-comparable" title="These runs differ in ${escapeHtml(differ.join(", "))}, so their ${escapeHtml(metric)} measures different things.">not comparable: ${escapeHtml(differ.join(", "))} differ</span>` : "";
      rows.push(`<tr data-metric="${escapeHtml(metric)}" data-comparable="${differ.length ? "false" : "true"}"><th scope="row">${escapeHtml(metric)}${note}</th>${cells.map((c) => `
        <td class="num${winner !== null && c.final === winner ? " winner" : ""}">${fmtNum(c.final)}
          ${c.best !== null ? `<span class="muted small best">best ${fmtNum(c.best)}</span>` : ""}</td>`).join("")}</tr>`);
    }
    document.getElementById("summary-table").innerHTML = `${head}<tbody>${rows.join("")}</tbody>`;
  }
  let summaryTimer = null;
  function summarySoon() {
    if (summaryTimer) return;
    summaryTimer = setTimeout(() => { summaryTimer = null; renderSummary(); }, 1000);
  }

  const show = (v) => (v === null || v === undefined ? "—" : typeof v === "number" ? fmtExact(v)
    : typeof v === "object" ? JSON.stringify(v) : String(v));
  function renderDiff() {
    const ids = runIds.filter((id) => runs.has(id));
    const onlyDiff = document.getElementById("only-diff").checked;
    const head = `<thead><tr><th scope="col">Field</th>${ids.map((id) =>
      `<th scope="col" class="no-upper"><span class="swatch" style="background:${entry(id).colour}"></span> ${escapeHtml(entry(id).run.name)}</th>`).join("")}</tr></thead>`;
    const rows = [];
    let differing = 0;
    for (const [section, names] of configGroups) {
      const sectionRows = [];
      for (const name of names) {
        if (name === "output_dir") continue;          // always per-run: not a real difference
        const values = ids.map((id) => show((entry(id).run.config || {})[name]));
        const differs = new Set(values).size > 1;
        if (differs) differing += 1;
        if (onlyDiff && !differs) continue;
        sectionRows.push(`<tr class="diff-row ${differs ? "differs" : "same"}" data-field="${escapeHtml(name)}">
          <th scope="row">${escapeHtml(name === "beta" ? "beta (λ)" : name)}</th>${values.map((v) => `<td><code>${escapeHtml(v)}</code></td>`).join("")}</tr>`);
      }
      if (sectionRows.length) rows.push(`<tr class="kv-section"><th colspan="${ids.length + 1}">${escapeHtml(section)}</th></tr>`, ...sectionRows);
    }
    if (!rows.length) rows.push(`<tr><td colspan="${ids.length + 1}" class="muted">The configurations are identical.</td></tr>`);
    document.getElementById("diff-count").textContent = `${differing} differ`;
    document.getElementById("diff-table").innerHTML = `${head}<tbody>${rows.join("")}</tbody>`;
  }
  document.getElementById("only-diff").addEventListener("change", renderDiff);

  // --- load and follow ------------------------------------------------------------------------
  function onMessage(id, message) {
    const e = entry(id);
    if (message.type === "points") addPoints(id, message.points);
    else if (message.type === "run") {
      e.run = message.run;
      if (e.socket && isTerminal(e.run.status)) e.socket.finished = true;
      renderLegend();
      summarySoon();
    } else if (message.type === "alert") {
      const alerts = e.run.alerts || (e.run.alerts = []);
      const i = alerts.findIndex((a) => a.id === message.alert.id);
      if (i >= 0) alerts[i] = message.alert; else alerts.push(message.alert);
      summarySoon();
    }
  }

  async function start() {
    const names = ["epoch", ...metrics, ...metrics.map((m) => `eval/${m}`)].join(",");
    const loaded = await Promise.all(runIds.map(async (id, index) => {
      try {
        const [run, data] = await Promise.all([
          api("GET", `/api/runs/${id}`),
          api("GET", `/api/runs/${id}/metrics?names=${encodeURIComponent(names)}&max_points=${MAX_POINTS}`),
        ]);
        return { id, index, run, data };
      } catch (err) { toast(`Could not load run ${id}: ${err.message}`, "error"); return null; }
    }));
    for (const item of loaded.filter(Boolean)) {
      const store = new Map();
      runs.set(item.id, {
        run: item.run, colour: PALETTE[item.index % PALETTE.length], store, maxStep: -1, downsampled: !!item.data.downsampled,
        timeline: new Timeline((name) => store.get(name)), socket: null,
      });
    }
    renderLegend();
    renderDiff();
    for (const item of loaded.filter(Boolean)) {
      const points = [];
      for (const [name, s] of Object.entries(item.data.series)) {
        for (let i = 0; i < s.step.length; i++) points.push([s.step[i], name, s.value[i], s.time[i]]);
      }
      points.sort((a, b) => a[0] - b[0]);
      addPoints(item.id, points);
    }
    renderSummary();
    panels.forEach((p) => p.scheduleFull());
    for (const [id, e] of runs) {
      if (isTerminal(e.run.status)) continue;
      e.socket = new RunSocket(id, {
        afterStep: () => Math.max(-1, e.maxStep - 1), onMessage: (m) => onMessage(id, m), onState: liveState,
      });
    }
    if (![...runs.values()].some((e) => e.socket)) liveState("finished");
  }

  const live = document.getElementById("live-state");
  function liveState() {
    const sockets = [...runs.values()].filter((e) => e.socket && !e.socket.finished);
    const state = sockets.length ? "live" : "finished";
    live.dataset.state = state;
    live.textContent = sockets.length ? `live · ${sockets.length} training` : "all runs finished";
  }

  start();
})();
