"""Delivering what a local worker spilled to disk because the dashboard could not take it.

A worker that cannot reach the dashboard keeps its undelivered batches in a spill file next to its
checkpoints. The usual case is the dashboard itself going down: it stops its workers, and their last
step, final status and checkpoint lines arrive after its websockets have closed. The launcher knows
where such a file lands (the worker names it after the run and its pid), so it delivers it itself
once the worker has exited, instead of leaving the user an `orpo-dash upload` to run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from orpo_dash.protocol import (
    ProtocolError,
    batch,
    read_spill_file,
    spill_file_name,
    spill_file_pattern,
)
from server.models import Run
from server.services.ingest import RunEnded
from server.services.runs import token_matches
from server.writer import DatabaseWriter

log = logging.getLogger(__name__)

class RunDeleted(ProtocolError):
    """The run was deleted while its worker wound down: nothing is left to deliver to."""


def spill_file_of(*, config: Mapping[str, Any], run_id: int, pid: int, cwd: Path) -> Path:
    """Where the worker (trainer.worker.build_reporter) puts its spill file: its output_dir, else its cwd."""
    folder = Path(config["output_dir"]) if config.get("output_dir") else Path(".")
    return (cwd / folder) / spill_file_name(run_id, pid)


def spill_files_left_by(*, config: Mapping[str, Any], run_id: int, cwd: Path) -> list[Path]:
    """Spill files any of the run's workers left in its output folder (one per worker process)."""
    if not config.get("output_dir"):
        return []
    name = spill_file_pattern(run_id)
    folder = cwd / Path(config["output_dir"])
    return sorted(path for path in folder.glob("*.jsonl") if name.fullmatch(path.name))


def read_run_spill_file(path: Path, *, run_id: int) -> tuple[str, list[dict[str, Any]]]:
    """(the worker's token, its batches) from a spill file written for this run."""
    header, contents = read_spill_file(path)
    if header.get("run_id") != run_id:
        raise ProtocolError(f"{path} was written for run {header.get('run_id')!r}, not run {run_id}")
    return str(header.get("token", "")), contents


def deliver_spill_file(path: Path, *, run_id: int, writer: DatabaseWriter) -> int:
    """Apply a finished worker's spilled batches in order through the normal ingestion path (points
    already stored are ignored), then remove the file. Returns how many batches were applied.
    The file's token must be the run's current one, as for a worker connecting."""
    token, contents = read_run_spill_file(path, run_id=run_id)

    def last_seq(session: Session) -> int:
        run = session.get(Run, run_id)
        if run is None:
            raise RunDeleted(f"run {run_id} no longer exists")
        if not token_matches(run, token):
            raise ProtocolError(f"{path} holds a token that is not valid for run {run_id}")
        return run.last_seq

    # The worker has exited, so nothing else writes this run's batches: numbering on from the last
    # committed seq keeps them in order and unskipped.
    seq = writer.submit(last_seq).result(timeout=30)
    for applied, content in enumerate(contents):
        seq += 1
        try:
            writer.submit_batch(run_id, batch(seq, content)).result(timeout=60)
        except RunEnded as ended:
            # The run ended (its worker's own final status, earlier in this file, ends it too): what
            # follows can never be written with its token, here or by an upload, so it is dropped.
            log.warning("run %s: %s; dropped the last %s batch(es) of %s", run_id, ended, len(contents) - applied, path)
            path.unlink()
            return applied
    path.unlink()
    return len(contents)


def deliver_spill_files_left_by(*, config: Mapping[str, Any], run_id: int, writer: DatabaseWriter, cwd: Path) -> int:
    """Deliver every spill file the run's workers left (e.g. ones that finished while the dashboard
    was down); a file that cannot be delivered stays for `orpo-dash upload`. Returns batches applied."""
    applied = 0
    for path in spill_files_left_by(config=config, run_id=run_id, cwd=cwd):
        try:
            applied += deliver_spill_file(path, run_id=run_id, writer=writer)
        except (OSError, ValueError, ProtocolError):
            log.exception("run %s: could not deliver the spill file %s", run_id, path)
    return applied
