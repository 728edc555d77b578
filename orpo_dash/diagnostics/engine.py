"""AlertEngine: feeds metric points through the detectors, with hysteresis, incrementally.

Ordering contract (what makes incremental == batch): points are handled one at a time in the
order given. A step is *finalized* (the trend detectors evaluate it) when the first point of a
later step arrives, or on flush(). So feeding one step-ordered stream in any batch sizes gives
the same state changes; only the last step waits for the next one (or for flush()).
non_finite is decided on the point itself, so it fires on the first bad step without waiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from orpo_dash.diagnostics import alerts as a
from orpo_dash.diagnostics import detectors as d

# Metrics whose NaN/Inf means the run itself is broken; NaN only elsewhere (say an inf grad norm
# on a step the fp16 loss scaler skips) opens a warning that escalates if the loss follows.
_CORE = ("loss", "nll_loss", "or_loss", "log_odds_ratio", "logps_chosen", "logps_rejected")


@dataclass
class _Hysteresis:
    alert: a.Alert | None = None
    streak: int = 0
    clear_streak: int = 0


class AlertEngine:
    def __init__(self, thresholds: Mapping[str, float] | None = None) -> None:
        self.th = a.resolve_thresholds(thresholds)
        self._series: dict[str, d.Series] = {}
        self._last_step: dict[str, int] = {}
        self._current: int | None = None  # the step not finalized yet
        self._state = {kind: _Hysteresis() for kind in a.KINDS}
        self._seen_versions: dict[str, tuple[int, ...]] = {}
        self._forgetting = d.ForgettingState()
        self._bad_now: list[str] = []  # non-finite metric names at the current step
        self._finite_steps = 0
        self._maxlen = int(self.th["window"])  # every detector looks back at most one window
        self._detectors: list[tuple[str, tuple[str, ...], Callable[..., d.Verdict | None]]] = [
            (a.LOG_ODDS_FLAT, ("log_odds_ratio",), d.log_odds_flat),
            (a.LOSS_RISING, ("loss",), d.loss_rising),
            (a.OVER_PENALIZATION, ("log_odds_ratio", "logps_chosen", "nll_loss"), d.over_penalization),
            (a.CATASTROPHIC_FORGETTING, ("eval/nll_loss", "eval/ppl_chosen"),
             lambda get, th, step: d.catastrophic_forgetting(get, th, step, self._forgetting)),
            (a.FORMAT_NOT_LEARNED, ("nll_loss", "logps_chosen", "ppl_chosen"), d.format_not_learned),
        ]

    # ----- public -----
    def feed(self, points: Iterable[tuple[int, str, float]]) -> list[a.Alert]:
        changes: list[a.Alert] = []
        for step, name, value in points:
            step, value = int(step), float(value)
            last = self._last_step.get(name)
            if last is not None and step <= last:
                continue  # a repeat of (name, step) already seen, or out of order for this name
            self._last_step[name] = step
            if self._current is None:
                self._current = step
            elif step > self._current:
                changes += self._finalize(self._current)
                self._current = step
            if math.isfinite(value):
                self._get_or_make(name).append(step, value)
            else:
                changes += self._non_finite_point(step, name, value)
        return changes

    def flush(self) -> list[a.Alert]:
        """Finalize the last step (end of run). Feeding more points afterwards is still allowed."""
        if self._current is None:
            return []
        changes = self._finalize(self._current)
        self._current = None
        return changes

    def open_alerts(self) -> list[a.Alert]:
        return [s.alert for s in self._state.values() if s.alert is not None]

    # ----- internals -----
    def _get_or_make(self, name: str) -> d.Series:
        if name not in self._series:
            self._series[name] = d.Series(self._maxlen)
        return self._series[name]

    def _get(self, name: str) -> d.Series | None:
        return self._series.get(name)

    def _non_finite_point(self, step: int, name: str, value: float) -> list[a.Alert]:
        self._bad_now.append(name)
        st = self._state[a.NON_FINITE]
        severity = a.CRITICAL if name in _CORE else a.WARNING
        msg = f"{name} = {value} at step {step}"
        if st.alert is None:
            st.alert = a.Alert(a.NON_FINITE, severity, step, step, "non-finite value: " + msg, a.ADVICE[a.NON_FINITE])
            return [st.alert]
        if severity == a.CRITICAL and st.alert.severity == a.WARNING:
            st.alert = a.Alert(a.NON_FINITE, a.CRITICAL, st.alert.onset_step, step,
                               f"non-finite value now in a core metric: {msg} (first at step {st.alert.onset_step})",
                               a.ADVICE[a.NON_FINITE])
            return [st.alert]
        return []

    def _finalize(self, step: int) -> list[a.Alert]:
        changes = self._close_non_finite(step)
        for kind, inputs, fn in self._detectors:
            versions = tuple(self._series[n].version if n in self._series else 0 for n in inputs)
            if versions == self._seen_versions.get(kind):
                continue  # nothing new for this detector: no evidence, no hysteresis tick
            self._seen_versions[kind] = versions
            verdict = fn(self._get, self.th, step)
            if verdict is not None:
                changes += self._tick(kind, step, verdict)
        return changes

    def _close_non_finite(self, step: int) -> list[a.Alert]:
        st = self._state[a.NON_FINITE]
        bad, self._bad_now = self._bad_now, []
        self._finite_steps = 0 if bad else self._finite_steps + 1
        if st.alert is not None and self._finite_steps >= self.th["nonfinite_clear_steps"]:
            closed = a.Alert(a.NON_FINITE, st.alert.severity, st.alert.onset_step, step,
                             f"all metrics finite for {self._finite_steps} steps", st.alert.advice, a.CLOSED)
            st.alert = None
            return [closed]
        return []

    def _tick(self, kind: str, step: int, v: d.Verdict) -> list[a.Alert]:
        st = self._state[kind]
        if st.alert is None:
            st.streak = st.streak + 1 if v.firing else 0
            if st.streak >= self.th["open_after"]:
                st.alert = a.Alert(kind, v.severity, v.onset_step, step, v.message, a.ADVICE[kind])
                st.streak = st.clear_streak = 0
                return [st.alert]
            return []
        st.clear_streak = st.clear_streak + 1 if v.clear else 0
        if st.clear_streak >= self.th["close_after"]:
            closed = a.Alert(kind, st.alert.severity, st.alert.onset_step, step,
                             f"cleared: {v.message}", st.alert.advice, a.CLOSED)
            st.alert, st.clear_streak = None, 0
            return [closed]
        if v.firing and v.severity == a.CRITICAL and st.alert.severity == a.WARNING:
            st.alert = a.Alert(kind, a.CRITICAL, st.alert.onset_step, step, v.message, a.ADVICE[kind])
            return [st.alert]
        return []


def diagnose(series: Mapping[str, Sequence[tuple[int, float]]], thresholds: Mapping[str, float] | None = None
             ) -> list[a.Alert]:
    """Every alert state change for a whole run: the series merged in step order through one engine."""
    points = sorted(
        ((int(step), name, float(value)) for name, pts in series.items() for step, value in pts),
        key=lambda p: p[0],  # stable: within a step, metrics keep the mapping's order
    )
    engine = AlertEngine(thresholds)
    return engine.feed(points) + engine.flush()
