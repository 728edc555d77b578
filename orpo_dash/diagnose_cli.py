"""`orpo-dash diagnose METRICS_FILE`: run the pitfall detectors over a finished (or running) run's metrics.

Exit status: 0 when no critical alert opened, 1 when one did, 2 on bad input.
--json prints a list of the alerts that opened (escalations included), each
{"kind","severity","onset_step","step","message","advice","closed_step"}; closed_step is the step
where it cleared, or null when it was still open at the end. Closing records are folded into
closed_step rather than listed separately.

The file is streamed through the alert engine one step at a time (memory does not grow with the run);
what the reader skipped (an incomplete last line) is printed as a note on stderr. A run shorter than the
detectors need gets "too short to judge", not "no pitfalls".
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import repeat

from orpo_dash import metric_names as m
from orpo_dash.diagnostics import THRESHOLDS, Alert, AlertEngine, MetricsFileError, diagnose, load_metrics_file
from orpo_dash.diagnostics.alerts import resolve_thresholds
from orpo_dash.diagnostics.loading import MetricsStream, StepsOutOfOrder


def _parse_threshold(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold {key!r} needs a number, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orpo-dash diagnose",
        description="Check a run's metrics for known ORPO pitfalls (see docs/alerts.md).",
        epilog="thresholds: " + "; ".join(f"{k}={v[0]:g}" for k, v in THRESHOLDS.items()),
    )
    p.add_argument("metrics_file", help="our trainer's --metrics-out JSONL, or a TRL/HF log history as CSV/JSONL")
    p.add_argument("--json", action="store_true", help="print the alerts as a JSON list")
    p.add_argument("--threshold", action="append", default=[], type=_parse_threshold, metavar="KEY=VALUE",
                   help="override one detector threshold (repeatable)")
    p.add_argument("--source", choices=m.SOURCES, default=None,
                   help="whose a bare 'log_odds_ratio' is, when the file cannot tell: TRL's ORPOTrainer (minus the "
                        "OR loss) or our trainer (the log odds ratio); see docs/metrics.md")
    return p


def summarize(changes: list[Alert]) -> list[dict[str, object]]:
    """Opened alerts in order, each with the step where it closed (or None)."""
    out: list[dict[str, object]] = []
    live: dict[str, dict[str, object]] = {}
    for c in changes:
        if c.state == "open":
            rec = {"kind": c.kind, "severity": c.severity, "onset_step": c.onset_step, "step": c.step,
                   "message": c.message, "details": c.details, "advice": c.advice, "closed_step": None}
            out.append(rec)
            if c.kind in live:  # an escalation supersedes the warning it escalates
                live[c.kind]["closed_step"] = c.step
            live[c.kind] = rec
        elif c.kind in live:
            live.pop(c.kind)["closed_step"] = c.step
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        run = _diagnose_file(args.metrics_file, dict(args.threshold), args.source)
    except (MetricsFileError, ValueError) as exc:
        print(f"orpo-dash diagnose: error: {exc}", file=sys.stderr)
        return 2
    for note in run.notes:
        print(f"orpo-dash diagnose: note: {note}", file=sys.stderr)
    alerts = summarize(run.changes)
    too_short = _too_short(run, dict(args.threshold))
    if args.json:
        print(json.dumps(alerts, indent=2))
        if too_short:
            print(f"orpo-dash diagnose: note: {too_short}", file=sys.stderr)
    elif not alerts:
        print(too_short or f"No pitfalls detected in {args.metrics_file} ({len(run.metrics)} metrics, "
                           f"{run.steps} steps).")
    else:
        for rec in alerts:
            until = f", cleared at step {rec['closed_step']}" if rec["closed_step"] is not None else ", still open"
            print(f"[{str(rec['severity']).upper()}] {rec['kind']} at step {rec['step']} "
                  f"(evidence from step {rec['onset_step']}{until})")
            print(f"    {rec['message']}")
            if rec["details"]:
                print(f"    details: {rec['details']}")
            print(f"    advice: {rec['advice']}")
        if too_short:
            print(too_short)
    return 1 if any(rec["severity"] == "critical" for rec in alerts) else 0


class _Diagnosis:
    def __init__(self, changes: list[Alert], notes: list[str], steps: int, last_step: int | None,
                 metrics: set[str]) -> None:
        self.changes, self.notes, self.steps, self.last_step, self.metrics = changes, notes, steps, last_step, metrics


def _diagnose_file(path: str, thresholds: dict[str, float], source: str | None) -> _Diagnosis:
    """Stream the file through one engine; a file that goes back in steps (a resumed run) is sorted first."""
    engine = AlertEngine(thresholds)
    stream = MetricsStream(path, source=source)
    metrics: set[str] = set()
    try:
        changes = engine.feed(_noting_names(stream, metrics)) + engine.flush()
    except StepsOutOfOrder:
        notes: list[str] = []
        series = load_metrics_file(path, source=source, notes=notes)
        steps = sorted({s for points in series.values() for s in points.steps.tolist()})
        notes.append("steps go back somewhere in the file (a resumed run?): the last value logged for a step wins")
        return _Diagnosis(diagnose(series, thresholds), notes, len(steps), steps[-1] if steps else None, set(series))
    if not metrics:
        raise MetricsFileError(f"{path}: no numeric metrics found")
    return _Diagnosis(changes, stream.notes, stream.steps, stream.last_step, metrics)


def _noting_names(stream: MetricsStream, seen: set[str]):  # type: ignore[no-untyped-def]
    shapes: set[tuple[str, ...]] = set()
    for step, names, values in stream:
        if names not in shapes:
            shapes.add(names)
            seen.update(names)
        yield from zip(repeat(step), names, values)  # noqa: B905 (repeat() is endless on purpose)


def _too_short(run: _Diagnosis, overrides: dict[str, float]) -> str:
    """Why the detectors could not judge this run yet ("" when they could)."""
    th = resolve_thresholds(overrides)
    window, min_step = int(th.get("window", 40)), int(th.get("min_step", 60))
    if run.steps >= window or (run.last_step or 0) >= min_step:
        return ""
    return (f"Too short to judge: {run.steps} logged steps (last step {run.last_step}). The trend checks need "
            f"{window} logged points and the 'not learning' checks start at step {min_step}; only non-finite "
            "values were checked. Diagnose the file again when the run has gone further.")


if __name__ == "__main__":
    sys.exit(main())
