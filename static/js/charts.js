/* Live Plotly charts shared by the run page and the compare page: metric series stores,
   x-axis mapping (step / epoch / time), EMA smoothing, and ChartPanel, which draws a set of
   lines into one div and grows them with Plotly.extendTraces. Exposes `window.Charts`. */
"use strict";

(function () {
  // Okabe & Ito (2008), "Color Universal Design": every pair stays distinguishable under protanopia,
  // deuteranopia and tritanopia (tests/pages/test_accessibility.py simulates them, Machado et al. 2009,
  // and asserts CIE76 ΔE >= 15). Colour is never the only cue: eval lines are dashed, legends name runs.
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"];
  const EVAL_PREFIX = "eval/";
  // Raw values in hover text: enough digits that two neighbouring steps do not read the same.
  const HOVER_FORMAT = ".5~g";

  /** One metric of one run, kept sorted by step; at most one point per step. */
  class Series {
    constructor() { this.step = []; this.value = []; this.time = []; this.reordered = false; }
    get length() { return this.step.length; }
    get lastStep() { return this.step.length ? this.step[this.step.length - 1] : -1; }
    add(step, value, time) {
      const v = value === null ? NaN : value;
      if (step > this.lastStep) {
        this.step.push(step); this.value.push(v); this.time.push(time);
        return true;
      }
      const i = lowerBound(this.step, step);
      if (this.step[i] === step) return false;           // already drawn: no repeats
      this.step.splice(i, 0, step); this.value.splice(i, 0, v); this.time.splice(i, 0, time);
      this.reordered = true;                             // appended out of order: needs a full redraw
      return true;
    }
    /** Replace everything in [minStep, maxStep] with `data` ({step, value, time}), e.g. full resolution. */
    replaceRange(minStep, maxStep, data) {
      const lo = lowerBound(this.step, minStep), hi = lowerBound(this.step, maxStep + 1);
      const n = hi - lo;
      this.step.splice(lo, n, ...data.step);
      this.value.splice(lo, n, ...data.value.map((v) => (v === null ? NaN : v)));
      this.time.splice(lo, n, ...data.time);
      this.reordered = true;
    }
  }

  function lowerBound(sorted, target) {
    let lo = 0, hi = sorted.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (sorted[mid] < target) lo = mid + 1; else hi = mid; }
    return lo;
  }

  /** Maps a run's steps onto the chosen x axis, using its `epoch` series and point times. */
  class Timeline {
    constructor(series) { this.series = series; }  // (name) => Series | undefined
    epochAt(step) {
      const epoch = this.series("epoch");
      if (!epoch || !epoch.length) return null;
      const i = lowerBound(epoch.step, step);
      if (epoch.step[i] === step) return epoch.value[i];
      if (i === 0) return epoch.step[0] ? epoch.value[0] * step / epoch.step[0] : epoch.value[0];
      if (i >= epoch.length) {                        // beyond the last logged epoch: extrapolate
        const s = epoch.step[epoch.length - 1];
        return s ? epoch.value[epoch.length - 1] * step / s : null;
      }
      const s0 = epoch.step[i - 1], s1 = epoch.step[i], e0 = epoch.value[i - 1], e1 = epoch.value[i];
      return e0 + (e1 - e0) * (step - s0) / (s1 - s0);
    }
    startTime() {
      const loss = this.series("loss");
      return loss && loss.length ? loss.time[0] : null;
    }
    timeAt(step) {
      const loss = this.series("loss");
      if (!loss || !loss.length) return null;
      return loss.time[Math.min(lowerBound(loss.step, step), loss.length - 1)];
    }
    x(mode, step, time) {
      if (mode === "epoch") return this.epochAt(step);
      if (mode === "time") return new Date(time * 1000);
      if (mode === "elapsed") { const t0 = this.startTime(); return t0 === null ? null : (time - t0) / 60; }
      return step;
    }
  }

  const AXIS_TITLES = { step: "step", epoch: "epoch", time: "wall time", elapsed: "minutes since start" };

  /** Exponential moving average, debiased like TensorBoard so the start is not pulled to 0. */
  class Ema {
    constructor(weight) { this.weight = weight; this.last = 0; this.norm = 0; }
    next(value) {
      if (!Number.isFinite(value)) return null;
      this.last = this.last * this.weight + (1 - this.weight) * value;
      this.norm = this.norm * this.weight + (1 - this.weight);
      // 12 significant digits: a constant series (a flat learning rate) must stay exactly flat, or
      // the axis autoranges onto float round-off and draws noise as a cliff.
      return Number((this.last / this.norm).toPrecision(12));
    }
  }

  /**
   * Paces every chart redraw of the page together. Each round draws all charts with new data in one
   * animation frame, and the next round waits at least four times as long as this one took (and
   * 250 ms): a fast run streaming points, or a slow machine, then spends at most about a fifth of the
   * page's main thread on charts. Drawing on every frame saturated it, and a saturated page stops
   * answering clicks and scrolling (seen with a tiny model on two busy cores).
   */
  const Redraws = {
    MIN_GAP_MS: 250,
    // A starved page's rounds look slow because the machine is busy, not because drawing is: never
    // leave the charts more than this far behind.
    MAX_GAP_MS: 2000,
    dirty: new Set(), timer: null, frame: null, lastEnd: -Infinity, lastCost: 0,
    request(panel) {
      this.dirty.add(panel);
      if (this.timer || this.frame) return;
      const wait = this.lastEnd + Math.min(this.MAX_GAP_MS, Math.max(this.MIN_GAP_MS, 4 * this.lastCost)) - performance.now();
      const draw = () => { this.timer = null; this.frame = requestAnimationFrame(() => this.round()); };
      if (wait > 0) this.timer = setTimeout(draw, wait); else draw();
    },
    cancel(panel) { this.dirty.delete(panel); },
    round() {
      this.frame = null;
      const start = performance.now();
      const panels = [...this.dirty];
      this.dirty.clear();
      for (const panel of panels) panel.flush();
      this.lastEnd = performance.now();
      this.lastCost = this.lastEnd - start;
    },
  };

  /**
   * One Plotly chart holding several lines. A line = {key, label, metric (its base name), series,
   * timeline, color, dashed (eval), train, axis: "y"|"y2"}. Each line owns two traces: the raw curve
   * (faded when smoothing is on) and its EMA. `options` is shared by every panel of a page:
   * {smoothing: 0..0.99, xMode, logY}. `axes` maps a metric to {title, no_log} (server/charts.py):
   * an axis with a metric that has a `no_log` reason stays linear when log scale is on, and the
   * card's .log-note says why, instead of a log axis dropping every value <= 0 (a blank chart).
   */
  class ChartPanel {
    constructor(div, { options, yTitle = "", y2Title = "", onZoom = null, axes = {} }) {
      this.div = div;
      this.options = options;
      this.yTitle = yTitle;
      this.y2Title = y2Title;
      this.onZoom = onZoom;
      this.axes = axes;
      this.logNote = div.closest(".chart-card") ? div.closest(".chart-card").querySelector(".log-note") : null;
      this.lines = [];
      this.markers = [];
      this.pending = new Set();
      this.drawn = false;
      this.ignoreRelayout = false;
      this.logAxes = new Set();     // the y axes drawn on a log scale by the last full render
      this.fixedValue = {};         // axis -> the one value it framed (its range is not automatic)
    }
    line(key) { return this.lines.find((l) => l.key === key); }
    addLine(line) {
      this.lines.push(Object.assign({ drawnCount: 0, ema: null, axis: "y", metric: line.key }, line));
      this.scheduleFull();
    }
    setMarkers(markers) { this.markers = markers; this.scheduleFull(); }

    /** New points arrived in `key`'s series: extend the traces on a coming animation frame. */
    grew(key) {
      this.pending.add(key);
      this.schedule();
    }
    scheduleFull() { this.needsFull = true; this.schedule(); }
    /** Redraw everything now; resolves once Plotly has drawn it. */
    renderNow() {
      Redraws.cancel(this);
      return Promise.resolve(this.render());
    }
    schedule() { Redraws.request(this); }
    /** Whether the points since the last draw need a full redraw rather than extendTraces: a line
     *  reaching its second point drops its markers, a value <= 0 cannot sit on a log axis, and an
     *  axis framing a single value needs a new range for any other value. */
    needsRedraw() {
      if (this.needsFull || !this.drawn) return true;
      for (const line of this.lines) {
        const s = line.series;
        if (s.reordered) return true;
        if (!this.pending.has(line.key) || line.drawnCount >= s.length) continue;
        if (line.drawnCount < 2 && s.length >= 2) return true;
        const log = this.logAxes.has(line.axis) && !this.axes[line.metric], fixed = this.fixedValue[line.axis];
        for (let i = line.drawnCount; i < s.length; i++) {
          const v = s.value[i];
          if ((log && v <= 0) || (fixed !== undefined && Number.isFinite(v) && v !== fixed)) return true;
        }
      }
      return false;
    }
    flush() {
      if (this.needsRedraw()) { this.render(); return; }
      const update = { x: [], y: [] }, indices = [];
      this.lines.forEach((line, i) => {
        if (!this.pending.has(line.key) || line.drawnCount >= line.series.length) return;
        const { xs, raw, smooth } = this.points(line, line.drawnCount);
        line.drawnCount = line.series.length;
        update.x.push(xs); update.y.push(raw); indices.push(2 * i);
        if (this.smoothed(line)) { update.x.push(xs); update.y.push(smooth); indices.push(2 * i + 1); }
      });
      this.pending.clear();
      if (indices.length) Plotly.extendTraces(this.div, update, indices);
      this.updateCount();
    }
    smoothed(line) { return this.options.smoothing > 0 && !line.dashed; }
    points(line, from) {
      const s = line.series, mode = this.options.xMode;
      if (from === 0) line.ema = new Ema(this.options.smoothing);
      const xs = [], raw = [], smooth = [];
      for (let i = from; i < s.length; i++) {
        xs.push(line.timeline.x(mode, s.step[i], s.time[i]));
        const v = Number.isFinite(s.value[i]) ? s.value[i] : null;
        raw.push(v);
        smooth.push(v === null ? null : line.ema.next(v));
      }
      return { xs, raw, smooth };
    }
    traces() {
      const traces = [];
      for (const line of this.lines) {
        const { xs, raw, smooth } = this.points(line, 0);
        line.drawnCount = line.series.length;
        line.series.reordered = false;
        const smoothed = this.smoothed(line);
        const common = { type: "scatter", x: xs, legendgroup: line.key, yaxis: line.axis };
        const dash = line.dashed ? "dash" : "solid";
        // A line needs two points: until then (the first minute of a run) the point is a marker.
        const few = line.series.length < 2;
        // Hover names both values when smoothing is on: the EMA is not what the run logged.
        const rawName = smoothed ? `${line.label} (raw)` : line.label;
        traces.push(Object.assign({}, common, {
          y: raw, name: line.label, mode: line.dashed || few ? "lines+markers" : "lines",
          showlegend: !smoothed, opacity: smoothed ? 0.25 : 1,
          line: { color: line.color, width: smoothed ? 1 : 1.8, dash }, marker: { size: few ? 8 : 5 },
          hovertemplate: `${rawName}: %{y:${HOVER_FORMAT}}<extra></extra>`,
          meta: { role: "raw", key: line.key, train: !!line.train },
        }));
        traces.push(Object.assign({}, common, {
          y: smoothed ? smooth : [], x: smoothed ? xs : [], name: line.label, mode: few ? "lines+markers" : "lines",
          visible: smoothed, showlegend: smoothed, line: { color: line.color, width: 2, dash }, marker: { size: 8 },
          hovertemplate: `${line.label} (smoothed): %{y:${HOVER_FORMAT}}<extra></extra>`,
          meta: { role: "smooth", key: line.key, train: !!line.train },
        }));
      }
      return traces;
    }
    /** Why `axis` cannot be drawn on a log scale ("" when it can): a metric on it that takes values
     *  <= 0 by definition (said up front, so the scale does not flip when the first one arrives), or
     *  one the server does not describe with a value <= 0 drawn. A described positive metric stays
     *  log: its rare 0 (a cosine schedule's last learning rate) is the only point left out. */
    whyNoLog(axis) {
      const lines = this.lines.filter((l) => l.axis === axis);
      for (const line of lines) {
        const known = this.axes[line.metric];
        if (known && known.no_log) return `${line.metric} ${known.no_log}`;
      }
      for (const line of lines) {
        if (!this.axes[line.metric] && line.series.value.some((v) => v <= 0)) return `${line.metric} has values ≤ 0`;
      }
      return "";
    }
    /** The y axes' scales, and the card's note saying why log scale is off where it is. */
    scales(hasY2) {
      const o = this.options, axes = hasY2 ? ["y", "y2"] : ["y"];
      const why = Object.fromEntries(axes.map((a) => [a, o.logY ? this.whyNoLog(a) : ""]));
      // Which axis a reason is about, when the other one did go log.
      const side = { y: hasY2 && !why.y2 ? "left axis on a " : "", y2: why.y ? "" : "right axis on a " };
      const reasons = [...new Set(axes.filter((a) => why[a]).map((a) => `${side[a]}linear scale: ${why[a]}`))];
      const type = {};
      for (const a of axes) type[a] = o.logY && !why[a] ? "log" : "linear";
      this.logAxes = new Set(axes.filter((a) => type[a] === "log"));
      if (this.logNote) {
        this.logNote.hidden = !reasons.length;
        this.logNote.textContent = reasons.join("; ");
        this.logNote.title = reasons.length ? "A log scale cannot show values ≤ 0, so this chart stays linear." : "";
      }
      this.div.dataset.yScale = type.y;
      if (hasY2) this.div.dataset.y2Scale = type.y2; else delete this.div.dataset.y2Scale;
      return type;
    }
    layout() {
      const o = this.options;
      const hasY2 = this.lines.some((l) => l.axis === "y2");
      const type = this.scales(hasY2);
      const shapes = [], annotations = [];
      for (const m of this.markers) {
        const x = m.timeline.x(o.xMode, m.step, m.timeline.timeAt(m.step));
        if (x === null || x === undefined) continue;
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1,
          line: { color: m.color, width: 1.5, dash: m.dash || "dot" }, name: `alert-${m.alertId ?? m.step}` });
        annotations.push({ x, xref: "x", y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
          text: `${m.icon || "▲"} ${m.label}`, font: { size: 10, color: m.color } });
      }
      const empty = !this.lines.some((l) => l.series.length);
      if (empty) {
        annotations.push({ text: this.emptyText || "Waiting for data…", xref: "paper", yref: "paper", x: 0.5, y: 0.5,
          showarrow: false, font: { size: 13, color: "#6b7280" } });
      }
      const layout = {
        uirevision: `${o.xMode}|${o.logY}`,
        margin: { l: 56, r: hasY2 ? 56 : 16, t: 24, b: 36 },
        height: 300,
        font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2937" },
        paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#ffffff",
        hovermode: "x unified",
        showlegend: true,
        legend: { orientation: "h", x: 0, y: -0.14, yanchor: "top", font: { size: 11 } },
        xaxis: { title: { text: AXIS_TITLES[o.xMode], standoff: 4, font: { size: 11, color: "#6b7280" } },
          type: o.xMode === "time" ? "date" : "linear", gridcolor: "#eef0f3", zeroline: false, automargin: true },
        // No fixed tickformat: Plotly's own picks as many digits as the tick spacing needs, so ticks
        // never repeat (".4~g" printed "14.9" five times on a loss that moved in the fourth digit).
        yaxis: { title: { text: this.yTitle, font: { size: 11, color: "#6b7280" } }, type: type.y, gridcolor: "#eef0f3",
          zeroline: false, automargin: true, exponentformat: "e" },
        shapes, annotations,
      };
      if (empty) {                       // no made-up axes around an empty chart
        layout.xaxis.visible = false;
        layout.yaxis.visible = false;
      }
      if (hasY2) {
        layout.yaxis2 = { title: { text: this.y2Title, font: { size: 11, color: "#6b7280" } }, type: type.y2,
          overlaying: "y", side: "right", showgrid: false, zeroline: false, automargin: true, tickmode: "auto",
          exponentformat: "e" };
      }
      this.fixedValue = {};
      for (const [axis, key] of [["y", "yaxis"], ["y2", "yaxis2"]]) {
        if (!layout[key]) continue;
        const { min, max } = this.extent(axis, type[axis] === "log");
        // A log axis's own labels name only the mantissa between decades ("2 … 9, 0.1, 2 …"), which
        // repeat: spell each value out, in exponent form for tiny ones (learning rates).
        if (type[axis] === "log") {
          layout[key].tickformat = Math.max(Math.abs(min), Math.abs(max)) < 1e-3 ? "~e" : "~g";
          // Over a decade or more, label 1, 2 and 5 of each decade only: 2…9 spelled out overlap.
          if (max / min >= 10) layout[key].dtick = "D2";
        }
        // One value (a first point, a constant learning rate): Plotly's autorange spans float
        // round-off and labels ticks 3.3429749576, 3.3429749599, ...; frame the value by ±10% instead.
        // The right axis puts its value higher up, so two first points do not hide each other.
        if (min === max) {
          this.fixedValue[axis] = min;
          const [below, above] = axis === "y2" ? [0.2, 0.1] : [0.1, 0.1];
          const [lo, hi] = type[axis] === "log" ? [Math.log10(min), Math.log10(min)] : [min, min];
          const span = type[axis] === "log" ? 0.5 : min === 0 ? 10 : Math.abs(min);
          layout[key].autorange = false;
          layout[key].range = [lo - below * span, hi + above * span];
        }
      }
      return layout;
    }
    /** The smallest and largest finite value drawn on one y axis (both NaN when there is none);
     *  on a log axis, of the positive values only (the others are not drawn). */
    extent(axis, log) {
      let min = Infinity, max = -Infinity;
      for (const line of this.lines) {
        if (line.axis !== axis) continue;
        for (const v of line.series.value) {
          if (!Number.isFinite(v) || (log && v <= 0)) continue;
          if (v < min) min = v;
          if (v > max) max = v;
        }
      }
      return min <= max ? { min, max } : { min: NaN, max: NaN };
    }
    render() {
      this.needsFull = false;
      this.pending.clear();
      const config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
      this.ignoreRelayout = true;
      const done = Plotly.react(this.div, this.traces(), this.layout(), config);
      Promise.resolve(done).finally(() => { this.ignoreRelayout = false; });
      if (!this.drawn) {
        this.drawn = true;
        this.div.on("plotly_relayout", (event) => this.relayout(event));
      }
      this.updateCount();
      return done;
    }
    relayout(event) {
      if (this.ignoreRelayout || !this.onZoom) return;
      if (event["xaxis.autorange"]) { this.onZoom(this, null); return; }
      const x0 = event["xaxis.range[0]"] ?? (event["xaxis.range"] || [])[0];
      const x1 = event["xaxis.range[1]"] ?? (event["xaxis.range"] || [])[1];
      if (x0 === undefined || x1 === undefined) return;
      this.onZoom(this, this.stepRange(x0, x1));
    }
    /** The steps to fetch for the view [x0, x1]: every step in it, from the drawn point just left
     *  of the view to the one just right of it (downsampled data may have no point at the edges). */
    stepRange(x0, x1) {
      const mode = this.options.xMode;
      const num = (x) => (mode === "time" ? new Date(x).getTime() : Number(x));
      const lo = num(x0), hi = num(x1);
      let min = Infinity, max = -Infinity, left = -Infinity, right = Infinity;
      for (const line of this.lines) {
        const s = line.series;
        for (let i = 0; i < s.length; i++) {
          const x = line.timeline.x(mode, s.step[i], s.time[i]);
          const v = mode === "time" ? x.getTime() : x;
          if (v < lo) left = Math.max(left, s.step[i]);
          else if (v > hi) right = Math.min(right, s.step[i]);
          else { min = Math.min(min, s.step[i]); max = Math.max(max, s.step[i]); }
        }
      }
      if (!Number.isFinite(min) && !(Number.isFinite(left) && Number.isFinite(right))) return null;
      return {
        min: Math.max(0, Number.isFinite(left) ? left : Math.floor(min)),
        max: Number.isFinite(right) ? right : Math.ceil(max),
      };
    }
    trainPointCount() {
      return this.lines.filter((l) => l.train).reduce((n, l) => n + l.drawnCount, 0);
    }
    updateCount() { this.div.dataset.pointCount = String(this.trainPointCount()); }
  }

  /** Metric name -> base name and whether it is an eval series. */
  function splitMetric(name) {
    return name.startsWith(EVAL_PREFIX) ? { base: name.slice(EVAL_PREFIX.length), isEval: true }
      : { base: name, isEval: false };
  }

  /** Chart options (smoothing, x axis, log scale) kept in localStorage under `key`, wired to the
   *  page's toolbar (#smoothing, #smoothing-value, #x-mode, #log-y); `redraw` runs on every change. */
  function chartOptions(key, redraw) {
    const options = Object.assign({ smoothing: 0.6, xMode: "step", logY: false },
      JSON.parse(localStorage.getItem(key) || "{}"));
    const smoothing = document.getElementById("smoothing");
    const smoothingValue = document.getElementById("smoothing-value");
    const xMode = document.getElementById("x-mode");
    const logY = document.getElementById("log-y");
    smoothing.value = options.smoothing;
    smoothingValue.textContent = Number(options.smoothing).toFixed(2);
    xMode.value = options.xMode;
    if (!xMode.value) xMode.value = options.xMode = "step";
    logY.checked = options.logY;
    logY.closest("label").title = "Charts of a metric that takes values ≤ 0 (log-probs, log odds ratio, margin, " +
      "accuracy) stay linear, with a note saying why.";
    function changed() { localStorage.setItem(key, JSON.stringify(options)); redraw(); }
    smoothing.addEventListener("input", () => {
      options.smoothing = Number(smoothing.value);
      smoothingValue.textContent = options.smoothing.toFixed(2);
      changed();
    });
    xMode.addEventListener("change", () => { options.xMode = xMode.value; changed(); });
    logY.addEventListener("change", () => { options.logY = logY.checked; changed(); });
    return options;
  }

  /** The server's metric axes ({metric: {title, no_log}}), from the page's #metric-axes JSON block. */
  function metricAxes() {
    const block = document.getElementById("metric-axes");
    return block ? JSON.parse(block.textContent) : {};
  }

  window.Charts = { PALETTE, EVAL_PREFIX, Series, Timeline, ChartPanel, Ema, splitMetric, lowerBound, chartOptions, metricAxes };
})();
