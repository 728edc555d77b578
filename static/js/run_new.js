/* New-run form: presets, clone, server-side validation with per-field errors and a dataset
   preview, then POST /api/runs and on to the run page. The user's input is never reset by errors.
   In Sweep mode (static/js/sweep_form.js) the same checks and Start go to the sweeps API instead. */
"use strict";

(function () {
  const { api, ApiError, escapeHtml, fmtNum, fmtExact, toast } = Dash;

  const form = document.getElementById("run-form");
  const defaults = JSON.parse(document.getElementById("form-defaults").textContent);
  const kinds = JSON.parse(document.getElementById("form-fields").textContent);
  const formErrors = document.getElementById("form-errors");
  const validateStatus = document.getElementById("validate-status");
  const submitBtn = document.getElementById("submit-btn");
  const PRESETS = {
    quick: { max_steps: 60 },
    paper: { beta: 0.1, learning_rate: 8e-6, lr_scheduler: "cosine", warmup_ratio: 0.1 },
  };
  const KEEP_ON_PRESET = ["model", "dataset"];
  const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

  const input = (name) => document.getElementById(`f-${name}`);

  // --- form <-> JSON --------------------------------------------------------------------------
  function setValue(name, value) {
    const el = input(name);
    if (!el || !kinds[name]) return;
    const { kind } = kinds[name];
    if (kind === "checkbox") el.checked = Boolean(value);
    else if (kind === "lines") el.value = (value || []).join("\n");
    else if (kind === "json") el.value = value && Object.keys(value).length ? JSON.stringify(value) : "";
    else if (kind === "number" && typeof value === "number") el.value = fmtExact(value);   // 8e-6, as pages show it
    else el.value = value === null || value === undefined ? "" : String(value);
  }

  /** The request body, or throws {field: message} for input that cannot even be encoded. */
  function readForm() {
    const body = {};
    const local = {};
    for (const [name, { kind, nullable }] of Object.entries(kinds)) {
      const el = input(name);
      if (kind === "checkbox") { body[name] = el.checked; continue; }
      const raw = el.value.trim();
      if (kind === "select") body[name] = el.value;
      else if (kind === "number") body[name] = raw === "" ? (nullable ? null : "") : NUMBER.test(raw) ? Number(raw) : raw;
      else if (kind === "lines") {
        const lines = el.value.split("\n").map((l) => l.trim()).filter(Boolean);
        body[name] = lines.length || !nullable ? lines : null;
      } else if (kind === "json") {
        if (raw === "") body[name] = nullable ? null : {};
        else {
          try { body[name] = JSON.parse(raw); } catch (_) { local[name] = "Enter a JSON object, e.g. {\"name\": 1.5}."; }
        }
      } else body[name] = raw === "" && nullable ? null : raw;
    }
    const name = input("name").value.trim();
    if (name) body.name = name;
    if (Object.keys(local).length) throw local;
    return body;
  }

  // --- errors ---------------------------------------------------------------------------------
  function clearErrors() {
    for (const el of form.querySelectorAll(".field.has-error")) el.classList.remove("has-error");
    for (const el of form.querySelectorAll(".field .error")) { el.hidden = true; el.textContent = ""; }
    formErrors.hidden = true;
    formErrors.innerHTML = "";
    markSections();
  }

  /** A collapsed section says on its summary that it holds an error or advice. */
  function markSections() {
    for (const section of form.querySelectorAll("details")) {
      section.classList.toggle("has-problem", Boolean(section.querySelector(".error:not([hidden]), .advice:not([hidden])")));
    }
  }

  /** Show each message next to its field; the rest at the top. A collapsed section with a problem is
   *  opened when the user asked (Check, Start), and only marked on its summary after an edit: a section
   *  the user just closed must not spring open under the cursor. */
  function showErrors(errors, focusFirst, reveal = true) {
    clearErrors();
    const general = [];
    let first = null;
    for (const [field, message] of Object.entries(errors)) {
      const slot = document.getElementById(`error-${field}`);
      if (!slot) { general.push(field === "config" || field === "body" ? message : `${field}: ${message}`); continue; }
      slot.textContent = message;
      slot.hidden = false;
      const wrapper = slot.closest(".field");
      wrapper.classList.add("has-error");
      const section = wrapper.closest("details");
      if (section && reveal) section.open = true;
      first = first || input(field);
      input(field)?.setAttribute("aria-invalid", "true");
    }
    if (general.length) {
      formErrors.innerHTML = `<strong>Please fix:</strong><ul>${general.map((m) => `<li>${escapeHtml(m)}</li>`).join("")}</ul>`;
      formErrors.hidden = false;
    }
    markSections();
    const count = Object.keys(errors).length;
    setVerdict("error", `${count} problem${count === 1 ? "" : "s"} to fix before launch.`);
    if (focusFirst && first) first.focus();
  }

  form.addEventListener("input", (event) => {
    const field = event.target.closest(".field");
    if (!field || !field.classList.contains("has-error")) return;
    field.classList.remove("has-error");
    const slot = field.querySelector(".error");
    slot.hidden = true;
    event.target.removeAttribute("aria-invalid");
  });

  // --- validation and preview -----------------------------------------------------------------
  // Every edit re-checks the configuration (debounced). Until the answer for the latest edit is back,
  // the verdict says "Checking…": a "valid" never stays beside a value it did not see.
  let validation = 0;
  let pendingCheck = null;     // the debounced re-check after an edit
  let lastSent = null;         // the form as last sent for checking: an unchanged form is not re-checked
  function formSignature() {
    try { return JSON.stringify(sweeping() ? ["sweep", sweep.body()] : readForm()); }
    catch (local) { return `local:${JSON.stringify(local)}`; }
  }
  /** The server's ValidationResult when the configuration may launch, else null (problems shown). */
  async function validate({ focusFirst = false, quiet = false, reveal = true } = {}) {
    if (!Dash.caller.canStart) return false;  // checking a configuration needs the member role too
    const ticket = ++validation;
    clearTimeout(pendingCheck);
    lastSent = formSignature();
    if (sweeping()) return sweep.check({ focusFirst, reveal, current: () => ticket === validation });
    let body;
    try { body = readForm(); } catch (local) { showErrors(local, focusFirst, reveal); return null; }
    setVerdict("checking", "Checking…");
    let result;
    try { result = await api("POST", "/api/runs/validate", body); }
    catch (err) {
      if (ticket === validation) setVerdict("unknown", `Could not check the configuration: ${err.message}`);
      return null;
    }
    if (ticket !== validation) return null;          // a newer edit is being checked
    renderPreview(result.preview, result.errors || {});
    showAdvice(result.ok ? result.advice || {} : {}, reveal);
    if (!result.ok && quiet) { setVerdict("unknown", "Check the configuration before launch."); return null; }
    if (!result.ok) { showErrors(result.errors || {}, focusFirst, reveal); return null; }
    clearErrors();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const advised = Object.keys(result.advice || {}).filter((field) => document.getElementById(`advice-${field}`)).length;
    if (advised) {
      setVerdict("advice", `Configuration is valid; ${advised} setting${advised === 1 ? "" : "s"} ` +
        `risk${advised === 1 ? "s" : ""} a problem (see the notes beside ${advised === 1 ? "it" : "them"}). ` +
        "Start asks you to confirm.");
    } else setVerdict("ok", "Configuration looks good.");
    return result;
  }

  const VERDICT_CLASS = { checking: "muted small", unknown: "muted small", ok: "small ok-text", advice: "small advice-text", error: "small error-text" };
  function setVerdict(state, text) {
    validateStatus.textContent = text;
    validateStatus.className = VERDICT_CLASS[state];
    validateStatus.dataset.state = state;
  }

  /** Advice does not block the launch: a deliberate setting stays the user's call, asked at Start. */
  function showAdvice(advice, reveal = true) {
    for (const el of form.querySelectorAll(".field .advice")) { el.hidden = true; el.textContent = ""; }
    for (const [field, message] of Object.entries(advice)) {
      const slot = document.getElementById(`advice-${field}`);
      if (!slot) continue;
      slot.textContent = message;
      slot.hidden = false;
      const section = slot.closest("details");
      if (section && reveal) section.open = true;
    }
    markSections();
  }

  const previewBody = document.getElementById("preview-body");
  function renderPreview(preview, errors) {
    if (!preview) {
      const why = errors.dataset ? `No preview: ${escapeHtml(errors.dataset)}` : "No preview for this dataset.";
      previewBody.innerHTML = `<p class="muted small" id="preview-none">${why}</p>`;
      return;
    }
    const rows = (preview.pairs || []).slice(0, 5).map((p) => `<tr>
        <td><div class="clip">${escapeHtml(p.prompt)}</div></td>
        <td><div class="clip">${escapeHtml(p.chosen)}</div></td>
        <td><div class="clip">${escapeHtml(p.rejected)}</div></td></tr>`).join("");
    previewBody.innerHTML = `
      <div class="preview-stats">
        <div><strong id="preview-count">${preview.count}</strong><span class="muted small">pairs</span></div>
        <div><strong>${(preview.columns || []).length}</strong><span class="muted small">columns</span></div>
      </div>
      <p class="small">Columns: ${(preview.columns || []).map((c) => `<code>${escapeHtml(c)}</code>`).join(", ")}</p>
      <table class="preview-table" id="preview-table">
        <thead><tr><th>Prompt</th><th>Chosen</th><th>Rejected</th></tr></thead>
        <tbody>${rows}</tbody>
      </table>`;
  }

  function edited() {
    // A blur's change event (pressing Start fires one) or an edit undone: nothing new to check.
    if (formSignature() === lastSent) return;
    validation += 1;                       // any answer still on its way is for an older value
    setVerdict("checking", "Checking…");
    clearTimeout(pendingCheck);
    pendingCheck = setTimeout(() => validate({ reveal: false }), 400);
  }
  form.addEventListener("input", edited);
  form.addEventListener("change", edited);  // selects and checkboxes
  document.getElementById("validate-btn").addEventListener("click", () => validate({ focusFirst: true }));

  // --- advice at Start: shown, and the launch confirmed, whenever there is any -----------------------
  const adviceDialog = document.getElementById("advice-dialog");
  function confirmAdvice(advice) {
    const label = (field) => document.querySelector(`label[for="f-${field}"]`)?.textContent || field;
    document.getElementById("advice-list").innerHTML = Object.entries(advice).map(([field, message]) =>
      `<li data-field="${escapeHtml(field)}"><strong>${escapeHtml(label(field))}</strong>: ${escapeHtml(message)}</li>`).join("");
    adviceDialog.returnValue = "";
    return new Promise((resolve) => {
      adviceDialog.addEventListener("close", () => resolve(adviceDialog.returnValue === "start"), { once: true });
      adviceDialog.showModal();
    });
  }

  // --- submit ---------------------------------------------------------------------------------
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submitBtn.disabled = true;
    try {
      const checked = await validate({ focusFirst: true });
      if (!checked) return;
      if (sweeping()) { await sweep.start(); return; }
      const advice = checked.advice || {};
      if (Object.keys(advice).length && !(await confirmAdvice(advice))) {
        input(Object.keys(advice)[0])?.focus();   // back to the first setting the advice is about
        return;
      }
      setVerdict("checking", "Starting…");
      const run = await api("POST", "/api/runs", { ...readForm(), ...lineage });
      location.href = `/runs/${run.id}`;
    } catch (err) {
      if (err instanceof ApiError && err.status === 422 && Array.isArray(err.body?.detail)) {
        const errors = {};
        for (const d of err.body.detail) errors[String(d.loc[d.loc.length - 1])] = d.msg;
        showErrors(errors, true);
      } else {
        toast(`Could not start the run: ${err.message}`, "error");
      }
    } finally { submitBtn.disabled = !Dash.caller.canStart; }
  });

  // --- sweep mode ----------------------------------------------------------------------------------
  const sweep = window.SweepForm ? SweepForm.install({ form, kinds, input, readForm, showErrors, clearErrors, setVerdict,
    renderPreview, showAdvice, submitBtn }) : null;
  function sweeping() { return Boolean(sweep && sweep.active()); }

  // --- presets and clone ----------------------------------------------------------------------
  for (const btn of document.querySelectorAll("[data-preset]")) {
    btn.addEventListener("click", () => {
      const keep = Object.fromEntries(KEEP_ON_PRESET.map((n) => [n, input(n).value]));
      for (const [name, value] of Object.entries(defaults)) setValue(name, value);
      for (const [name, value] of Object.entries(PRESETS[btn.dataset.preset])) setValue(name, value);
      for (const [name, value] of Object.entries(keep)) input(name).value = value;
      clearErrors();
      edited();
      toast(`Preset “${btn.textContent}” applied.`);
    });
  }

  async function cloneFrom(id) {
    const banner = document.getElementById("clone-banner");
    try {
      const run = await api("GET", `/api/runs/${id}`);
      for (const [name, value] of Object.entries(run.config || {})) setValue(name, value);
      setValue("output_dir", null);        // the source run's folder: the new run gets its own
      // Open the collapsed sections that hold a value the source run changed from the default.
      for (const [name, value] of Object.entries(run.config || {})) {
        if (name === "output_dir" || !input(name) || JSON.stringify(value) === JSON.stringify(defaults[name])) continue;
        const section = input(name).closest("details.section");
        if (section) section.open = true;
      }
      input("name").value = `${run.name} (clone)`;
      banner.innerHTML = `Cloned from <a href="/runs/${run.id}">${escapeHtml(run.name)}</a> (#${run.id}). Change what you want to try, then start.`;
      const fixId = form.getAttribute("data-fix-alert");
      if (fixId) applyFix(run, Number(fixId), banner);
      banner.hidden = false;
      validate();
    } catch (err) {
      banner.className = "callout callout-error";
      banner.textContent = `Could not load run ${id} to clone: ${err.message}`;
      banner.hidden = false;
    }
  }

  // "Clone with this fix": the alert's suggested change applied on top of the cloned config, the field
  // marked, and the new run linked to its parent run and the alert (sent with the form on submit).
  let lineage = {};
  const showValue = (value) => (typeof value === "number" && value !== 0 && Math.abs(value) < 1e-3
    ? value.toExponential() : String(value));
  function applyFix(run, alertId, banner) {
    const alert = (run.alerts || []).find((a) => a.id === alertId);
    const change = alert && alert.suggested_change;
    const label = alert ? alert.kind.replaceAll("_", " ") : "";
    if (!change || !input(change.field)) {
      banner.innerHTML += ` Alert #${alertId} of this run suggests no config change, so nothing was changed for it.`;
      return;
    }
    setValue(change.field, change.to);
    const field = input(change.field).closest(".field");
    field.classList.add("changed-by-alert");
    const note = document.createElement("p");
    note.className = "fix-note";
    note.id = `fix-note-${change.field}`;
    note.textContent = `Changed by alert ${label} (#${alert.id}): from ${showValue(change.from)} to ${showValue(change.to)}`;
    field.insertBefore(note, field.querySelector(".error"));
    const section = field.closest("details.section");
    if (section) section.open = true;
    input("name").value = `${run.name} (fix ${label})`;
    lineage = { parent_run_id: run.id, from_alert_id: alert.id };
    banner.innerHTML = `Cloned from <a href="/runs/${run.id}">${escapeHtml(run.name)}</a> (#${run.id}) to fix ` +
      `<strong>${escapeHtml(label)}</strong>: <code>${escapeHtml(change.field)}</code> is changed as the alert suggests ` +
      `(marked below). Start to train it; its page links to a comparison with run #${run.id}.`;
  }

  // --- the launcher: who starts the run, and what the Ray cluster has ----------------------------
  async function showLauncher() {
    const info = document.getElementById("launcher-info");
    const resources = document.getElementById("launcher-resources");
    if (info.dataset.kind !== "ray") return;
    try {
      const launcher = await api("GET", "/api/launcher");
      if (launcher.error) { resources.textContent = launcher.error; resources.className = "error"; return; }
      const plural = (n, word) => `${fmtNum(n)} ${word}${n === 1 ? "" : "s"}`;
      resources.textContent = `Cluster: ${plural(launcher.nodes, "node")}, ${plural(launcher.cpus, "CPU")}, ` +
        `${plural(launcher.gpus, "GPU")}; each run reserves ${plural(launcher.cpus_per_run, "CPU")} and its "gpus" field.`;
    } catch (err) {
      resources.textContent = `Could not ask the dashboard about the cluster: ${err.message}`;
    }
  }
  showLauncher();

  // Not form.dataset: a <form> exposes its controls by name, and the "dataset" field shadows it.
  const cloneId = form.getAttribute("data-clone");
  if (cloneId) cloneFrom(cloneId);
  else validate({ quiet: true });           // the default dataset's preview, without nagging yet
})();
