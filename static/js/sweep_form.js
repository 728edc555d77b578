/* The new-run form's Sweep mode. Off, the form is the single-run form and this file does nothing.
   On, every numeric field whose text is not a plain number is an axis ("0.05, 0.1", "log 5e-6..5e-5,
   4 values"); the form asks POST /api/sweeps/preview (as the user types, debounced by run_new.js) how
   many runs that makes and how long they should take, and Start posts /api/sweeps. run_new.js owns the
   form and calls `SweepForm.install(...)` with its helpers; this file only knows the sweep part. */
"use strict";

(function () {
  const { api, ApiError, fmtNum, fmtDuration } = Dash;

  // The sweep's own settings: the API's names, and the form's field names (f-sweep_*, error-sweep_*).
  const SWEEP_KEYS = ["mode", "count", "random_seed", "seeds", "max_concurrent", "stop_on_critical"];
  const INTEGER = /^\d+$/;

  function install({ form, kinds, input, readForm, showErrors, clearErrors, setVerdict, renderPreview, showAdvice, submitBtn }) {
    const toggle = document.getElementById("sweep-toggle");
    const card = document.getElementById("sweep-card");
    const summary = document.getElementById("sweep-summary");
    const modeSelect = input("sweep_mode");
    const nameLabel = document.querySelector('label[for="f-name"]');
    const nameHelp = document.getElementById("help-name");
    const LABELS = { name: nameLabel.textContent, help: nameHelp.innerHTML, submit: submitBtn.textContent };

    const active = () => toggle.checked;

    /** A form field's name for a key of the API's field errors: "axes.beta" and "config.beta" are the
     *  beta field (which holds the axis text), "seeds" is the sweep's own seeds field. */
    function fieldOf(key) {
      const name = String(key).replace(/^(axes|config)\./, "");
      return SWEEP_KEYS.includes(name) ? `sweep_${name}` : name;
    }

    /** {form field: message}. A message the API starts with its key ("axes.beta: beta: 'lots' is not a
     *  number…") loses that key beside the field: the rest still names the field. */
    function detailErrors(err) {
      const errors = {};
      for (const d of err.body.detail) {
        const key = String(d.loc[d.loc.length - 1]);
        const msg = String(d.msg);
        errors[fieldOf(key)] = /^(axes|config)\./.test(key) && msg.startsWith(`${key}: `) ? msg.slice(key.length + 2) : msg;
      }
      return errors;
    }

    /** An integer setting as typed: a number when it is one, the text otherwise (the server names the
     *  field and says what it wants), or left out when empty (the server's default). */
    function integer(payload, key) {
      const raw = input(`sweep_${key}`).value.trim();
      if (raw !== "") payload[key] = INTEGER.test(raw) ? Number(raw) : raw;
    }

    /** The POST /api/sweeps body, or throws {field: message} like readForm. */
    function body() {
      const config = readForm();
      const axes = {};
      for (const [name, { kind }] of Object.entries(kinds)) {
        // readForm keeps a numeric field's text when it is not a plain number: that text is an axis.
        if (kind === "number" && typeof config[name] === "string" && config[name] !== "") {
          axes[name] = config[name];
          delete config[name];
        }
      }
      const payload = { config, axes, mode: modeSelect.value, stop_on_critical: input("sweep_stop_on_critical").checked };
      if (config.name) payload.name = config.name;
      delete config.name;
      integer(payload, "seeds");
      integer(payload, "max_concurrent");
      if (payload.mode === "random") { integer(payload, "count"); integer(payload, "random_seed"); }
      return payload;
    }

    // --- what the preview says: the run count, the time, and each axis's values beside its field ------------
    function markAxes(axes, settings) {
      for (const note of form.querySelectorAll(".sweep-values")) note.remove();
      for (const el of form.querySelectorAll(".field.is-axis")) el.classList.remove("is-axis");
      for (const name of Object.keys(axes)) {
        const field = input(name)?.closest(".field");
        if (!field) continue;
        field.classList.add("is-axis");
        if (!settings) continue;
        const values = [...new Set(settings.map((s) => s[name]).filter((v) => v !== undefined))];
        const note = document.createElement("p");
        note.className = "sweep-values";
        note.id = `sweep-values-${name}`;
        const shown = values.slice(0, 12).map((v) => fmtNum(v)).join(", ") + (values.length > 12 ? ", …" : "");
        note.textContent = `${values.length} value${values.length === 1 ? "" : "s"} swept: ${shown}`;
        field.insertBefore(note, field.querySelector(".error"));
      }
    }

    function showSummary(preview, payload) {
      const count = preview ? preview.run_count : null;
      document.getElementById("sweep-run-count").textContent = count === null ? "–" : fmtNum(count);
      document.getElementById("sweep-run-word").textContent = count === 1 ? "run" : "runs";
      const seconds = preview ? preview.estimated_seconds : null;
      const time = document.getElementById("sweep-time");
      if (!preview) time.innerHTML = '<strong id="sweep-estimate">–</strong>';
      else if (seconds === null) time.innerHTML = '<strong id="sweep-estimate">time not known yet</strong>';
      else time.innerHTML = `about <strong id="sweep-estimate">${fmtDuration(seconds)}</strong> in all`;
      document.getElementById("sweep-basis").textContent = preview ? preview.estimate_basis || "" : "";
      const parts = Object.keys(payload ? payload.axes : {}).map((name) => {
        const n = new Set((preview?.settings || []).map((s) => s[name])).size;
        return `${name}: ${n} value${n === 1 ? "" : "s"}`;
      });
      const seeds = payload && Number.isInteger(payload.seeds) ? payload.seeds : 1;
      const shape = payload && payload.mode === "random" ? `random sample of ${payload.count ?? "?"} settings` : parts.join(" × ");
      document.getElementById("sweep-shape").textContent = preview
        ? `${shape || "no field swept yet: type a list or range into a numeric field"}${seeds > 1 ? ` × ${seeds} seeds` : ""}`
        : "";
    }

    /** Checks the sweep: its preview (run count, estimate, axis errors) and, for the dataset preview and the
     *  file checks, the base configuration. Resolves the preview when the sweep may start, else null. */
    async function check({ focusFirst = false, reveal = true, current = () => true } = {}) {
      let payload;
      try { payload = body(); } catch (local) { showErrors(local, focusFirst, reveal); showSummary(null); return null; }
      setVerdict("checking", "Counting the runs…");
      const base = { ...payload.config, ...(payload.name ? { name: payload.name } : {}) };
      const [preview, validation] = await Promise.all([
        api("POST", "/api/sweeps/preview", payload).catch((err) => err),
        api("POST", "/api/runs/validate", base).catch((err) => err),
      ]);
      if (!current()) return null;                     // a newer edit is being checked
      for (const answer of [preview, validation]) {
        if (answer instanceof Error && !(answer instanceof ApiError && answer.status === 422 && Array.isArray(answer.body?.detail))) {
          setVerdict("unknown", `Could not check the sweep: ${answer.message}`);
          return null;
        }
      }
      const errors = {};
      if (!(validation instanceof Error)) {
        renderPreview(validation.preview, validation.errors || {});
        for (const [field, message] of Object.entries(validation.errors || {})) {
          if (!(field in payload.axes)) errors[field] = message;   // the base holds a default for an axis field
        }
      }
      if (preview instanceof Error) Object.assign(errors, detailErrors(preview));
      markAxes(payload.axes, preview instanceof Error ? null : preview.settings);
      if (Object.keys(errors).length) {
        showErrors(errors, focusFirst, reveal);
        showSummary(null);
        return null;
      }
      clearErrors();
      for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
      const advice = validation.ok ? validation.advice || {} : {};
      showAdvice(advice, reveal);
      showSummary(preview, payload);
      const n = preview.run_count, runs = `${fmtNum(n)} run${n === 1 ? "" : "s"}`;
      // Advice is about the base config (every run shares it); it does not block the sweep.
      const advised = Object.keys(advice).filter((field) => document.getElementById(`advice-${field}`)).length;
      if (advised) setVerdict("advice", `The sweep is valid: ${runs}; ${advised} setting${advised === 1 ? "" : "s"} of the base config ` +
        `risk${advised === 1 ? "s" : ""} a problem (see the note${advised === 1 ? "" : "s"} beside ${advised === 1 ? "it" : "them"}).`);
      else setVerdict("ok", `The sweep is valid: ${runs}.`);
      return preview;
    }

    /** POST /api/sweeps and on to the sweep's page; field errors come back beside their fields. */
    async function start() {
      setVerdict("checking", "Starting the sweep…");
      try {
        const sweep = await api("POST", "/api/sweeps", body());
        location.href = sweep.url || `/sweeps/${sweep.id}`;
      } catch (err) {
        if (err instanceof ApiError && err.status === 422 && Array.isArray(err.body?.detail)) showErrors(detailErrors(err), true);
        else { setVerdict("unknown", `Could not start the sweep: ${err.message}`); Dash.toast(`Could not start the sweep: ${err.message}`, "error"); }
      }
    }

    function showMode() {
      const on = active();
      card.hidden = !on;
      summary.hidden = !on;
      nameLabel.textContent = on ? "Sweep name" : LABELS.name;
      if (on) nameHelp.innerHTML = "Optional; defaults to <code>sweep</code>. Each run is named after it and its values, " +
        "e.g. <code>beta sweep · beta=0.1 seed=42</code>.";
      else nameHelp.innerHTML = LABELS.help;
      submitBtn.textContent = on ? "Start sweep" : LABELS.submit;
      const random = modeSelect.value === "random";
      for (const key of ["count", "random_seed"]) input(`sweep_${key}`).closest(".field").hidden = !random;
      if (!on) {
        markAxes({}, null);
        showSummary(null);
      }
      const url = new URL(location.href);
      if (on) url.searchParams.set("sweep", "1"); else url.searchParams.delete("sweep");
      history.replaceState(null, "", url);
    }
    toggle.addEventListener("change", showMode);
    modeSelect.addEventListener("change", showMode);
    if (new URLSearchParams(location.search).get("sweep") === "1") toggle.checked = true;
    showMode();

    return { active, body, check, start };
  }

  window.SweepForm = { install };
})();
