"""Data parallelism: two gloo processes on one global batch report the single-process metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainer.worker import run


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(make_config, recorder, tmp_path: Path) -> None:
    # 2 ranks x batch 2 == one process x batch 4: the same pairs each step, same normalisation.
    parallel = make_config(max_steps=2, batch_size=2, output_dir=str(tmp_path / "ddp"), save_every=2)
    config_file = tmp_path / "run.yaml"
    config_file.write_text(yaml.safe_dump(parallel.model_dump()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics = tmp_path / "metrics.jsonl"
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        cmd = [sys.executable, "-m", "trainer", str(config_file), "--quiet"]
        cmd += ["--metrics-out", str(metrics)] * (rank == 0) + ["--metrics-out", str(tmp_path / "rank1.jsonl")] * (rank == 1)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not (tmp_path / "rank1.jsonl").exists()  # only rank 0 reports

    single = recorder()
    run(make_config(max_steps=2, batch_size=4, output_dir=None), single)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(r["step"], "loss" in r) for r in rows] == [(1, True), (2, True), (2, False)]  # 2 train + final eval
    for row in rows:
        step = row.pop("step")
        expected = single.train()[step] if "loss" in row else single.eval()[step]
        for name, value in row.items():
            if name not in ("tokens_per_sec", "step_time"):
                assert value == pytest.approx(expected[name], rel=1e-5, abs=1e-6), (step, name)
    assert (tmp_path / "ddp" / "checkpoint-2" / "trainer_state.pt").is_file()
