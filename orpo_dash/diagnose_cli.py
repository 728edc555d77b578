"""`orpo-dash diagnose METRICS_FILE`: run the pitfall detectors over a finished (or running) run's metrics.

Exit status: 0 when no critical alert opened, 1 when one did, 2 on bad input.
--json prints a list of the alerts that opened (escalations included), each
{"kind","severity","onset_step","step","message","advice","closed_step"}; closed_step is the step
where it cleared, or null when it was still open at the end. Closing records are folded into
closed_step rather than listed separately.
"""

from __future__ import annotations

import argparse
import json
import sys

from orpo_dash.diagnostics import THRESHOLDS, Alert, MetricsFileError, diagnose, load_metrics_file


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
    return p


def summarize(changes: list[Alert]) -> list[dict[str, object]]:
    """Opened alerts in order, each with the step where it closed (or None)."""
    out: list[dict[str, object]] = []
    live: dict[str, dict[str, object]] = {}
    for c in changes:
        if c.state == "open":
            rec = {"kind": c.kind, "severity": c.severity, "onset_step": c.onset_step, "step": c.step,
                   "message": c.message, "advice": c.advice, "closed_step": None}
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
        series = load_metrics_file(args.metrics_file)
        changes = diagnose(series, dict(args.threshold))
    except (MetricsFileError, ValueError) as exc:
        print(f"orpo-dash diagnose: error: {exc}", file=sys.stderr)
        return 2
    alerts = summarize(changes)
    if args.json:
        print(json.dumps(alerts, indent=2))
    elif not alerts:
        print(f"No pitfalls detected in {args.metrics_file} ({len(series)} metrics).")
    else:
        for rec in alerts:
            until = f", cleared at step {rec['closed_step']}" if rec["closed_step"] is not None else ", still open"
            print(f"[{str(rec['severity']).upper()}] {rec['kind']} at step {rec['step']} "
                  f"(evidence from step {rec['onset_step']}{until})")
            print(f"    {rec['message']}")
            print(f"    advice: {rec['advice']}")
    return 1 if any(rec["severity"] == "critical" for rec in alerts) else 0


if __name__ == "__main__":
    sys.exit(main())
