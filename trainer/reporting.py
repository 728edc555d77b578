"""How the training loop talks to the outside world: metrics, status, log lines, samples, stop.

The loop only sees the `Reporter` protocol. Implementations here write a metrics file, print to
a console, fan out to several reporters, or do nothing; `trainer.streaming.StreamingReporter`
sends everything to the dashboard server. Imports no torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Protocol, runtime_checkable


@runtime_checkable
class Reporter(Protocol):
    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Record metric values at an optimizer step. Must never block the loop."""

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        """"running" (with total_steps) | "completed" | "failed" (with error) | "stopped"."""

    def log(self, text: str) -> None:
        """One run-log line (dropped pairs, warnings, tracebacks)."""

    def samples(self, step: int, samples: list[dict]) -> None:
        """Generations at a step: [{"prompt": ..., "completion": ...}]."""

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        """What the run is doing now (orpo_dash.protocol.PHASES), with its own progress where it has one.
        Optional: the recipe skips reporters written before phases existed."""

    def stop_requested(self) -> bool:
        """True once someone asked the run to stop gracefully."""

    def close(self) -> None:
        """Flush and release resources; called once at the end."""


class NullReporter:
    """Drops everything; never asks to stop."""

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        pass

    def log(self, text: str) -> None:
        pass

    def samples(self, step: int, samples: list[dict]) -> None:
        pass

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        pass

    def stop_requested(self) -> bool:
        return False

    def close(self) -> None:
        pass


class MetricsFileReporter(NullReporter):
    """JSON lines, one flat object per `metrics` call: {"step": 12, "epoch": 0.4, "loss": 2.31, ...}.

    Train and eval metrics are reported by separate calls, so an eval result is its own line with
    the same step and `eval/`-prefixed keys: {"step": 12, "eval/loss": 2.40, ...}. Readers merge
    lines by step. Non-finite values (a float16 overflow step) are written as null, keeping the
    file strict JSON.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: each line reaches the file as it is written, and a resumed run
        # continues the same file.
        self._file: IO[str] = self.path.open("a", encoding="utf-8", buffering=1)

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        row: dict[str, float | int | None] = {"step": step}
        for key, value in values.items():
            row[key] = float(value) if math.isfinite(value) else None
        self._file.write(json.dumps(row) + "\n")

    def close(self) -> None:
        self._file.close()


class ConsoleReporter(NullReporter):
    """Human-readable progress on a stream (stderr by default) for command-line runs.

    `forward` also receives the progress lines (steps, status, phases) that no other reporter turns into log
    lines: a streaming worker passes its log tail here, so the dashboard's worker-log panel shows what
    worker.log shows. (The console stream itself is bound before stderr is teed to the dashboard, and
    log() lines reach the dashboard on their own, so forwarding those would show them twice.)
    """

    SHOWN = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "accuracy", "learning_rate", "grad_norm")

    def __init__(self, stream: IO[str] | None = None, *, forward: Callable[[str], None] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.forward = forward

    def _print(self, text: str, *, forward: bool = False) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=self.stream, flush=True)
        if forward and self.forward is not None:
            self.forward(text)

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        shown = [(k, v) for k, v in values.items() if k.removeprefix("eval/") in self.SHOWN]
        if not shown:
            return  # a report of sys/ metrics only: machine load is for the charts, not a progress line
        self._print(f"step {step}: " + " ".join(f"{k}={v:.4g}" for k, v in shown), forward=True)

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        extra = f" ({total_steps} steps)" if total_steps is not None else ""
        self._print(f"status: {status}{extra}" + (f": {error}" if error else ""), forward=True)

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        # Only where a phase begins: one line per eval batch would bury the step lines.
        if not done and name != "training":
            self._print(f"phase: {name}" + (f" ({total} parts)" if total else "") + "…", forward=True)

    def log(self, text: str) -> None:
        self._print(text)

    def samples(self, step: int, samples: list[dict]) -> None:
        for sample in samples:
            self._print(f"sample @ {step}: {sample['prompt']!r} -> {sample['completion']!r}")


class MultiReporter:
    """Fans every call out to several reporters; stop is requested if any of them requests it."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = list(reporters)

    def metrics(self, step: int, values: Mapping[str, float]) -> None:
        for r in self.reporters:
            r.metrics(step, values)

    def status(self, status: str, *, total_steps: int | None = None, error: str | None = None) -> None:
        for r in self.reporters:
            r.status(status, total_steps=total_steps, error=error)

    def log(self, text: str) -> None:
        for r in self.reporters:
            r.log(text)

    def samples(self, step: int, samples: list[dict]) -> None:
        for r in self.reporters:
            r.samples(step, samples)

    def phase(self, name: str, *, done: int | None = None, total: int | None = None) -> None:
        for r in self.reporters:
            if (report := getattr(r, "phase", None)) is not None:  # reporters written before phases: skipped
                report(name, done=done, total=total)

    def stop_requested(self) -> bool:
        return any(r.stop_requested() for r in self.reporters)

    def close(self) -> None:
        for r in self.reporters:
            r.close()
