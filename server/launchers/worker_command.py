"""The command line that starts a run's worker, shared by every launcher.

The run's token is never part of it (launchers pass it in the environment): a command line is shown
by `ps` to every user of the machine, and by Ray in its job list.
"""

from __future__ import annotations

from pathlib import Path


def worker_command(
    *, python: str, server_url: str, run_id: int, gpus: int, config_path: Path | None = None,
    cache_dir: Path | None = None,
) -> list[str]:
    """`python -m trainer …`, under torchrun with one process per GPU when the run asks for several
    (docs/multi_gpu.md). `config_path` None: the worker reads its config from $ORPO_DASH_RUN_CONFIG."""
    if gpus > 1:
        # torchrun as a module of the worker's own interpreter: the `torchrun` script may not be on PATH.
        command = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}", "-m", "trainer"]
    else:
        command = [python, "-m", "trainer"]
    if config_path is not None:
        command.append(str(config_path))
    command += ["--server", server_url, "--run-id", str(run_id)]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    return command
