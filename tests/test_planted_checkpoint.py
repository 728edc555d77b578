"""Issue 14 through the real dashboard: a run started from the form with resume_from naming a folder
whose trainer_state.pt is a planted pickle fails with the reason, and the pickle's payload never runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from tests.test_end_to_end import _tiny_run


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_is_refused_without_running(live_server, tiny_model_dir, tiny_dataset_file, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "pwned"
    planted = tmp_path / "planted-checkpoint"
    shutil.copytree(tiny_model_dir, planted)
    torch.save({"step": _WritesMarker(marker)}, planted / "trainer_state.pt")

    created = live_server.api("POST", "/api/runs", json=_tiny_run(tiny_model_dir, tiny_dataset_file, resume_from=str(planted)))
    assert created.status_code == 201, created.text
    run = live_server.wait_for_run(created.json()["id"], ("completed", "failed"), timeout=120)
    assert run["status"] == "failed"
    assert "asks for posix.system" in run["error"] and "it is not loaded" in run["error"]
    assert not marker.exists()
