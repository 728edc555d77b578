"""A status change reaches the dashboard after every point logged before it, even from a backlog."""

from __future__ import annotations

from pathlib import Path

from orpo_dash.protocol import read_spill_file
from tests.conftest import free_port
from trainer.streaming import MAX_BATCH_POINTS, StreamingReporter


def test_a_final_status_is_spilled_after_a_backlog_of_points_not_with_the_first_batch(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    # Nothing listens on this port: everything queues, then spills in delivery order at close().
    reporter = StreamingReporter(f"http://127.0.0.1:{free_port()}", 1, "token", spill_path=spill)
    steps = 3 * MAX_BATCH_POINTS // 4 + 7  # four metrics a step: three batches' worth and a bit
    for step in range(steps):
        reporter.metrics(step, {"loss": 1.0, "nll_loss": 1.0, "or_loss": 0.1, "log_odds_ratio": 0.5})
    reporter.log("done")
    reporter.status("completed")
    reporter.close(timeout=1)

    _, contents = read_spill_file(spill)
    with_status = [i for i, content in enumerate(contents) if "status" in content]
    assert with_status == [len(contents) - 1], [sorted(content) for content in contents]
    assert sum(len(content.get("points", [])) for content in contents) == 4 * steps
    assert contents[-1]["status"]["status"] == "completed"
