"""orpo_dash.protocol's builders agree with its readers: what the worker writes, the server reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import orjson
import pytest

from orpo_dash.protocol import (
    ProtocolError,
    batch,
    batch_content,
    parse_points,
    read_spill_file,
    spill_file_name,
    spill_file_pattern,
    spill_header,
    wire_points,
)


def test_a_batch_carries_non_finite_values_as_null_and_parses_back_to_nan() -> None:
    points = [(1, "loss", 0.5, 10.0), (2, "loss", math.nan, 11.0), (3, "grad_norm", math.inf, 12.0)]
    wire = wire_points(points)
    assert wire == [[1, "loss", 0.5, 10.0], [2, "loss", None, 11.0], [3, "grad_norm", None, 12.0]]
    message = orjson.loads(orjson.dumps(batch(7, {"points": wire})))
    assert message == {"type": "batch", "seq": 7, "points": wire}
    parsed = parse_points(message["points"])
    assert parsed[0] == points[0] and math.isnan(parsed[1][2]) and math.isnan(parsed[2][2])
    assert batch_content(message) == {"points": message["points"]}


def test_a_spill_file_reads_back_what_its_header_and_lines_say(tmp_path: Path) -> None:
    path = tmp_path / spill_file_name(None, 99)
    assert path.name == "orpo-dash-spill-runnew-99.jsonl" and not spill_file_pattern(9).fullmatch(path.name)
    header = spill_header(server="http://127.0.0.1:8000", run_id=None, token=None, config={"model": "m"}, name="n")
    content = {"logs": [[1.0, "stdout", "hi"]], "status": {"status": "completed"}}
    path.write_text(json.dumps(header) + "\n" + json.dumps(content) + "\n\n")
    assert read_spill_file(path) == (header, [content])
    path.write_text(json.dumps(content) + "\n")
    with pytest.raises(ProtocolError, match="not an orpo-dash spill file"):
        read_spill_file(path)
