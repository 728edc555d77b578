"""Delivering what a local worker spilled to disk because the dashboard could not take it.

A worker that cannot reach the dashboard keeps its undelivered batches in a spill file next to its
checkpoints. The usual case is the dashboard itself going down: it stops its workers, and their last
step, final status and checkpoint lines arrive after its websockets have closed. The launcher knows
where such a file lands (the worker names it after the run and its pid), so it delivers it itself
once the worker has exited, instead of leaving the user an `orpo-dash upload` to run.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orpo_dash.protocol import ProtocolError
from server.models import Run
from server.writer import DatabaseWriter

SPILL_HEADER_TYPE = "spill"


def spill_file_of(*, config: Mapping[str, Any], run_id: int, pid: int, cwd: Path) -> Path:
    """Where the worker (trainer.worker.build_reporter) puts its spill file: its output_dir, else its cwd."""
    folder = Path(config["output_dir"]) if config.get("output_dir") else Path(".")
    return (cwd / folder) / f"orpo-dash-spill-run{run_id}-{pid}.jsonl"


def read_spill_file(path: Path, *, run_id: int, token: str) -> list[dict[str, Any]]:
    """The batches in a spill file, checked to be this run's: same run id and the token it was issued."""
    with open(path, encoding="utf-8") as handle:
        header = json.loads(handle.readline())
        contents = [json.loads(line) for line in handle if line.strip()]
    if not isinstance(header, dict) or header.get("type") != SPILL_HEADER_TYPE:
        raise ProtocolError(f"{path} has no spill header")
    if header.get("run_id") != run_id or not hmac.compare_digest(str(header.get("token", "")), token):
        raise ProtocolError(f"{path} was not written by run {run_id}'s worker")
    return [content for content in contents if isinstance(content, dict)]


def deliver_spill_file(path: Path, *, run_id: int, token: str, writer: DatabaseWriter) -> int:
    """Apply a finished worker's spilled batches in order through the normal ingestion path (points
    already stored are ignored), then remove the file. Returns how many batches were applied."""
    contents = read_spill_file(path, run_id=run_id, token=token)

    def last_seq(session) -> int:  # type: ignore[no-untyped-def]
        run = session.get(Run, run_id)
        if run is None:
            raise ProtocolError(f"run {run_id} no longer exists")
        return run.last_seq

    # The worker has exited, so nothing else writes this run's batches: numbering on from the last
    # committed seq keeps them in order and unskipped.
    seq = writer.submit(last_seq).result(timeout=30)
    for content in contents:
        seq += 1
        writer.submit_batch(run_id, {**content, "type": "batch", "seq": seq}).result(timeout=60)
    path.unlink()
    return len(contents)
