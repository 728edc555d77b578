"""Read-only access to a run's output files (checkpoints): a listing and single-file downloads,
confined to the run's output folder (see server/services/run_files.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel

from server.auth import current_caller
from server.db import SessionDep
from server.models import Run
from server.services import run_files
from server.services.runs import get_run

router = APIRouter(prefix="/api", tags=["files"], dependencies=[Depends(current_caller)])


class RunFilePublic(BaseModel):
    path: str
    size: int
    modified: float


class RunFilesResponse(BaseModel):
    run_id: int
    output_dir: str | None
    files: list[RunFilePublic]


def _run_or_404(session: SessionDep, run_id: int) -> Run:
    run = get_run(session=session, run_id=run_id)
    if run is None:
        raise HTTPException(status_code=404, detail=f"run {run_id} not found")
    return run


@router.get("/runs/{run_id}/files", response_model=RunFilesResponse)
def list_run_files(run_id: int, session: SessionDep) -> RunFilesResponse:
    """Every file under the run's output folder (relative paths), e.g. `checkpoint-200/model.safetensors`."""
    run = _run_or_404(session, run_id)
    files = [RunFilePublic(path=f.path, size=f.size, modified=f.modified) for f in run_files.list_files(run)]
    return RunFilesResponse(run_id=run_id, output_dir=run.output_dir, files=files)


@router.get("/runs/{run_id}/files/{path:path}", response_class=FileResponse)
def download_run_file(run_id: int, path: str, session: SessionDep) -> FileResponse:
    """One file from the run's output folder, as an attachment. Paths that resolve outside it get 403."""
    run = _run_or_404(session, run_id)
    try:
        file = run_files.resolve_file(run, path)
    except run_files.OutsideOutputDir:
        raise HTTPException(status_code=403, detail="that path is outside the run's output folder") from None
    if file is None:
        raise HTTPException(status_code=404, detail=f"no file {path!r} in run {run_id}'s output folder")
    return FileResponse(file, filename=file.name, media_type="application/octet-stream")
