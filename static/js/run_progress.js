/* How far a run is, in words, for the runs list and the run page: its place in the queue, its
   planned steps, what its worker is doing now (phase) and disk sizes. Exposes `window.RunProgress`. */
"use strict";

(function () {
  function ordinal(n) {
    const tens = n % 100, ones = n % 10;
    const suffix = tens >= 11 && tens <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" }[ones] || "th");
    return `${n}${suffix}`;
  }

  function fmtBytes(n) {
    const units = ["B", "kB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
    return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
  }

  /** "60" when max_steps fixes it; "~45" for a queued run whose steps the dashboard estimated from epochs. */
  function plannedSteps(run) {
    if (!run.total_steps) return null;
    const estimated = run.status === "queued" && !(run.config && run.config.max_steps);
    return `${estimated ? "~" : ""}${run.total_steps}`;
  }

  /** "queued, 2nd in line" (or "queued" when its place is not known, e.g. a stop was requested). */
  function queueText(run) {
    return run.queue_position ? `queued, ${ordinal(run.queue_position)} in line` : "queued";
  }

  /** "evaluating 3/10" for a phase other than training; null while training (the step count says it). */
  function phaseText(run) {
    const phase = run.status === "running" ? run.phase : null;
    if (!phase || phase.name === "training" || phase.name === "starting") return null;
    return phase.total ? `${phase.name} ${Math.min(phase.done + 1, phase.total)}/${phase.total}` : phase.name;
  }

  window.RunProgress = { ordinal, fmtBytes, plannedSteps, queueText, phaseText };
})();
