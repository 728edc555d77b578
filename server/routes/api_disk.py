"""Disk: how much the data folder and the runs' checkpoints take, and deleting a run's checkpoints
while keeping the run (server/services/disk_usage.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from server.auth import MemberDep, current_caller, ensure_may_change
from server.db import SessionDep
from server.schemas import CheckpointsDeleted, StoragePublic
from server.services import disk_usage
from server.services import runs as run_service

router = APIRouter(prefix="/api", tags=["disk"], dependencies=[Depends(current_caller)])


@router.get("/storage", response_model=StoragePublic)
def read_storage(request: Request, session: SessionDep) -> StoragePublic:
    """The data folder's size, every run's checkpoints together, and the free space on its disk."""
    settings = request.app.state.settings
    usage = disk_usage.storage(data_dir=settings.data_dir, output_root=settings.path_roots().output,
                               runs=run_service.list_runs(session=session))
    return StoragePublic(**vars(usage))


@router.delete("/runs/{run_id}/checkpoints", response_model=CheckpointsDeleted)
def delete_checkpoints(run_id: int, request: Request, session: SessionDep, caller: MemberDep) -> CheckpointsDeleted:
    """Delete the run's checkpoint folders; its metrics, logs and samples stay. Refused (409) while it is
    queued or running, and for an output folder outside the output root."""
    run = run_service.get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    ensure_may_change(caller, run)
    try:
        deleted, freed = disk_usage.delete_checkpoints(run, output_root=request.app.state.settings.path_roots().output)
    except disk_usage.CannotDelete as refused:
        raise HTTPException(status_code=409, detail=str(refused)) from None
    request.app.state.announce_run(run_id)
    return CheckpointsDeleted(deleted=deleted, freed_bytes=freed)
