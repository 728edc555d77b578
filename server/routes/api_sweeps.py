"""JSON API for sweeps: preview, create, list, read, stop (docs/sweeps.md)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from orpo_dash.sweep_spec import SweepPlan, SweepSpecError, expand
from server.auth import MemberDep, current_caller, require
from server.db import SessionDep
from server.models import Sweep
from server.schemas import SweepCreate, SweepCreated, SweepPreview, SweepPublic, SweepSummary
from server.services import sweeps as sweep_service
from server.services.config_checks import check_config

router = APIRouter(prefix="/api", tags=["sweeps"], dependencies=[Depends(current_caller)])


def _field_errors_as_422(errors: dict[str, str]) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": None} for field, message in errors.items()]
    )


def _plan(sweep_in: SweepCreate, request: Request) -> tuple[SweepPlan, int | None]:
    """The sweep's runs, validated, and the dataset's pair count; a 422 naming every field at fault.
    The file checks are those of POST /api/runs, on the base config (axes only change numbers)."""
    config = {key: value for key, value in sweep_in.config.items() if key != "name"}  # runs are named after the sweep
    try:
        plan = expand(config, sweep_in.axes, mode=sweep_in.mode, count=sweep_in.count,
                      random_seed=sweep_in.random_seed, seeds=sweep_in.seeds)
    except SweepSpecError as error:
        raise _field_errors_as_422(error.errors) from None
    file_errors, preview = check_config(plan.base, roots=request.app.state.settings.path_roots())
    if file_errors:
        raise _field_errors_as_422({f"config.{name}": message for name, message in file_errors.items()})
    return plan, preview.count if preview is not None else None


def _parallel(sweep_in: SweepCreate, request: Request) -> int:
    return min(sweep_in.max_concurrent, request.app.state.settings.max_concurrent_runs)


def _get_sweep_or_404(session: Session, sweep_id: int) -> Sweep:
    sweep = sweep_service.get_sweep(session=session, sweep_id=sweep_id)
    if sweep is None:
        raise HTTPException(status_code=404, detail=f"sweep {sweep_id} not found")
    return sweep


@router.post("/sweeps/preview", response_model=SweepPreview, dependencies=[require("member")])
def preview_sweep(sweep_in: SweepCreate, request: Request, session: SessionDep) -> SweepPreview:
    """What POST /api/sweeps would make, without making it: the runs, their settings and the time."""
    plan, pairs = _plan(sweep_in, request)
    seconds, basis = sweep_service.estimate(session=session, plan=plan, dataset_pairs=pairs,
                                            parallel=_parallel(sweep_in, request))
    return SweepPreview(run_count=plan.run_count, estimated_seconds=seconds, estimate_basis=basis,
                        settings=[setting.values for setting in plan.settings])


@router.post("/sweeps", response_model=SweepCreated, status_code=status.HTTP_201_CREATED)
def create_sweep(sweep_in: SweepCreate, request: Request, session: SessionDep, caller: MemberDep) -> SweepCreated:
    plan, pairs = _plan(sweep_in, request)
    seconds, _basis = sweep_service.estimate(session=session, plan=plan, dataset_pairs=pairs,
                                             parallel=_parallel(sweep_in, request))
    settings = request.app.state.settings

    def insert(tx: Session) -> tuple[int, list[int]]:
        sweep, runs = sweep_service.create_sweep(
            session=tx, sweep_in=sweep_in, plan=plan, runs_dir=settings.runs_dir,
            output_root=settings.path_roots().output, dataset_pairs=pairs, created_by=caller.name,
        )
        return sweep.id, [run.id for run in runs]

    sweep_id, run_ids = request.app.state.writer.write(insert)
    request.app.state.launcher.wake()
    return SweepCreated(id=sweep_id, url=f"/sweeps/{sweep_id}", run_ids=run_ids, run_count=len(run_ids),
                        estimated_seconds=seconds)


@router.get("/sweeps", response_model=list[SweepSummary])
def list_sweeps(session: SessionDep) -> list[SweepSummary]:
    return sweep_service.list_sweeps(session=session)


@router.get("/sweeps/{sweep_id}", response_model=SweepPublic)
def read_sweep(sweep_id: int, session: SessionDep) -> SweepPublic:
    return sweep_service.public_sweep(session=session, sweep=_get_sweep_or_404(session, sweep_id))


@router.post("/sweeps/{sweep_id}/stop", response_model=SweepPublic)
def stop_sweep(sweep_id: int, request: Request, session: SessionDep, caller: MemberDep) -> SweepPublic:
    """Stop every queued or running run of the sweep together: queued ones are cancelled at once,
    running ones finish their step, save and report `stopped`."""
    sweep = _get_sweep_or_404(session, sweep_id)
    if caller.role != "admin" and (caller.name is None or sweep.created_by != caller.name):
        owner = sweep.created_by or "someone while auth was off"
        raise HTTPException(status_code=403, detail=f"sweep {sweep_id} was started by {owner}; only they or an admin can stop it")
    state = request.app.state

    def write(tx: Session) -> list[int]:
        return sweep_service.stop_sweep(session=tx, sweep=_get_sweep_or_404(tx, sweep_id))

    for run_id in state.writer.write(write):
        state.hub.command_worker_threadsafe(run_id, {"type": "stop"})
        state.launcher.stop(run_id)
        state.announce_run(run_id)
    session.expire_all()
    return sweep_service.public_sweep(session=session, sweep=_get_sweep_or_404(session, sweep_id))
