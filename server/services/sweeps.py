"""Sweeps: create a sweep's runs, estimate its time, read it back with its runs' results, stop it.

The spec itself (axis text, grid/random expansion, validation) is orpo_dash/sweep_spec.py; the launch
limit per sweep is applied where queued runs are claimed (runs.claim_queued_runs), and the early stop
on a critical alert where alerts are recorded (ingest.apply_batch -> stop_on_critical here).
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orpo_dash.metric_names import ACCURACY, EVAL_PREFIX, LOG_ODDS_RATIO, LOSS
from orpo_dash.protocol import TERMINAL_STATUSES
from orpo_dash.sweep_spec import SweepPlan, run_name
from server.models import Alert, LogLine, Run, Sweep
from server.schemas import SweepCreate, SweepPublic, SweepRunPublic, SweepSettingPublic, SweepSummary
from server.services import runs as run_service

# The results a sweep's table and chart compare runs by (orpo_dash/metric_names.py).
SWEEP_METRICS = [EVAL_PREFIX + LOSS, EVAL_PREFIX + ACCURACY, EVAL_PREFIX + LOG_ODDS_RATIO]
# Completed runs of the same model an estimate is taken from: the most recent ones.
ESTIMATE_FROM_RUNS = 20
MAX_SWEEP_ID = run_service.MAX_RUN_ID


def get_sweep(*, session: Session, sweep_id: int) -> Sweep | None:
    if not 1 <= sweep_id <= MAX_SWEEP_ID:
        return None
    return session.get(Sweep, sweep_id)


def create_sweep(
    *, session: Session, sweep_in: SweepCreate, plan: SweepPlan, runs_dir: Path, output_root: Path,
    dataset_pairs: int | None, created_by: str | None,
) -> tuple[Sweep, list[Run]]:
    """Insert the sweep and its runs, queued in setting order (seeds of one setting together)."""
    sweep = Sweep(
        name=sweep_in.name, mode=sweep_in.mode, axes=dict(sweep_in.axes), fields=list(sweep_in.axes),
        base_config=plan.base.model_dump(mode="json"), count=sweep_in.count if sweep_in.mode == "random" else None,
        random_seed=sweep_in.random_seed, seeds=sweep_in.seeds, max_concurrent=sweep_in.max_concurrent,
        stop_on_critical=sweep_in.stop_on_critical, created_by=created_by,
    )
    session.add(sweep)
    session.flush()  # assigns sweep.id, which the runs carry
    runs = []
    for setting in plan.settings:
        for config in setting.configs:
            run, _token = run_service.create_run(
                session=session, config=config, name=run_name(sweep.name, setting.values, config.seed),
                runs_dir=runs_dir, output_root=output_root, launched=True, dataset_pairs=dataset_pairs,
            )
            run.sweep_id = sweep.id
            run.tags = [f"sweep:{sweep.id}"]
            run.created_by = created_by
            runs.append(run)
    session.flush()
    return sweep, runs


def estimate(
    *, session: Session, plan: SweepPlan, dataset_pairs: int | None, parallel: int,
) -> tuple[float | None, str]:
    """Seconds the whole sweep should take, and a sentence saying where that comes from (or why not).

    From completed runs of the same model: their wall-clock seconds per step (model loading and
    evaluation included), median over the most recent ones, times each run's planned steps, divided by
    the runs trained side by side. Time spent waiting behind other queued runs is not counted.
    """
    model = plan.base.model
    rows = session.execute(
        select(Run.started_at, Run.finished_at, Run.last_step, Run.config)
        .where(Run.status == "completed", Run.last_step > 0, Run.started_at.is_not(None), Run.finished_at.is_not(None))
        .order_by(Run.id.desc())
    )
    rates = []
    for started, finished, last_step, config in rows:
        if config.get("model") != model:
            continue
        seconds = (finished - started).total_seconds()
        if seconds > 0 and last_step:
            rates.append(seconds / last_step)
        if len(rates) >= ESTIMATE_FROM_RUNS:
            break
    if not rates:
        return None, f"no completed run of {model} yet to time a step by: the estimate comes once one has finished"
    steps = [run_service.planned_steps(config, dataset_pairs) for setting in plan.settings for config in setting.configs]
    if any(planned is None for planned in steps):
        return None, ("the runs are bounded by num_epochs and the dataset's size is unknown here: "
                      "set max_steps for an estimate")
    per_step = statistics.median(rates)
    total_steps = sum(int(planned or 0) for planned in steps)
    seconds = per_step * total_steps / max(1, parallel)
    return seconds, (f"{per_step:.3g} s per step (median of {len(rates)} completed run(s) of {model}, wall clock with "
                     f"loading and evaluation) x {total_steps} steps, {parallel} run(s) at a time; "
                     "waiting behind other queued runs not included")


def list_sweeps(*, session: Session) -> list[SweepSummary]:
    counts: dict[int, Counter[str]] = {}
    for sweep_id, status, number in session.execute(
        select(Run.sweep_id, Run.status, func.count()).where(Run.sweep_id.is_not(None)).group_by(Run.sweep_id, Run.status)
    ):
        if sweep_id is not None:
            counts.setdefault(sweep_id, Counter())[status] = number
    return [
        SweepSummary(id=sweep.id, name=sweep.name, created_at=sweep.created_at,
                     run_count=sum(counts.get(sweep.id, Counter()).values()),
                     status_counts=dict(counts.get(sweep.id, Counter())))
        for sweep in session.scalars(select(Sweep).order_by(Sweep.id.desc()))
    ]


def sweep_runs(*, session: Session, sweep_id: int) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def public_sweep(*, session: Session, sweep: Sweep) -> SweepPublic:
    """The sweep with each run's swept values, final and best eval metrics and alert counts, and per
    setting the mean and standard deviation (n - 1) of the final metrics over its seeds."""
    runs = sweep_runs(session=session, sweep_id=sweep.id)
    run_ids = [run.id for run in runs]
    bests = run_service.best_values(session=session, run_ids=run_ids, names=SWEEP_METRICS)
    alerts: dict[int, Counter[str]] = {run_id: Counter() for run_id in run_ids}
    if run_ids:
        for run_id, severity, number in session.execute(
            select(Alert.run_id, Alert.severity, func.count()).where(Alert.run_id.in_(run_ids))
            .group_by(Alert.run_id, Alert.severity)
        ):
            alerts[run_id][severity] = number
    public_runs = []
    groups: dict[tuple[Any, ...], list[SweepRunPublic]] = {}
    for run in runs:
        values = {name: run.config.get(name) for name in sweep.fields}
        latest = run.latest_metrics or {}
        one = SweepRunPublic(
            id=run.id, name=run.name, status=run.status, seed=run.config.get("seed"), values=values,
            final={name: latest.get(name) for name in SWEEP_METRICS},
            best={name: bests.get(run.id, {}).get(name) for name in SWEEP_METRICS},
            alerts=sum(alerts[run.id].values()), critical_alerts=alerts[run.id]["critical"],
        )
        public_runs.append(one)
        groups.setdefault(tuple(values.values()), []).append(one)
    settings = [_setting(members) for members in groups.values()]
    status_counts = Counter(run.status for run in runs)
    return SweepPublic(
        id=sweep.id, name=sweep.name, created_at=sweep.created_at, created_by=sweep.created_by, mode=sweep.mode,
        axes=sweep.axes, fields=sweep.fields, count=sweep.count, random_seed=sweep.random_seed, seeds=sweep.seeds,
        max_concurrent=sweep.max_concurrent, stop_on_critical=sweep.stop_on_critical,
        status_counts=dict(status_counts), metrics=SWEEP_METRICS, runs=public_runs, settings=settings,
    )


def _setting(members: list[SweepRunPublic]) -> SweepSettingPublic:
    mean: dict[str, float | None] = {}
    std: dict[str, float | None] = {}
    for name in SWEEP_METRICS:
        finals = [value for one in members if (value := one.final.get(name)) is not None and math.isfinite(value)]
        mean[name] = statistics.fmean(finals) if finals else None
        std[name] = statistics.stdev(finals) if len(finals) >= 2 else None
    return SweepSettingPublic(values=members[0].values, run_ids=[one.id for one in members], mean=mean, std=std,
                              n=len(members))


def stop_sweep(*, session: Session, sweep: Sweep) -> list[int]:
    """Stop every run of the sweep that has not ended: queued ones at once (so none starts next),
    running ones by a stop request. Returns the ids of the runs asked to stop."""
    asked = []
    for run in sweep_runs(session=session, sweep_id=sweep.id):
        if run.status in TERMINAL_STATUSES or run.status == "lost":
            continue
        run_service.request_stop(session=session, run=run)
        asked.append(run.id)
    return asked


def stop_on_critical(*, session: Session, run: Run, alert: Alert) -> LogLine | None:
    """A run of a sweep set to stop_on_critical opened a critical alert: ask it to stop, with the reason
    in its error and its log. Returns that log line when a stop was requested (the caller tells the
    worker), else None."""
    if run.sweep_id is None or run.stop_requested or alert.severity != "critical" or alert.state != "open":
        return None
    if run.status in TERMINAL_STATUSES:
        return None
    sweep = session.get(Sweep, run.sweep_id)
    if sweep is None or not sweep.stop_on_critical:
        return None
    reason = (f"stopped early by sweep {sweep.id} ({sweep.name}, stop_on_critical): critical alert "
              f"'{alert.kind}' at step {alert.step}: {alert.message}")
    run_service.request_stop(session=session, run=run)
    run.error = reason
    line = LogLine(run_id=run.id, time=time.time(), stream="dashboard", text=reason)
    session.add(line)
    return line
