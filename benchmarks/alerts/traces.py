"""Reading and writing the trace collection: gzipped JSONL, only the metrics that matter, 5 significant digits.

Kept: the metrics the detectors or the labeller read, plus the core ORPO terms and grad_norm that
`non_finite` watches. Any other metric is dropped, except where its value is non-finite (every metric
counts for `non_finite`), so dropping never changes a label or an alert. Five significant digits are
far below batch noise. gzip's header time is fixed, so regenerating identical data gives identical bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from pathlib import Path

TRACES = Path(__file__).parent / "traces"
KEEP = {
    "step", "loss", "nll_loss", "or_loss", "log_odds_ratio", "logps_chosen", "logps_rejected", "grad_norm",
    "eval/loss", "eval/nll_loss",
}


def _compact(value: object) -> object:
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.5g}")
    if isinstance(value, float):  # NaN/Inf are written as null, like the trainer's --metrics-out
        return None
    return value


def write_trace(path: Path, rows: list[dict]) -> None:
    lines = []
    for row in rows:
        kept = {k: _compact(v) for k, v in row.items()
                if k in KEEP or v is None or (isinstance(v, float) and not math.isfinite(v))}
        if len(kept) > 1:
            lines.append(json.dumps(kept, separators=(",", ":")))
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(("\n".join(lines) + "\n").encode())
    path.write_bytes(buf.getvalue())


def read_rows(path: Path) -> list[dict]:
    """Rows with null (the trainer's NaN/Inf) read back as NaN."""
    with gzip.open(path, "rt") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [{k: (math.nan if v is None else v) for k, v in r.items()} for r in rows]


def trace_path(name: str) -> Path:
    return TRACES / f"{name}.jsonl.gz"
