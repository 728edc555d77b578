"""JSON API for runs: create, list, read, rename/tag, delete, stop, metrics, logs, samples, export."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from orpo_dash.config_advice import advise
from orpo_dash.config_errors import explain
from orpo_dash.protocol import RunStatus, shown
from orpo_dash.run_config import RunConfig
from server.auth import MemberDep, current_caller, ensure_may_change, require
from server.db import SessionDep
from server.models import Run
from server.schemas import (
    AlertPublic,
    LogLinePublic,
    MetricsResponse,
    RunCreate,
    RunPublic,
    RunRegistered,
    RunUpdate,
    SamplePublic,
    ValidationResult,
)
from server.services import export as export_service
from server.services import metrics as metric_service
from server.services import run_status
from server.services import runs as run_service
from server.services.allowed_paths import refused_paths
from server.services.config_checks import check_config, check_payload
from server.services.hub_cache import hub_model_warning

router = APIRouter(prefix="/api", tags=["runs"], dependencies=[Depends(current_caller)])

MAX_POINTS_LIMIT = 20000
EXPORT_MEDIA_TYPES = {"csv": "text/csv", "json": "application/json"}


def _get_run_or_404(session: Session, run_id: int) -> Run:
    run = run_service.get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run


def _field_errors_as_422(errors: dict[str, str]) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None} for field, message in errors.items()]
    )


@router.post("/runs/validate", response_model=ValidationResult, dependencies=[require("member")])
def validate_run(payload: Annotated[dict[str, Any], Body()], request: Request) -> ValidationResult:
    """Check a would-be run without creating it: per-field errors and a dataset preview."""
    roots = request.app.state.settings.path_roots()
    try:
        run_in = RunCreate.model_validate(payload)
    except ValidationError as error:
        # Report the file checks too, so one round trip shows every problem on the form.
        file_errors, preview = check_payload(payload, roots=roots)
        schema_errors = explain(error.errors())
        return ValidationResult(ok=False, errors={**file_errors, **schema_errors}, preview=preview)
    config = run_in.run_config()
    errors, preview = check_config(config, roots=roots)
    return ValidationResult(ok=not errors, errors=errors, preview=preview,
                            advice={**advise(config), **_machine_warnings(config, request)})


def _machine_warnings(config: RunConfig, request: Request) -> dict[str, str]:
    """What may fail on the machine that trains: only known for the local launcher's workers."""
    settings = request.app.state.settings
    if settings.launcher != "local" or not settings.launch_workers:
        return {}
    warning = hub_model_warning(config.model, cache_dir=settings.hub_cache_dir())
    return {"model": warning} if warning else {}


@router.post("/runs", response_model=RunPublic | RunRegistered, status_code=status.HTTP_201_CREATED)
def create_run(
    run_in: RunCreate,
    request: Request,
    session: SessionDep,
    caller: MemberDep,
    launch: Annotated[bool, Query(description="Start a local worker; false registers the run for an external worker and returns its token.")] = True,
) -> RunPublic | RunRegistered:
    config = run_in.run_config()
    settings = request.app.state.settings
    dataset_pairs = None
    if launch:
        errors, preview = check_config(config, roots=settings.path_roots())
        dataset_pairs = preview.count if preview is not None else None
    elif settings.shared:
        # An external worker's paths (launch=false): on a shared dashboard they must lie inside the same
        # roots as a launched run's, with the same refusal. Only the roots are checked, not the files: the
        # worker may run on another machine (one with the same folders mounted, say), and has already
        # opened them itself.
        errors = refused_paths(config.model_dump(mode="json"), settings.path_roots())
    else:
        # Loopback without auth: the only caller is this machine's user, and the paths are the worker's
        # own labels, stored in the config and shown, never opened by the dashboard (run.output_dir,
        # the one folder it lists and serves, is set only inside the output root; server/services/runs.py).
        errors = {}
    # "Clone with this fix": the parent run and its alert must exist and belong together.
    errors = {**run_service.lineage_errors(session=session, parent_run_id=run_in.parent_run_id,
                                           from_alert_id=run_in.from_alert_id), **errors}
    if errors:
        raise _field_errors_as_422(errors)
    state = request.app.state

    def insert(session: Session) -> tuple[RunPublic, str]:
        run, token = run_service.create_run(
            session=session, config=config, name=run_in.name, runs_dir=state.settings.runs_dir,
            output_root=state.settings.path_roots().output, launched=launch, dataset_pairs=dataset_pairs,
        )
        run.created_by = caller.name
        run.parent_run_id, run.from_alert_id = run_in.parent_run_id, run_in.from_alert_id
        if not launch:
            run_status.mark_running(run, started_at=run.created_at)  # its worker is the caller, already running
        session.flush()
        return run_service.public_run(session=session, run=run), token

    public, token = state.writer.write(insert)
    if launch:
        state.launcher.wake()
        return public
    return RunRegistered(**public.model_dump(), worker_token=token)


