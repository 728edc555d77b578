/* A parallel-coordinates chart drawn with Plotly's SVG scatter lines: one vertical axis per dimension,
   one polyline per item across them. Not Plotly's `parcoords` trace: that one draws with WebGL through
   regl, which compiles its shader calls with `new Function`, and the dashboard's Content-Security-Policy
   (script-src 'self', no 'unsafe-eval'; server/web_security.py) blocks that, so parcoords only shows
   "WebGL is not supported". Exposes `window.ParallelCoords`. */
"use strict";

(function () {
  const { fmtNum, escapeHtml } = Dash;
  // Okabe-Ito vermillion (worse) to blue (better): both readable on white and apart under the common
  // colour-vision deficiencies; the metric's own axis says the same again, so colour is never the only cue.
  const WORSE = [213, 94, 0];
  const BETTER = [0, 114, 178];
  const MAX_EXACT_TICKS = 6;
  const colour = (t) => `rgb(${WORSE.map((w, i) => Math.round(w + (BETTER[i] - w) * t)).join(",")})`;

  /** Where each value sits on its axis (0 = bottom, 1 = top), and the axis's tick labels. */
  function scale({ values, log }) {
    const f = log ? Math.log10 : (v) => v;
    const finite = values.filter((v) => typeof v === "number" && Number.isFinite(v) && (!log || v > 0));
    const lo = Math.min(...finite.map(f)), hi = Math.max(...finite.map(f));
    const span = hi - lo;
    const position = (v) => (typeof v !== "number" || !Number.isFinite(v) || (log && v <= 0) ? null
      : span ? (f(v) - lo) / span : 0.5);
    const distinct = [...new Set(finite)].sort((a, b) => a - b);
    const ticks = distinct.length <= MAX_EXACT_TICKS ? distinct
      : [0, 0.25, 0.5, 0.75, 1].map((p) => (log ? 10 ** (lo + p * span) : lo + p * span));
    return { position, ticks };
  }

  /** The ticks to label, bottom to top, none closer than MIN_TICK_GAP to the next (labels would overlap);
   *  the lowest and the highest are always labelled. */
  const MIN_TICK_GAP = 0.07;
  function spaced({ ticks, position }) {
    const placed = ticks.map((tick) => ({ tick, y: position(tick) })).filter((t) => t.y !== null).sort((a, b) => a.y - b.y);
    const kept = [];
    for (const t of placed) {
      if (!kept.length || t.y - kept[kept.length - 1].y >= MIN_TICK_GAP) kept.push(t);
      else if (t === placed[placed.length - 1] && kept.length > 1) kept[kept.length - 1] = t;  // the top one wins
    }
    return kept;
  }

  /**
   * Draws `lines` ({id, name, values: [one per dimension], score: 0 worse .. 1 better, highlight}) across
   * `dimensions` ({label, log}) into `div`; `onClick(id)` when a line is clicked. The traces keep
   * `meta: {id, values}` for whoever reads the chart back.
   */
  function draw(div, dimensions, lines, { narrow = false, onClick = null } = {}) {
    const scales = dimensions.map((d, i) => scale({ values: lines.map((l) => l.values[i]), log: d.log }));
    const x = dimensions.map((_, i) => i);
    const ordered = [...lines].sort((a, b) => Number(a.highlight) - Number(b.highlight));  // the highlighted on top
    const traces = ordered.map((l) => ({
      type: "scatter", mode: "lines+markers", x,
      y: l.values.map((v, i) => scales[i].position(v)),
      line: { color: colour(l.score ?? 0.5), width: l.highlight ? 4.5 : 2 },
      marker: { color: colour(l.score ?? 0.5), size: l.highlight ? 9 : 6 },
      opacity: l.highlight ? 1 : 0.8,
      customdata: l.values.map(() => l.values.map((v) => fmtNum(v))),
      hovertemplate: `<b>${escapeHtml(l.name)}</b>${l.highlight ? " ★" : ""}<br>` +
        dimensions.map((d, i) => `${escapeHtml(d.label)}: %{customdata[${i}]}`).join("<br>") + "<extra></extra>",
      meta: { id: l.id, values: l.values },
      showlegend: false,
    }));
    const grey = "#9ca3af", muted = "#6b7280";
    const shapes = x.map((i) => ({ type: "line", xref: "x", yref: "y", x0: i, x1: i, y0: 0, y1: 1, line: { color: grey, width: 1.5 }, layer: "below" }));
    const annotations = [];
    dimensions.forEach((d, i) => {
      // On a phone the axes stand close: their names take two rows, every other one higher.
      const y = narrow && i % 2 ? 1.11 : 1.03;
      annotations.push({ x: i, y, xref: "x", yref: "y", yanchor: "bottom", showarrow: false,
        text: `<b>${escapeHtml(d.label)}</b>${d.log ? " (log)" : ""}`, font: { size: narrow ? 10 : 12, color: "#1f2937" } });
      for (const { tick, y } of spaced(scales[i])) {
        shapes.push({ type: "line", xref: "x", yref: "y", x0: i - 0.025, x1: i, y0: y, y1: y, line: { color: grey, width: 1 } });
        annotations.push({ x: i, y, xref: "x", yref: "y", xanchor: "right", xshift: -6, showarrow: false,
          text: fmtNum(tick, 3), font: { size: narrow ? 9 : 11, color: muted },
          bgcolor: "rgba(255,255,255,0.85)", borderpad: 1 });  // readable where lines cross behind it
      }
    });
    const layout = {
      margin: narrow ? { l: 8, r: 8, t: 8, b: 8 } : { l: 20, r: 20, t: 12, b: 12 },
      font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2937" },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", hovermode: "closest",
      xaxis: { visible: false, range: narrow ? [-0.45, x.length - 1 + 0.45] : [-0.3, x.length - 1 + 0.15], fixedrange: true },
      yaxis: { visible: false, range: [-0.06, narrow ? 1.2 : 1.14], fixedrange: true },
      shapes, annotations,
    };
    const config = { responsive: true, displaylogo: false, displayModeBar: false };
    const done = Plotly.react(div, traces, layout, config);
    if (onClick && !div.dataset.clickBound) {
      div.dataset.clickBound = "true";
      div.on("plotly_click", (event) => { const p = event.points && event.points[0]; if (p) onClick(p.data.meta.id); });
    }
    return done;
  }

  window.ParallelCoords = { draw, colour };
})();
