"""Command-line entry point: `python -m trainer CONFIG_FILE [options]` runs one ORPO job.

    python -m trainer run.yaml --metrics-out metrics.jsonl
    ORPO_DASH_WORKER_TOKEN=T python -m trainer run.json --server http://127.0.0.1:8000 --run-id 7
    python -m trainer run.yaml --server http://127.0.0.1:8000 --name try-1   # registers a new run
    ORPO_DASH_RUN_CONFIG='{"max_steps": 5}' ORPO_DASH_WORKER_TOKEN=T python -m trainer --server URL --run-id 7

The config file (YAML or JSON) holds RunConfig fields. Exit status: 0 when the run completed or
was stopped gracefully, 1 when it failed (bad config included), with the reason on stderr and,
when reporting, as the run's "failed" status.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orpo_dash.config_advice import advise
from orpo_dash.config_errors import explain
from orpo_dash.protocol import API_TOKEN_ENV, RUN_CONFIG_ENV, WORKER_TOKEN_ENV, spill_file_name
from orpo_dash.run_config import RunConfig
from trainer.reporting import ConsoleReporter, MetricsFileReporter, MultiReporter, NullReporter, Reporter


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Run one ORPO fine-tuning job.")
    parser.add_argument("config", nargs="?",
                        help=f"YAML or JSON file of RunConfig fields; omitted: the JSON in ${RUN_CONFIG_ENV}")
    parser.add_argument("--metrics-out", help="append one JSON object per metrics report to this file")
    parser.add_argument("--server", help="dashboard URL to stream metrics, logs and status to; several, "
                                         "comma-separated: the next is tried when one does not answer")
    parser.add_argument("--run-id", type=int, help="the dashboard's run id (with --server; omit to register a new run)")
    parser.add_argument(
        "--token",
        help=f"the run's worker token (with --server and --run-id); default with --server: ${WORKER_TOKEN_ENV}, "
             "which keeps it off the command line (visible to other users in `ps`)",
    )
    parser.add_argument("--api-token", help=f"personal API token to register a new run on a dashboard with auth on "
                                            f"(default ${API_TOKEN_ENV})")
    parser.add_argument("--name", help="run name shown on the dashboard when --server registers a new run")
    parser.add_argument("--cache-dir", help="where the converted bundled model is cached (default ~/.cache/orpo-dash/models)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.config is None and RUN_CONFIG_ENV not in os.environ:
        parser.error(f"give a config file, or the config as JSON in ${RUN_CONFIG_ENV}")
    if args.server and args.token is None:
        args.token = os.environ.get(WORKER_TOKEN_ENV) or None
    if args.server and args.api_token is None:
        args.api_token = os.environ.get(API_TOKEN_ENV) or None
    if (args.run_id is not None or args.token) and not args.server:
        parser.error("--run-id and --token need --server")
    if args.server and args.run_id is not None and not args.token:
        parser.error("--run-id needs the run's --token")
    return args


def load_config(path: str | None) -> RunConfig:
    """Read and validate a config file (None: the JSON in $ORPO_DASH_RUN_CONFIG); ValueError with one
    line per bad field."""
    if path is None:
        path, text, is_json = f"${RUN_CONFIG_ENV}", os.environ[RUN_CONFIG_ENV], True
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"config file not found: {path} (a YAML or JSON file of run-config fields)") from None
        is_json = path.endswith(".json")
    try:
        raw: Any = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of RunConfig fields, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {sentence}" for sentence in explain(exc.errors()).values()]
        raise ValueError(f"{path}: invalid run config:\n" + "\n".join(lines)) from exc


def build_reporter(args: argparse.Namespace, config: RunConfig | None = None) -> Reporter:
    # Under data parallelism only rank 0 reports; the others would duplicate every point.
    if int(os.environ.get("RANK", "0")) != 0:
        return NullReporter()
    reporters: list[Reporter] = []
    console = None if args.quiet else ConsoleReporter()
    if console is not None:
        reporters.append(console)
    if args.metrics_out:
        reporters.append(MetricsFileReporter(args.metrics_out))
    if args.server and (args.run_id is not None or config is not None):
        from trainer.streaming import OutputTee, StreamingReporter  # lazily: only runs that stream need it

        # Undelivered points wait next to the checkpoints (or here), named after the run and process.
        spill_dir = Path(config.output_dir) if config is not None and config.output_dir else Path.cwd()
        streaming = StreamingReporter(
            args.server, args.run_id, args.token, name=args.name,
            config=config.model_dump(mode="json") if config is not None else None,
            spill_path=spill_dir / spill_file_name(args.run_id, os.getpid()),
            api_token=getattr(args, "api_token", None),
        )
        reporters.append(streaming)
        if console is not None:
            # The step lines go to the real stderr (worker.log), bypassing the tee below: send them on too.
            console.forward = lambda line: streaming.output_line("progress", line)
        # The dashboard shows the worker's output tail: progress lines, warnings, tracebacks.
        sys.stdout = OutputTee(sys.stdout, streaming, "stdout")  # type: ignore[assignment]
        sys.stderr = OutputTee(sys.stderr, streaming, "stderr")  # type: ignore[assignment]
    return MultiReporter(*reporters)


def run(config: RunConfig, reporter: Reporter, *, cache_dir: str | None = None) -> str:
    """Set up and train; returns "completed", "stopped" or "failed" (after reporting it)."""
    from trainer.hub_check import hub_model_problem

    # Before torch loads and transformers retries downloads for a minute: a run whose hub model cannot
    # be had fails in seconds, with a message that says why.
    if problem := hub_model_problem(config.model):
        reporter.log(problem)
        reporter.status("failed", error=problem)
        return "failed"
    from trainer.recipe import ORPORecipe  # torch is imported only once a run really starts

    recipe = ORPORecipe(config, reporter, cache_dir=cache_dir)
    try:
        recipe.setup()
        return recipe.train()
    except Exception as exc:
        reporter.log(traceback.format_exc())
        reporter.status("failed", error=describe_failure(exc, config))
        return "failed"
    finally:
        recipe.cleanup()


# How torch words an allocation failure: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError.
OUT_OF_MEMORY_WORDS = ("out of memory", "can't allocate memory")
# A full disk reaches us as OSError(ENOSPC) or, from torch.save and safetensors, as text in other errors.
DISK_FULL_WORDS = "No space left on device"


def describe_failure(exc: BaseException, config: RunConfig) -> str:
    """The run's error line: the exception, led by the settings to change when memory or disk ran out."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or any(words in str(exc) for words in OUT_OF_MEMORY_WORDS):
        return (
            f"out of memory at batch_size {config.batch_size} and max_length {config.max_length}: lower either "
            "(raise gradient_accumulation_steps to keep the pairs per step) or set gradient_checkpointing: true. "
            + text
        )
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or DISK_FULL_WORDS in str(exc):
        return (
            f"disk full while writing checkpoints to {config.output_dir}: free space there, point output_dir at "
            "a bigger disk, or save less often (save_every; 0 keeps only the final checkpoint). " + text
        )
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        # So the dashboard learns why its run never started; the console has just been told.
        reporter = build_reporter(argparse.Namespace(**{**vars(args), "quiet": True}))
        reporter.status("failed", error=str(exc))
        reporter.close()
        return 1
    reporter = build_reporter(args, config)
    for field, advice in advise(config).items():
        print(f"advice ({field}): {advice}", file=sys.stderr)  # into the run's log tail too
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor progress bars would flood the run log
    try:
        status = run(config, reporter, cache_dir=args.cache_dir)
    finally:
        reporter.close()
    return 0 if status in ("completed", "stopped") else 1
