/* Runs list: sort, filter, search, group by sweep, select, compare, export, rename/tag, delete.
   Refreshes every 3 s while the tab is visible (it and the sweep page are the only pages that poll). */
"use strict";

(function () {
  const { api, escapeHtml, fmtNum, fmtDuration, fmtDate, runDuration, statusBadge, alertBadges, confirmAction, errorTooltip, toast } = Dash;

  const { fmtBytes, plannedSteps, queueText, phaseText } = RunProgress;
  const REFRESH_MS = 3000;
  const STORAGE_REFRESH_MS = 30000;   // walking the data folder costs more than reading the runs
  const body = document.getElementById("runs-body");
  const search = document.getElementById("run-search");
  const statusFilter = document.getElementById("status-filter");
  const selectAll = document.getElementById("select-all");
  const groupSweeps = document.getElementById("group-sweeps");
  const params = new URLSearchParams(location.search);
  let runs = [];
  const DEFAULT_SORT = { key: "id", dir: -1 };
  let sort = { key: params.get("sort") || DEFAULT_SORT.key, dir: params.get("dir") === "asc" ? 1 : -1 };
  const selected = new Set();
  let lastHtml = "";
  search.value = params.get("q") || "";
  statusFilter.value = params.get("status") || "";
  groupSweeps.checked = params.get("group") === "sweep";
  let sweepNames = new Map();          // sweep id -> name, read while grouping is on

  const basename = (path) => String(path || "").replace(/^bundled:/, "").replace(/\/+$/, "").split("/").pop();
  const SORT_VALUE = {
    id: (r) => r.id,
    name: (r) => r.name.toLowerCase(),
    status: (r) => r.status,
    progress: (r) => (r.total_steps ? r.last_step / r.total_steps : 0),
    model: (r) => basename(r.config.model),
    beta: (r) => r.config.beta,
    learning_rate: (r) => r.config.learning_rate,
    loss: (r) => r.latest.loss,
    log_odds_ratio: (r) => r.latest.log_odds_ratio,
    accuracy: (r) => r.latest.accuracy,
    alerts: (r) => (r.alerts || []).filter((a) => a.state !== "closed").length,
    disk: (r) => r.checkpoint_bytes || 0,
    started: (r) => r.started_at || "",
  };

  // --- chosen extra columns: "config:<field>", "latest:<metric>" or "best:<metric>", kept in localStorage ---
  const COLUMNS_KEY = "orpo-dash:runs-columns";
  const directions = JSON.parse(document.getElementById("metric-directions").textContent);
  const hasBest = (name) => {
    const base = name.replace(/^eval\//, "");
    return directions.lower.includes(base) || directions.higher.includes(base);
  };
  // Already shown by the fixed columns: not offered again.
  const FIXED_CONFIG = new Set(["beta", "learning_rate", "model", "dataset", "output_dir"]);
  let columns = [];
  try { columns = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "[]").filter((c) => /^(config|latest|best):./.test(c)); }
  catch (err) { columns = []; }
  const columnParts = (column) => { const i = column.indexOf(":"); return [column.slice(0, i), column.slice(i + 1)]; };
  const columnLabel = (column) => {
    const [kind, name] = columnParts(column);
    return kind === "config" ? name : `${name} (${kind})`;
  };
  const columnValue = (r, column) => {
    const [kind, name] = columnParts(column);
    const v = kind === "config" ? (r.config || {})[name] : kind === "latest" ? (r.latest || {})[name] : (r.best || {})[name];
    return v === undefined ? null : v;
  };
  const showValue = (v) => (v === null ? '<span class="muted">—</span>' : typeof v === "number" ? fmtNum(v)
    : escapeHtml(typeof v === "object" ? JSON.stringify(v) : String(v)));
  const sortValue = (key) => SORT_VALUE[key] || ((r) => {
    const v = columnValue(r, key);
    return v !== null && typeof v === "object" ? JSON.stringify(v) : v;
  });
  const bestNames = () => columns.filter((c) => c.startsWith("best:")).map((c) => columnParts(c)[1]);

  function renderColumnHeaders() {
    for (const th of document.querySelectorAll("#runs-table th[data-extra]")) th.remove();
    const before = document.querySelector('#runs-table th[data-sort-key="alerts"]');
    for (const column of columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.className = "no-upper" + (columnParts(column)[0] === "config" ? "" : " num");
      th.dataset.sortKey = column;
      th.dataset.extra = "";
      th.dataset.label = columnLabel(column);
      th.innerHTML = `<button type="button" class="sort">${escapeHtml(columnLabel(column))}</button>`;
      before.before(th);
    }
  }

  /** The chooser lists every config field and every metric the loaded runs have (not a fixed list:
   *  a new metric or field shows up by itself). */
  function renderColumnChooser() {
    const list = document.getElementById("columns-list");
    if (list.contains(document.activeElement)) return;   // never rebuild under the user's hands
    const fields = new Set(), metricNames = new Set();
    for (const r of runs) {
      Object.keys(r.config || {}).forEach((k) => { if (!FIXED_CONFIG.has(k)) fields.add(k); });
      Object.keys(r.latest || {}).forEach((k) => metricNames.add(k));
    }
    columns.forEach((c) => { const [kind, name] = columnParts(c); (kind === "config" ? fields : metricNames).add(name); });
    const box = (column, label) => `<label class="check-row"><input type="checkbox" data-column="${escapeHtml(column)}"${columns.includes(column) ? " checked" : ""}> ${escapeHtml(label)}</label>`;
    const metricRows = [...metricNames].sort((a, b) => (b.startsWith("eval/") - a.startsWith("eval/")) || a.localeCompare(b))
      .map((name) => `<div class="column-metric"><span>${escapeHtml(name)}</span>${box(`latest:${name}`, "latest")}${hasBest(name) ? box(`best:${name}`, "best") : ""}</div>`);
    const html = `<p class="menu-heading">Metrics</p>${metricRows.join("") || '<p class="muted small">No metrics logged yet.</p>'}
      <p class="menu-heading">Settings</p>${[...fields].sort().map((name) => box(`config:${name}`, name)).join("")}`;
    if (list.innerHTML !== html) list.innerHTML = html;
  }

  document.getElementById("columns-list").addEventListener("change", (event) => {
    const column = event.target.dataset.column;
    if (!column) return;
    columns = event.target.checked ? [...columns.filter((c) => c !== column), column] : columns.filter((c) => c !== column);
    localStorage.setItem(COLUMNS_KEY, JSON.stringify(columns));
    renderColumnHeaders();
    lastHtml = "";
    if (column.startsWith("best:")) load(); else render();   // best values come from the server
  });

  function visibleRuns() {
    const q = search.value.trim().toLowerCase();
    const list = runs.filter((r) => !q || [r.name, r.config.model, r.config.dataset, ...(r.tags || []), `#${r.id}`]
      .some((s) => String(s || "").toLowerCase().includes(q)));
    const value = sortValue(sort.key);
    return list.sort((a, b) => {
      const va = value(a), vb = value(b);
      if (va === vb) return b.id - a.id;
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * sort.dir;
    });
  }

  function progressLabel(r) {
    if (r.status === "queued") return queueText(r) + (r.total_steps ? ` · ${plannedSteps(r)} steps` : "");
    const doing = phaseText(r);
    return `${r.last_step ?? 0}/${plannedSteps(r) ?? "?"}` + (doing ? ` · ${doing}` : "");
  }

  /** `label`: the name shown (under a sweep's heading, without the sweep's name it starts with). */
  function row(r, label = r.name) {
    const latest = r.latest || {};
    const pct = r.total_steps ? Math.min(100, (100 * r.last_step) / r.total_steps) : 0;
    const tags = (r.tags || []).map((t) => `<span class="tag">${escapeHtml(t)}</span>`).join("");
    const checked = selected.has(r.id) ? " checked" : "";
    const whyNotDelete = Dash.caller.whyNotChange(r);
    return `<tr data-run-id="${r.id}">
      <td class="select-cell"><input type="checkbox" class="select-run" data-fk="${r.id}:select" value="${r.id}" aria-label="Select ${escapeHtml(r.name)}"${checked}></td>
      <td class="run-name-cell"><a href="/runs/${r.id}" data-fk="${r.id}:open" title="${escapeHtml(r.name)}">${escapeHtml(label)}</a> <span class="muted small">#${r.id}</span>${tags}</td>
      <td class="status-cell" data-label="Status"${r.error ? ` title="${escapeHtml(errorTooltip(r.error))}"` : ""}>${statusBadge(r.status)}</td>
      <td class="progress-cell" data-label="Progress"><div class="cell-progress"><div class="progress" data-status="${escapeHtml(r.status)}"><div class="progress-fill" style="width:${pct}%"></div></div>
        <span class="progress-label">${escapeHtml(progressLabel(r))}</span></div></td>
      <td class="stacked" data-label="Model / dataset"><span class="ellipsis" title="${escapeHtml(r.config.model)}">${escapeHtml(basename(r.config.model))}</span>
        <span class="ellipsis muted" title="${escapeHtml(r.config.dataset)}">${escapeHtml(basename(r.config.dataset))}</span></td>
      <td class="num" data-label="λ">${fmtNum(r.config.beta)}</td>
      <td class="num" data-label="LR">${fmtNum(r.config.learning_rate)}</td>
      <td class="num" data-label="Loss">${fmtNum(latest.loss)}</td>
      <td class="num" data-label="Log OR">${fmtNum(latest.log_odds_ratio)}</td>
      <td class="num" data-label="Acc.">${fmtNum(latest.accuracy, 3)}</td>
      ${columns.map((c) => `<td class="${c.startsWith("config:") ? "" : "num"}" data-column="${escapeHtml(c)}" data-label="${escapeHtml(columnLabel(c))}">${showValue(columnValue(r, c))}</td>`).join("")}
      <td class="alerts-cell" data-label="Alerts">${alertBadges(r.alerts)}</td>
      <td class="num" data-label="Checkpoints" data-checkpoint-bytes="${r.checkpoint_bytes || 0}">${r.checkpoint_bytes ? fmtBytes(r.checkpoint_bytes) : '<span class="muted">—</span>'}</td>
      <td class="stacked" data-label="Started">${fmtDate(r.started_at)}<span class="muted">${fmtDuration(runDuration(r))}</span>${r.created_by ? `<span class="muted run-owner">by ${escapeHtml(r.created_by)}</span>` : ""}</td>
      <td class="row-actions">
        <details class="menu" data-menu="${r.id}">
          <summary class="btn btn-small" data-fk="${r.id}:menu" aria-label="Actions for ${escapeHtml(r.name)}">Actions ▾</summary>
          <div class="menu-list">
            ${Dash.caller.canStart
              ? `<a href="/runs/new?clone=${r.id}" data-fk="${r.id}:clone">Clone</a>`
              : `<button type="button" disabled title="${Dash.NEEDS_MEMBER}" data-fk="${r.id}:clone">Clone</button>`}
            <button type="button" data-action="rename" data-fk="${r.id}:rename"${Dash.caller.canStart ? "" : ` disabled title="${Dash.NEEDS_MEMBER}"`}>Rename / tag…</button>
            <a href="/api/runs/${r.id}/export?format=csv" download data-fk="${r.id}:csv">Export CSV</a>
            <a href="/api/runs/${r.id}/export?format=json" download data-fk="${r.id}:json">Export JSON</a>
            <button type="button" class="danger" data-action="delete" data-fk="${r.id}:delete"${whyNotDelete ? ` disabled title="${escapeHtml(whyNotDelete)}"` : ""}>Delete…</button>
          </div>
        </details>
      </td>
    </tr>`;
  }

  /** Grouped by sweep: each sweep's runs (in the chosen sort) under a heading that links to its page,
   *  newest sweep first, then the runs of no sweep. */
  function groupedRows(list) {
    const columnCount = document.querySelectorAll("#runs-table thead th").length;
    const bySweep = new Map(), loose = [];
    for (const r of list) {
      if (r.sweep_id === null || r.sweep_id === undefined) loose.push(r);
      else (bySweep.get(r.sweep_id) || bySweep.set(r.sweep_id, []).get(r.sweep_id)).push(r);
    }
    const heading = (id, members) => {
      const counts = {};
      for (const r of members) counts[r.status] = (counts[r.status] || 0) + 1;
      const summary = Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ");
      const name = id === null ? "Not in a sweep" : sweepNames.get(id) || `Sweep #${id}`;
      const title = id === null ? escapeHtml(name) : `<a href="/sweeps/${id}" data-fk="sweep-${id}">${escapeHtml(name)}</a>`;
      const extra = id === null ? "" : ` · sweep #${id} · <a href="/compare?sweep=${id}">compare</a>`;
      return `<tr class="sweep-heading" data-sweep-id="${id ?? ""}"><th colspan="${columnCount}" scope="colgroup">${title}
        <span class="muted small">${members.length} run${members.length === 1 ? "" : "s"}: ${escapeHtml(summary)}${extra}</span></th></tr>`;
    };
    const ids = [...bySweep.keys()].sort((a, b) => b - a);
    const inSweep = (id) => (r) => {
      const prefix = `${sweepNames.get(id)} · `;
      return row(r, sweepNames.has(id) && r.name.startsWith(prefix) && r.name.length > prefix.length ? r.name.slice(prefix.length) : r.name);
    };
    return ids.map((id) => heading(id, bySweep.get(id)) + bySweep.get(id).map(inSweep(id)).join("")).join("")
      + (loose.length && ids.length ? heading(null, loose) : "") + loose.map((r) => row(r)).join("");
  }

  function render() {
    const list = visibleRuns();
    const html = groupSweeps.checked ? groupedRows(list) : list.map((r) => row(r)).join("");
    if (html !== lastHtml) {
      // Keep keyboard focus and an open actions menu across the periodic refresh.
      const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.fk : null;
      const openMenu = body.querySelector("details.menu[open]");
      const openKey = openMenu ? openMenu.dataset.menu : null;
      body.innerHTML = html;
      lastHtml = html;
      if (openKey) { const menu = body.querySelector(`details.menu[data-menu="${openKey}"]`); if (menu) { menu.open = true; placeMenu(menu); } }
      if (focusKey) { const el = body.querySelector(`[data-fk="${focusKey}"]`); if (el) el.focus(); }
    }
    document.getElementById("runs-empty").hidden = runs.length > 0 || Boolean(statusFilter.value);
    document.getElementById("runs-no-match").hidden = list.length > 0 || (runs.length === 0 && !statusFilter.value);
    document.getElementById("runs-table").hidden = list.length === 0;
    for (const th of document.querySelectorAll("th[data-sort-key]")) {
      if (th.dataset.sortKey === sort.key) th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    }
    renderSelection(list);
    renderColumnChooser();
  }

  function renderSelection(list = visibleRuns()) {
    for (const id of [...selected]) if (!runs.some((r) => r.id === id)) selected.delete(id);
    const n = selected.size;
    document.getElementById("selection-count").textContent = `${n} selected`;
    document.getElementById("compare-btn").disabled = n < 2;
    for (const id of ["export-csv-btn", "export-json-btn", "delete-selected-btn"]) document.getElementById(id).disabled = n === 0;
    // Deleting needs the right to change every selected run: say which one stands in the way.
    const deleteBtn = document.getElementById("delete-selected-btn");
    const blocked = selectedRuns().map((r) => Dash.caller.whyNotChange(r)).find(Boolean)
      || (Dash.caller.canStart ? null : Dash.NEEDS_MEMBER);
    deleteBtn.disabled = n === 0 || Boolean(blocked);
    deleteBtn.title = blocked || "";
    selectAll.checked = list.length > 0 && list.every((r) => selected.has(r.id));
    selectAll.indeterminate = !selectAll.checked && list.some((r) => selected.has(r.id));
  }

  let storageLoadedAt = 0;
  async function loadStorage() {
    if (Date.now() - storageLoadedAt < STORAGE_REFRESH_MS) return;
    storageLoadedAt = Date.now();
    try {
      const s = await api("GET", "/api/storage");
      const line = document.getElementById("storage-line");
      // Checkpoints may live outside the data folder (anywhere under the output root): counted apart.
      line.textContent = `Data folder ${s.data_dir}: ${fmtBytes(s.data_bytes)} · all runs' checkpoints: ` +
        `${fmtBytes(s.checkpoint_bytes)} · ${fmtBytes(s.free_bytes)} free on its disk`;
      line.hidden = false;
    } catch (err) { /* the runs table matters more; the line stays hidden */ }
  }

  let loading = false;
  async function load() {
    loadStorage();
    if (loading) return;
    loading = true;
    try {
      const query = new URLSearchParams();
      if (statusFilter.value) query.set("status", statusFilter.value);
      if (bestNames().length) query.set("best", bestNames().join(","));
      const [loaded, sweeps] = await Promise.all([
        api("GET", `/api/runs${query.toString() ? `?${query}` : ""}`),
        groupSweeps.checked ? api("GET", "/api/sweeps").catch(() => null) : null,
      ]);
      runs = loaded;
      if (sweeps) sweepNames = new Map(sweeps.map((s) => [s.id, s.name]));
      render();
    } catch (err) {
      toast(`Could not load runs: ${err.message}`, "error");
    } finally { loading = false; }
  }

  function syncUrl() {
    const p = new URLSearchParams();
    if (search.value.trim()) p.set("q", search.value.trim());
    if (statusFilter.value) p.set("status", statusFilter.value);
    if (groupSweeps.checked) p.set("group", "sweep");
    if (sort.key !== DEFAULT_SORT.key || sort.dir !== DEFAULT_SORT.dir) { p.set("sort", sort.key); p.set("dir", sort.dir > 0 ? "asc" : "desc"); }
    history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
  }

  // --- events ---------------------------------------------------------------------------------
  search.addEventListener("input", () => { syncUrl(); render(); });
  statusFilter.addEventListener("change", () => { syncUrl(); load(); });
  groupSweeps.addEventListener("change", () => { syncUrl(); lastHtml = ""; load(); });
  document.querySelector("#runs-table thead").addEventListener("click", (event) => {
    const th = event.target.closest("th[data-sort-key]");
    if (!th) return;
    const key = th.dataset.sortKey;
    sort = { key, dir: sort.key === key ? -sort.dir : (["name", "model", "dataset", "status"].includes(key) || key.startsWith("config:") ? 1 : -1) };
    syncUrl();
    lastHtml = "";
    render();
  });
  selectAll.addEventListener("change", () => {
    for (const r of visibleRuns()) { if (selectAll.checked) selected.add(r.id); else selected.delete(r.id); }
    lastHtml = "";
    render();
  });
  body.addEventListener("change", (event) => {
    const box = event.target.closest(".select-run");
    if (!box) return;
    if (box.checked) selected.add(Number(box.value)); else selected.delete(Number(box.value));
    lastHtml = "";                       // the checkbox state is part of the rendered rows
    render();
  });
  body.addEventListener("click", async (event) => {
    const btn = event.target.closest("button[data-action]");
    if (!btn) return;
    btn.closest("details.menu").open = false;
    const run = runs.find((r) => r.id === Number(btn.closest("tr").dataset.runId));
    if (!run) return;
    if (btn.dataset.action === "delete") await deleteRuns([run]);
    if (btn.dataset.action === "rename") await renameRun(run);
  });

  const selectedRuns = () => runs.filter((r) => selected.has(r.id)).sort((a, b) => a.id - b.id);
  document.getElementById("compare-btn").addEventListener("click", () => {
    location.href = `/compare?runs=${selectedRuns().map((r) => r.id).join(",")}`;
  });
  document.getElementById("delete-selected-btn").addEventListener("click", () => deleteRuns(selectedRuns()));
  document.getElementById("export-json-btn").addEventListener("click", () => exportRuns(selectedRuns(), "json"));
  document.getElementById("export-csv-btn").addEventListener("click", () => exportRuns(selectedRuns(), "csv"));

  async function deleteRuns(list) {
    if (!list.length) return;
    const what = list.length === 1 ? `“${list[0].name}”` : `${list.length} runs`;
    const ok = await confirmAction(`Delete ${what}?`,
      "Its metrics, logs, samples and alerts are removed from the dashboard (a running run is stopped first); its checkpoint files stay on disk. This cannot be undone.", "Delete");
    if (!ok) return;
    for (const r of list) {
      try { await api("DELETE", `/api/runs/${r.id}`); selected.delete(r.id); }
      catch (err) { toast(`Could not delete “${r.name}”: ${err.message}`, "error"); }
    }
    toast(list.length === 1 ? "Run deleted." : `${list.length} runs deleted.`);
    await load();
  }

  const renameDialog = document.getElementById("rename-dialog");
  function renameRun(run) {
    document.getElementById("rename-name").value = run.name;
    document.getElementById("rename-tags").value = (run.tags || []).join(", ");
    renameDialog.returnValue = "";
    renameDialog.showModal();
    return new Promise((resolve) => {
      renameDialog.addEventListener("close", async () => {
        if (renameDialog.returnValue === "ok") {
          const name = document.getElementById("rename-name").value.trim();
          const tags = document.getElementById("rename-tags").value.split(",").map((t) => t.trim()).filter(Boolean);
          try { await api("PATCH", `/api/runs/${run.id}`, { name, tags }); toast("Run updated."); await load(); }
          catch (err) { toast(`Could not update the run: ${err.message}`, "error"); }
        }
        resolve();
      }, { once: true });
    });
  }

  /** One file for the whole selection, built and streamed by the server (GET /api/export):
   *  JSON as an array of per-run exports, CSV with a run_id column. A link, not fetch(), so the browser
   *  writes it straight to disk however many points the runs hold. */
  function exportRuns(list, format) {
    if (!list.length) return;
    const href = `/api/export?runs=${list.map((r) => r.id).join(",")}&format=${format}`;
    const a = Object.assign(document.createElement("a"), { href, download: "" });  // "": the server names the file
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  /** An open menu is placed in the viewport (position: fixed), not inside the table's scroll box, which
   *  clipped the menu of the bottom row (the only row when there is one run). It opens below its button,
   *  or above when there is no room below, and stays inside the screen sideways. */
  const MARGIN = 8;
  function placeMenu(menu) {
    const list = menu.querySelector(".menu-list");
    const anchor = menu.querySelector("summary").getBoundingClientRect();
    list.classList.add("menu-fixed");
    const { width, height } = list.getBoundingClientRect();
    const alignRight = !menu.classList.contains("menu-left");
    let left = alignRight ? anchor.right - width : anchor.left;
    left = Math.max(MARGIN, Math.min(left, innerWidth - width - MARGIN));
    let top = anchor.bottom + 4;
    if (top + height > innerHeight - MARGIN) {
      const above = anchor.top - 4 - height;
      top = above >= MARGIN ? above : Math.max(MARGIN, innerHeight - MARGIN - height);
    }
    list.style.left = `${left}px`;
    list.style.top = `${top}px`;
  }
  const openMenus = () => document.querySelectorAll("details.menu[open]");
  // "toggle" does not bubble: listen in the capture phase for every menu, rows re-rendered included.
  document.addEventListener("toggle", (event) => {
    if (event.target.matches && event.target.matches("details.menu") && event.target.open) placeMenu(event.target);
  }, true);
  addEventListener("resize", () => openMenus().forEach(placeMenu));
  addEventListener("scroll", () => openMenus().forEach(placeMenu), true);  // the page or the table scrolled

  // Close an open menu on outside click or Escape.
  document.addEventListener("click", (event) => {
    for (const menu of openMenus()) if (!menu.contains(event.target)) menu.open = false;
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const menu = document.querySelector("details.menu[open]");
    if (menu) { menu.open = false; menu.querySelector("summary").focus(); }
  });

  // --- refresh while visible --------------------------------------------------------------------
  setInterval(() => { if (document.visibilityState === "visible" && !document.querySelector("dialog[open]")) load(); }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") load(); });
  renderColumnHeaders();
  load();
})();