@router.get("/runs", response_model=list[RunPublic])
def list_runs(
    session: SessionDep,
    status_filter: Annotated[RunStatus | None, Query(alias="status", description="Only runs with this status.")] = None,
    q: Annotated[str | None, Query(description="Text search over name, status, model, dataset and tags.")] = None,
    best: Annotated[str | None, Query(max_length=2000, description="Comma-separated metric names (e.g. eval/loss,accuracy) "
                                      "whose best logged value each run should carry in `best`.")] = None,
    sweep: Annotated[int | None, Query(ge=1, le=run_service.MAX_RUN_ID, description="Only the runs of this sweep.")] = None,
) -> list[RunPublic]:
    runs = run_service.list_runs(session=session, status=status_filter, query=q, sweep_id=sweep)
    names = [name.strip() for name in (best or "").split(",") if name.strip()]
    return run_service.public_runs(session=session, runs=runs, best=names)


@router.get("/runs/{run_id}", response_model=RunPublic)
def read_run(run_id: int, session: SessionDep) -> RunPublic:
    run = _get_run_or_404(session, run_id)
    return run_service.public_run(session=session, run=run)


@router.patch("/runs/{run_id}", response_model=RunPublic, dependencies=[require("member")])
def update_run(run_id: int, update: RunUpdate, request: Request, session: SessionDep) -> RunPublic:
    _get_run_or_404(session, run_id)

    def write(tx: Session) -> RunPublic:
        run = _get_run_or_404(tx, run_id)
        run_service.update_run(session=tx, run=run, name=update.name, tags=update.tags)
        return run_service.public_run(session=tx, run=run)

    public = request.app.state.writer.write(write)
    request.app.state.announce_run(run_id)
    return public


