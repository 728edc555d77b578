"""`POST /api/imports`: a run made elsewhere, uploaded as one file, becomes a run with status `imported`.

The body is the file itself (any content type), its name in `?filename=` (the reader goes by it: `.gz`,
`.json`, `.csv`, `events.out.tfevents.*`, `.wandb`), or a folder as a `.zip`/`.tar`/`.tar.gz` archive
(orpo_dash/import_archive.py: a checkpoint, a TensorBoard log dir, a wandb/ folder, an MLflow mlruns/ folder). The request-limits middleware passes this body through unread
(server/request_limits.py); it is streamed to a temporary file here, after the caller's role is checked,
and refused past ORPO_DASH_MAX_IMPORT_BYTES.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from orpo_dash.diagnostics import Alert as AlertChange
from orpo_dash.import_archive import is_archive, read_archive
from orpo_dash.run_import import RunImportError, read_run
from server.auth import Caller, MemberDep, current_caller
from server.request_limits import import_too_large
from server.schemas import RunPublic
from server.services import imports
from server.services import runs as run_service

log = logging.getLogger(__name__)

IMPORT_WAIT_SECONDS = 600.0

router = APIRouter(prefix="/api", tags=["imports"], dependencies=[Depends(current_caller)])


@router.post("/imports", response_model=RunPublic, status_code=status.HTTP_201_CREATED)
async def import_run(
    request: Request,
    caller: MemberDep,
    filename: Annotated[str, Query(min_length=1, max_length=255, description="The uploaded file's name, e.g. "
                                   "trainer_state.json, metrics.jsonl.gz, events.out.tfevents.1700000000.host, "
                                   "run-abc123.wandb")],
    name: Annotated[str | None, Query(max_length=200, description="Run name (default: from the file)")] = None,
    source: Annotated[Literal["trl", "ours"] | None, Query(description="Whose a bare 'log_odds_ratio' is, when the "
                                                           "file cannot tell (docs/metrics.md)")] = None,
    model: Annotated[str | None, Query(max_length=500, description="The model the run trained, when the file does not "
                                       "say (a checkpoint folder's config.json does; `orpo-dash import` sends it)")] = None,
    mlflow_run: Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                                            description="Which MLflow run of an archived mlruns folder to import "
                                            "(default: the newest)")] = None,
) -> RunPublic:
    """Import a run from a TRL/Hugging Face trainer_state.json, our JSONL/CSV/JSON exports, a TensorBoard
    event file, a W&B history export or run-<id>.wandb file, the MLflow run document `orpo-dash import`
    writes, or a folder holding one of them (or an MLflow mlruns/ folder) as a zip or tar archive (the request body). Returns the new run; its alerts are the alert engine's over its metrics."""
    limit = request.app.state.settings.max_import_bytes
    with tempfile.TemporaryDirectory(prefix="orpo-dash-import-") as folder:
        path = Path(folder) / _safe_name(filename)
        size = 0
        with open(path, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(status_code=413, detail=import_too_large(limit))
                fh.write(chunk)
        if size == 0:
            raise _file_error(f"{filename}: the upload is empty; send the file's bytes as the request body")
        if mlflow_run and not is_archive(filename):
            raise _file_error(f"{filename}: mlflow_run picks a run of an archived mlruns folder (.zip, .tar, .tar.gz); "
                              "leave it out for a single file")
        return await run_in_threadpool(_import, request, path, filename, name, source, model, mlflow_run, caller)


def _import(request: Request, path: Path, filename: str, name: str | None, source: str | None, model: str | None,
            mlflow_run: str | None, caller: Caller) -> RunPublic:
    try:
        if is_archive(filename):
            imported = read_archive(path, display_name=filename, into=path.parent / "unpacked", source=source,
                                    limit_bytes=request.app.state.settings.max_import_bytes, mlflow_run=mlflow_run)
        else:
            imported = read_run(path, display_name=filename, source=source)
        imports.check_points(imported)
    except RunImportError as error:
        raise _file_error(str(error)) from None
    if model:
        imported.config.setdefault("model", model)
    # The alert engine judges the run in the judge process while the writer stores it; the writer's
    # transaction waits for its alerts at its end, so the run, points and alerts commit together or not at all.
    pool = request.app.state.judge_pool
    judgement = pool.submit(imported)
    writer = request.app.state.writer

    def changes() -> list[AlertChange]:
        try:
            return pool.result(judgement, imported, timeout=IMPORT_WAIT_SECONDS)
        except Exception as error:
            raise JudgementFailed(error) from error

    def write(session: Session) -> RunPublic:
        run = imports.store(session=session, imported=imported, judgement=changes, name=name,
                            created_by=caller.name, state=writer.state)
        session.flush()
        return run_service.public_run(session=session, run=run)

    # A long run is one transaction of millions of points: wait for it longer than for a page's write
    # (WRITE_WAIT_SECONDS), which a busy shared machine can exceed for an import while it is being made.
    try:
        return writer.submit(write).result(timeout=IMPORT_WAIT_SECONDS)
    except JudgementFailed as failed:
        log.error("the alert engine failed on an imported run (%s); nothing was stored", filename,
                  exc_info=failed.__cause__)
        raise HTTPException(status_code=500, detail=f"{filename}: the alert engine failed while judging this run "
                            f"({type(failed.__cause__).__name__}: {failed.__cause__}); nothing was stored. "
                            "Please report it with the file.") from None


class JudgementFailed(Exception):
    """The alert engine raised on the imported run (in the judge process or here): the import rolls back."""


def _safe_name(filename: str) -> str:
    """The upload's name as a plain file name (no folders), keeping what the reader goes by."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", filename.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return base[-150:] or "upload"


def _file_error(message: str) -> HTTPException:
    """422 with the reader's own sentence (it names the file, the line and the format expected)."""
    return HTTPException(status_code=422, detail=message)
