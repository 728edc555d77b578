"""AlertEngine: feeds metric points through the detectors, with hysteresis, incrementally.

Ordering contract (what makes incremental == batch): points are handled one at a time in the
order given. A step is *finalized* (the trend detectors evaluate it) when the first point of a
later step arrives, or on flush(). So feeding one step-ordered stream in any batch sizes gives
the same state changes; only the last step waits for the next one (or for flush()).
non_finite is decided on the point itself, so it fires on the first bad step without waiting.

Cost: the detectors run on the first finalized step of each block of `check_every` steps (step //
check_every changed), a schedule fixed by the step numbers alone, so incremental == batch still holds;
a detector none of whose metrics got a new point since its last run is skipped (no hysteresis tick).
Only the metrics a detector reads are kept (bounded windows); every other point costs a few dict
lookups and a finiteness test. benchmarks/alerts/engine_speed.py measures it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orpo_dash import metric_names as m
from orpo_dash.diagnostics import advice as adv
from orpo_dash.diagnostics import alerts as a
from orpo_dash.diagnostics import detectors as d
from orpo_dash.metric_names import SYSTEM_PREFIX

# Metrics whose NaN/Inf means the run itself is broken; NaN only elsewhere (say an inf grad norm
# on a step the fp16 loss scaler skips) opens a warning that escalates if the loss follows.
# Bumped whenever state() changes shape: an older saved state is then rebuilt from history instead.
STATE_VERSION = 3

_CORE = (m.LOSS, m.NLL_LOSS, m.OR_LOSS, m.LOG_ODDS_RATIO, m.LOGPS_CHOSEN, m.LOGPS_REJECTED)


@dataclass
class _Hysteresis:
    alert: a.Alert | None = None
    streak: int = 0
    clear_streak: int = 0


class AlertEngine:
    """`planned_steps`: the run's planned length (max_steps, or the hello's total_steps; diagnose on a
    file takes its last step), which scales the step thresholds (alerts.for_planned_length); None keeps
    the defaults. `config`: the run's config, which advice is fitted to (None: unknown, e.g. a metrics
    file: advice from the numbers only, no suggested change). A keyword, so that it never lands in
    planned_steps."""

    def __init__(self, thresholds: Mapping[str, float] | None = None, planned_steps: int | None = None, *,
                 config: Mapping[str, Any] | None = None) -> None:
        self.planned_steps = planned_steps
        self.th = a.for_planned_length(a.resolve_thresholds(thresholds), planned_steps, keep=set(thresholds or ()))
        self._config = config
        self._series: dict[str, d.Series] = {}
        self._last_step: dict[str, int] = {}
        self._current: int | None = None  # the step not finalized yet
        self._state = {kind: _Hysteresis() for kind in a.KINDS}
        self._seen_versions: dict[str, tuple[int, ...]] = {}
        self._forgetting = d.EvalBest()
        self._eval_loss = d.EvalBest()
        self._blowup_seen = 0  # the loss series' version when the blow-up rule last looked
        self._penalization = d.PenalizationState()
        self._bad_now: list[str] = []  # non-finite metric names at the current step
        self._finite_steps = 0
        self._check_every = int(self.th["check_every"])
        self._open_after = {kind: self.th["forget_open_after" if kind == a.CATASTROPHIC_FORGETTING else "open_after"]
                            for kind in a.KINDS}
        self._last_block: int | None = None  # step // check_every of the last evaluation
        self._maxlen = int(self.th["long_window"])  # no detector looks back further
        self._detectors: list[tuple[str, tuple[str, ...], Callable[..., d.Verdict | None]]] = [
            (a.LOG_ODDS_FLAT, (m.LOG_ODDS_RATIO, m.NLL_LOSS),
             lambda get, th, step: d.log_odds_flat(get, th, step, self.planned_steps)),
            (a.LOSS_RISING, (m.LOSS, m.EVAL_PREFIX + m.LOSS),
             lambda get, th, step: d.loss_rising(get, th, step, self._eval_loss)),
            (a.OVER_PENALIZATION, (m.LOG_ODDS_RATIO, m.LOGPS_CHOSEN, m.NLL_LOSS, m.LOSS),
             lambda get, th, step: d.over_penalization(get, th, step, self._penalization)),
            (a.CATASTROPHIC_FORGETTING, (m.EVAL_PREFIX + m.NLL_LOSS, m.EVAL_PREFIX + m.PPL_CHOSEN, m.EVAL_PREFIX + m.LOSS),
             lambda get, th, step: d.catastrophic_forgetting(get, th, step, self._forgetting)),
            (a.FORMAT_NOT_LEARNED, (m.NLL_LOSS, m.LOGPS_CHOSEN, m.PPL_CHOSEN, m.LOG_ODDS_RATIO),
             lambda get, th, step: d.format_not_learned(get, th, step, self.planned_steps)),
        ]
        # Only these metrics are kept; the others are checked for NaN/Inf and dropped.
        for _, inputs, _ in self._detectors:
            for name in inputs:
                self._series.setdefault(name, d.Series(self._maxlen))
        # Kept beyond the detectors' inputs: the blow-up rule's evidence of the cause, and what advice reads.
        for name in (m.GRAD_NORM, m.LEARNING_RATE, *adv.CONTEXT_METRICS):
            self._series.setdefault(name, d.Series(self._maxlen))

    # ----- public -----
    def feed(self, points: Iterable[tuple[int, str, float]]) -> list[a.Alert]:
        changes: list[a.Alert] = []
        last_step, series, isfinite = self._last_step, self._series, math.isfinite
        current = self._current
        for step, name, value in points:
            last = last_step.get(name)
            if last is not None and step <= last:
                continue  # a repeat of (name, step) already seen, or out of order for this name
            last_step[name] = step
            if step != current:
                # Machine load (sys/, sampled every few seconds at whatever step the worker had reached) must not
                # finalize a step: that would move when the detectors run. Checked only here and for NaN below,
                # off the per-point path.
                if name.startswith(SYSTEM_PREFIX):
                    continue
                if current is None:
                    current = self._current = int(step)
                elif step > current:
                    changes += self._finalize(current)
                    current = self._current = int(step)
            if isfinite(value):
                s = series.get(name)
                if s is not None:
                    s.append(int(step), float(value))
            elif not name.startswith(SYSTEM_PREFIX):  # machine load says nothing about the training
                changes += self._non_finite_point(int(step), name, float(value))
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

    # ----- saving and restoring -----
    def state(self) -> dict[str, Any]:
        """Everything feed() has accumulated, as plain JSON-able values (Infinity/NaN included).

        Bounded by the windows, whatever the run's length: a restored engine continues exactly where
        this one stands, so a dashboard restart never replays a run's history through the detectors.
        Thresholds are not part of it; they come from the run's config again.
        """
        return {
            "version": STATE_VERSION,
            "series": {name: {"steps": list(s.steps), "values": list(s.values), "head": list(s.head),
                              "version": s.version} for name, s in self._series.items()},
            "last_step": dict(self._last_step),
            "current": self._current,
            "hysteresis": {kind: {"alert": None if h.alert is None else h.alert.to_dict(), "streak": h.streak,
                                  "clear_streak": h.clear_streak} for kind, h in self._state.items()},
            "seen_versions": {kind: list(v) for kind, v in self._seen_versions.items()},
            "forgetting": vars(self._forgetting).copy(),
            "eval_loss": vars(self._eval_loss).copy(),
            "blowup_seen": self._blowup_seen,
            "penalization": vars(self._penalization).copy(),
            "bad_now": list(self._bad_now),
            "finite_steps": self._finite_steps,
            "last_block": self._last_block,
        }

    @classmethod
    def restored(cls, state: Mapping[str, Any], thresholds: Mapping[str, float] | None = None,
                 planned_steps: int | None = None, *, config: Mapping[str, Any] | None = None) -> AlertEngine:
        """An engine continuing from state() (ValueError if the state is from another version)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"alert engine state version {state.get('version')!r}, expected {STATE_VERSION}")
        engine = cls(thresholds, planned_steps, config=config)
        for name, saved in state["series"].items():
            series = engine._series.setdefault(name, d.Series(engine._maxlen))
            series.steps.extend(saved["steps"])
            series.values.extend(saved["values"])
            series.head[:] = saved["head"]
            series.version = saved["version"]
        engine._last_step = {name: int(step) for name, step in state["last_step"].items()}
        engine._current = state["current"]
        for kind, saved in state["hysteresis"].items():
            alert = saved["alert"]
            engine._state[kind] = _Hysteresis(None if alert is None else a.Alert(**alert),
                                              saved["streak"], saved["clear_streak"])
        engine._seen_versions = {kind: tuple(v) for kind, v in state["seen_versions"].items()}
        vars(engine._forgetting).update(state["forgetting"])
        vars(engine._eval_loss).update(state["eval_loss"])
        engine._blowup_seen = state["blowup_seen"]
        vars(engine._penalization).update(state["penalization"])
        engine._bad_now = list(state["bad_now"])
        engine._finite_steps = state["finite_steps"]
        engine._last_block = state["last_block"]
        return engine

    def last_steps(self) -> dict[str, int]:
        """Per metric, the last step fed: points at or before it are ignored if fed again."""
        return dict(self._last_step)

    # ----- internals -----
    def _get(self, name: str) -> d.Series | None:
        s = self._series.get(name)
        return s if s is not None and s.version else None

    def _advice(self, kind: str, verdict: d.Verdict | None) -> dict[str, Any]:
        """Alert(advice=..., suggested_change=...) for `kind`, from the run's numbers and config."""
        numbers = {**adv.run_numbers(self._get), **(getattr(verdict, "evidence", None) or {})}
        fitted = adv.advise(kind, numbers, self._config)
        return {"advice": fitted.text, "suggested_change": fitted.change}

    def _non_finite_point(self, step: int, name: str, value: float) -> list[a.Alert]:
        self._bad_now.append(name)
        st = self._state[a.NON_FINITE]
        severity = a.CRITICAL if name in _CORE else a.WARNING
        msg = f"{name} = {value} at step {step}"
        if st.alert is None:
            st.alert = a.Alert(a.NON_FINITE, severity, step, step, "non-finite value: " + msg,
                               **self._advice(a.NON_FINITE, None))
            return [st.alert]
        if severity == a.CRITICAL and st.alert.severity == a.WARNING:
            st.alert = a.Alert(a.NON_FINITE, a.CRITICAL, st.alert.onset_step, step,
                               f"non-finite value now in a core metric: {msg} (first at step {st.alert.onset_step})",
                               **self._advice(a.NON_FINITE, None))
            return [st.alert]
        return []

    def _finalize(self, step: int) -> list[a.Alert]:
        changes = self._close_non_finite(step) + self._blowup(step)
        block = step // self._check_every
        if block == self._last_block:
            return changes
        self._last_block = block
        for kind, inputs, fn in self._detectors:
            versions = tuple(self._series[n].version for n in inputs)
            if versions == self._seen_versions.get(kind):
                continue  # nothing new for this detector: no evidence, no hysteresis tick
            self._seen_versions[kind] = versions
            verdict = fn(self._get, self.th, step)
            if verdict is not None:
                changes += self._tick(kind, step, verdict)
        return changes

    def _blowup(self, step: int) -> list[a.Alert]:
        """The change-point rule runs on every finalized step with a new loss point (a few comparisons on
        ~13 points): a blow-up opens loss_rising (critical) within blowup_points points of the jump."""
        loss = self._series[m.LOSS]
        if loss.version == self._blowup_seen:
            return []
        self._blowup_seen = loss.version
        v = d.loss_blowup(self._get, self.th, step)
        if v is None or not v.firing:
            return []
        st = self._state[a.LOSS_RISING]
        if st.alert is not None and st.alert.severity == a.CRITICAL:
            return []
        onset = v.onset_step if st.alert is None else st.alert.onset_step
        st.alert = a.Alert(a.LOSS_RISING, a.CRITICAL, onset, step, v.message, evidence=v.evidence,
                           details=v.details, **self._advice(a.LOSS_RISING, v))
        st.streak = st.clear_streak = 0
        return [st.alert]

    def _explained(self, kind: str) -> bool:
        """Whether an open alert names `kind` among the kinds its cause explains."""
        return any(kind in (h.alert.evidence.get("explains") or ())  # type: ignore[operator]
                   for h in self._state.values() if h.alert is not None)

    def _close_non_finite(self, step: int) -> list[a.Alert]:
        st = self._state[a.NON_FINITE]
        bad, self._bad_now = self._bad_now, []
        self._finite_steps = 0 if bad else self._finite_steps + 1
        if st.alert is not None and self._finite_steps >= self.th["nonfinite_clear_steps"]:
            closed = a.Alert(a.NON_FINITE, st.alert.severity, st.alert.onset_step, step,
                             f"all metrics finite for {self._finite_steps} steps", st.alert.advice, a.CLOSED,
                             suggested_change=st.alert.suggested_change)
            st.alert = None
            return [closed]
        return []

    def _tick(self, kind: str, step: int, v: d.Verdict) -> list[a.Alert]:
        st = self._state[kind]
        if st.alert is None:
            st.streak = st.streak + 1 if v.firing and not self._explained(kind) else 0
            if st.streak >= self._open_after[kind]:
                st.alert = a.Alert(kind, v.severity, v.onset_step, step, v.message, evidence=v.evidence,
                                   details=v.details, **self._advice(kind, v))
                st.streak = st.clear_streak = 0
                return [st.alert]
            return []
        st.clear_streak = st.clear_streak + 1 if v.clear else 0
        if st.clear_streak >= self.th["close_after"]:
            closed = a.Alert(kind, st.alert.severity, st.alert.onset_step, step,
                             f"cleared: {v.message}", st.alert.advice, a.CLOSED,
                             suggested_change=st.alert.suggested_change, details=v.details)
            st.alert, st.clear_streak = None, 0
            return [closed]
        if v.firing and v.severity == a.CRITICAL and st.alert.severity == a.WARNING:
            st.alert = a.Alert(kind, a.CRITICAL, st.alert.onset_step, step, v.message,
                               evidence=v.evidence or st.alert.evidence, details=v.details, **self._advice(kind, v))
            return [st.alert]
        return []


def diagnose(series: Mapping[str, Sequence[tuple[int, float]]], thresholds: Mapping[str, float] | None = None,
             planned_steps: int | None = None, *, config: Mapping[str, Any] | None = None) -> list[a.Alert]:
    """Every alert state change for a whole run: the series merged in step order through one engine.

    The run's planned length defaults to its last step: a finished run's file is as long as it was planned."""
    points = sorted(
        ((int(step), name, float(value)) for name, pts in series.items() for step, value in pts),
        key=lambda p: p[0],  # stable: within a step, metrics keep the mapping's order
    )
    if planned_steps is None and points:
        planned_steps = points[-1][0]
    engine = AlertEngine(thresholds, planned_steps, config=config)
    return engine.feed(points) + engine.flush()