@router.delete("/runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_run(run_id: int, request: Request, session: SessionDep, caller: MemberDep) -> Response:
    ensure_may_change(caller, _get_run_or_404(session, run_id))
    request.app.state.launcher.stop(run_id)

    def write(tx: Session) -> None:
        run = _get_run_or_404(tx, run_id)
        run_service.delete_run(session=tx, run=run)

    request.app.state.writer.write(write)
    request.app.state.writer.forget_run(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/runs/{run_id}/stop", response_model=RunPublic)
def stop_run(run_id: int, request: Request, session: SessionDep, caller: MemberDep) -> RunPublic:
    """Graceful stop: the worker finishes its step, saves a checkpoint and reports `stopped`. A queued run
    has neither: it is cancelled (`stopped`) at once."""
    ensure_may_change(caller, _get_run_or_404(session, run_id))

    def write(tx: Session) -> RunPublic:
        run = _get_run_or_404(tx, run_id)
        run_service.request_stop(session=tx, run=run)
        return run_service.public_run(session=tx, run=run)

    public = request.app.state.writer.write(write)
    request.app.state.hub.command_worker_threadsafe(run_id, {"type": "stop"})
    request.app.state.launcher.stop(run_id)
    request.app.state.announce_run(run_id)
    return public


@router.get("/runs/{run_id}/metrics", response_model=MetricsResponse)
def read_metrics(
    run_id: int,
    session: SessionDep,
    names: Annotated[list[str] | None, Query(description="Metric names, comma-separated and/or repeated; none means all.")] = None,
    max_points: Annotated[int, Query(ge=4, le=MAX_POINTS_LIMIT, description="Downsample each series to about this many points (min/max per bucket kept).")] = 2000,
    min_step: Annotated[int | None, Query(ge=0, description="First step of the range (for zoom).")] = None,
    max_step: Annotated[int | None, Query(ge=0, description="Last step of the range (for zoom).")] = None,
) -> Response:
    _get_run_or_404(session, run_id)
    wanted = [n for given in names or [] for n in given.split(",") if n]
    wanted = wanted or metric_service.metric_names(session=session, run_id=run_id)
    series, downsampled = metric_service.read_series(
        session=session, run_id=run_id, names=wanted, max_points=max_points, min_step=min_step, max_step=max_step
    )
    # Encoded here with orjson from the columns as read, bypassing the response model's validation,
    # model_dump's copies and stdlib json: for the run page's first request (14 series of up to 2,000
    # points) those cost more than reading the data. The shape is MetricsResponse's
    # (tests/server/test_metrics_response.py checks it against the model).
    body = {"run_id": run_id, "series": {name: {"step": one.step, "value": one.value, "time": one.time}
                                         for name, one in series.items()}, "downsampled": downsampled}
    return Response(content=orjson.dumps(body), media_type="application/json")


@router.get("/runs/{run_id}/metric-names", response_model=list[str])
def read_metric_names(run_id: int, session: SessionDep) -> list[str]:
    _get_run_or_404(session, run_id)
    return metric_service.metric_names(session=session, run_id=run_id)


@router.get("/runs/{run_id}/alerts", response_model=list[AlertPublic])
def read_alerts(run_id: int, session: SessionDep) -> list[AlertPublic]:
    _get_run_or_404(session, run_id)
    return [AlertPublic.model_validate(a) for a in run_service.alerts_for(session=session, run_id=run_id)]


@router.get("/runs/{run_id}/logs", response_model=list[LogLinePublic])
def read_logs(run_id: int, session: SessionDep, tail: Annotated[int, Query(ge=1, le=5000)] = 200) -> list[LogLinePublic]:
    _get_run_or_404(session, run_id)
    return [LogLinePublic.model_validate(row) for row in run_service.recent_logs(session=session, run_id=run_id, tail=tail)]


@router.get("/runs/{run_id}/samples", response_model=list[SamplePublic])
def read_samples(run_id: int, session: SessionDep) -> list[SamplePublic]:
    _get_run_or_404(session, run_id)
    return [SamplePublic.model_validate(row) for row in run_service.samples_for(session=session, run_id=run_id)]


@router.get("/runs/{run_id}/export")
def export_run(
    run_id: int, request: Request, session: SessionDep, format: Literal["csv", "json"] = "csv"
) -> StreamingResponse:
    """Every point of every metric at full resolution, streamed."""
    run = _get_run_or_404(session, run_id)
    factory = request.app.state.session_factory
    headers = {"Content-Disposition": _attachment(f"{run.name or run_id}-metrics.{format}")}
    if format == "json":
        body = export_service.run_json(session_factory=factory, run_id=run_id)
    else:
        body = export_service.run_csv(session_factory=factory, run_id=run_id)
    return StreamingResponse(body, media_type=EXPORT_MEDIA_TYPES[format], headers=headers)


@router.get("/export")
def export_runs(
    request: Request,
    session: SessionDep,
    runs: Annotated[str, Query(description="Run ids, comma-separated, e.g. 1,2,3: one file in this order.")],
    format: Literal["csv", "json"] = "csv",
) -> StreamingResponse:
    """Several runs in one file: CSV with a leading run_id column, or a JSON array of single-run exports."""
    run_ids = _parse_run_ids(runs)
    for run_id in run_ids:
        _get_run_or_404(session, run_id)
    factory = request.app.state.session_factory
    if format == "json":
        body = export_service.runs_json(session_factory=factory, run_ids=run_ids)
    else:
        body = export_service.runs_csv(session_factory=factory, run_ids=run_ids)
    filename = f"orpo-runs-{'-'.join(map(str, run_ids))}.{format}"
    return StreamingResponse(body, media_type=EXPORT_MEDIA_TYPES[format], headers={"Content-Disposition": _attachment(filename)})


def _parse_run_ids(text: str) -> list[int]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    # ASCII digits only ("²".isdigit() is true, int() refuses it), and not thousands of them (int() refuses those too).
    if not parts or not all(part.isascii() and part.isdigit() and len(part) <= 100 for part in parts):
        raise _query_error_422("runs", f"runs must be run ids separated by commas, like runs=1,2,3; got {shown(text)}")
    return list(dict.fromkeys(int(part) for part in parts))  # a repeated id is exported once


def _query_error_422(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", field), "msg": message, "input": None}])


def _attachment(filename: str) -> str:
    """Content-Disposition for any run name: an ASCII fallback plus the RFC 5987 UTF-8 form, since
    header values are latin-1 and a name like "λ=0.1" or one with quotes would otherwise break it."""
    fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
