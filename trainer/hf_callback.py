"""Stream any Hugging Face `Trainer` (TRL's ORPOTrainer, DPOTrainer, SFTTrainer included) into the dashboard.

    from trainer.hf_callback import DashboardCallback

    trainer = ORPOTrainer(..., callbacks=[DashboardCallback("http://127.0.0.1:8000", name="orpo-try-3")])
    trainer.train()

At `on_train_begin` the callback registers a run (`POST /api/runs?launch=false`) with a config mapped
from the TrainingArguments and the model; every `on_log` becomes one `metrics()` call at
`state.global_step` (names mapped from TRL's onto ours by `orpo_dash.metric_names.from_trl`); the run
ends `completed`, `stopped` (the dashboard's Stop button: the step finishes, a checkpoint is saved)
or `failed` (the process exits with an exception, or the user calls `fail(error)`).

Like the worker's own reporter this never blocks training: `metrics()` appends to a queue, a
background thread delivers, and undelivered points end in a spill file for `orpo-dash upload`.
Imports transformers (the caller already has) but no torch of its own, and nothing of the server.
"""

from __future__ import annotations

import atexit
import os
import sys
import traceback
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from orpo_dash.metric_names import EVAL_PREFIX, from_trl
from orpo_dash.protocol import API_TOKEN_ENV, spill_file_name
from orpo_dash.run_config import RunConfig
from trainer.reporting import MetricsFileReporter, MultiReporter, Reporter
from trainer.streaming import StreamingReporter
from trainer.system_metrics import SystemSampler

# What a run on the dashboard shows as its dataset when the caller does not say (RunConfig needs one).
IN_MEMORY_DATASET = "in-memory dataset (Hugging Face Trainer)"
IN_MEMORY_MODEL = "in-memory model (Hugging Face Trainer)"
# The summary the Trainer logs once at the end; it is not a per-step metric.
TRAIN_SUMMARY_KEYS = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}
)
SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant", "constant_with_warmup": "constant"}


def config_from_trainer(args: TrainingArguments, model: Any = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A RunConfig-shaped dict describing a Trainer run, as far as its arguments say; `overrides` win.

    Fields RunConfig would reject (a value out of its range, a scheduler it does not know) are left
    at their defaults with a warning rather than failing the registration.
    """
    config: dict[str, Any] = {
        "model": _model_name(model),
        "dataset": IN_MEMORY_DATASET,
        "learning_rate": args.learning_rate,
        "batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_steps": args.max_steps if args.max_steps and args.max_steps > 0 else None,
        "num_epochs": args.num_train_epochs,
        "seed": args.seed,
        "weight_decay": args.weight_decay,
        "adam_beta1": args.adam_beta1,
        "adam_beta2": args.adam_beta2,
        "adam_epsilon": args.adam_epsilon,
        "max_grad_norm": args.max_grad_norm,
        "warmup_steps": int(args.warmup_steps) if (args.warmup_steps or 0) >= 1 else 0,
        "output_dir": args.output_dir,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "dtype": "bfloat16" if args.bf16 else "float16" if args.fp16 else "float32",
    }
    scheduler = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
    if scheduler in SCHEDULERS:
        config["lr_scheduler"] = SCHEDULERS[scheduler]
    if args.logging_steps and args.logging_steps >= 1:
        config["logging_every"] = int(args.logging_steps)
    # ORPOConfig (TRL) carries the objective's own knobs.
    for field in ("beta", "max_length", "max_prompt_length"):
        value = getattr(args, field, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            config[field] = value
    config.update(overrides or {})
    return _drop_invalid(config, keep=set(overrides or {}))


def _model_name(model: Any) -> str:
    name = getattr(getattr(model, "config", None), "name_or_path", None) or getattr(model, "name_or_path", None)
    return str(name) if name else IN_MEMORY_MODEL


def _drop_invalid(config: dict[str, Any], *, keep: set[str]) -> dict[str, Any]:
    """Remove derived fields RunConfig rejects; the caller's own overrides are never dropped silently."""
    for _ in range(len(config)):
        try:
            RunConfig.model_validate(config)
            return config
        except ValidationError as error:
            bad: set[str] = set()
            for problem in error.errors():
                field = str(problem["loc"][0]) if problem["loc"] else ""
                # max_prompt_length is checked against max_length: the pair stands or falls together.
                bad |= {"max_length", "max_prompt_length"} if field == "max_prompt_length" else {field}
            bad = (bad & set(config)) - keep
            if not bad:
                raise ValueError(f"DashboardCallback config is not a valid run config: {error}") from None
            warnings.warn(f"DashboardCallback: not reporting {', '.join(sorted(bad))} (not valid for the dashboard's run config)",
                          stacklevel=3)
            for key in bad:
                del config[key]
    return config


def dashboard_metrics(logs: Mapping[str, Any]) -> dict[str, float]:
    """One Trainer log dict as dashboard metrics: TRL names mapped onto ours, `eval_x` as `eval/x`."""
    mapped = from_trl({key: value for key, value in logs.items() if key not in TRAIN_SUMMARY_KEYS})
    return {EVAL_PREFIX + key[len("eval_"):] if key.startswith("eval_") else key: value for key, value in mapped.items()}


class DashboardCallback(TrainerCallback):
    """Reports a Hugging Face Trainer's run to an orpo-dash dashboard (see the module docstring).

    Args:
        server_url: the dashboard, e.g. "http://127.0.0.1:8000".
        name: the run's display name (default run-<id>).
        config: RunConfig fields that override what is read from the TrainingArguments, e.g.
            {"dataset": "my-org/prefs", "beta": 0.1}. Unknown fields are refused by the dashboard.
        metrics_out: also append one JSON object per log to this file (like `orpo-dash train --metrics-out`).
        api_token: personal API token for a dashboard started with --auth (default: $ORPO_DASH_TOKEN).
    """

    def __init__(
        self,
        server_url: str,
        *,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        metrics_out: str | os.PathLike[str] | None = None,
        api_token: str | None = None,
    ) -> None:
        self.server_url = server_url
        self.api_token = api_token or os.environ.get(API_TOKEN_ENV) or None
        self.name = name
        self.overrides = dict(config or {})
        self.metrics_out = metrics_out
        self.streaming: StreamingReporter | None = None
        self._reporter: Reporter | None = None
        self._stopped_by_dashboard = False
        self._atexit_registered = False
        self._phase: str | None = None  # the last phase reported, so each is sent once
        self._eval_batches = 0
        self._system = SystemSampler(0)  # the sys/ metrics; on_train_begin starts the real one

    @property
    def run_id(self) -> int | None:
        """The dashboard's id for the run, once registered (registration happens in the background)."""
        return self.streaming.run_id if self.streaming is not None else None

    # ----- Trainer events -----
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return  # under data parallelism only rank 0 reports; the others would duplicate every point
        if self._reporter is not None:
            self.fail("a new train() started before the previous one finished")
        config = config_from_trainer(args, kwargs.get("model"), self.overrides)
        spill_dir = Path(args.output_dir) if args.output_dir else Path.cwd()
        self.streaming = StreamingReporter(
            self.server_url, None, None, config=config, name=self.name,
            spill_path=spill_dir / spill_file_name(None, os.getpid()),  # None: registered in the background
            api_token=self.api_token,
        )
        reporters: list[Reporter] = [self.streaming]
        if self.metrics_out:
            reporters.append(MetricsFileReporter(self.metrics_out))
        self._reporter = MultiReporter(*reporters)
        self._system = SystemSampler(config.get("system_metrics_seconds", RunConfig.model_fields["system_metrics_seconds"].default),
                                     device=args.device)
        self._stopped_by_dashboard = False
        self._reporter.status("running", total_steps=state.max_steps or None)
        self._phase = None
        self._report_phase("training")
        if not self._atexit_registered:
            # No Trainer event fires when train() raises; an exit with a run still open is a failure.
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self._reporter is None or not logs:
            return
        values = dashboard_metrics(logs)
        if values:
            self._reporter.metrics(state.global_step, values)
        summary = {key: logs[key] for key in TRAIN_SUMMARY_KEYS if key in logs}
        if summary:
            self._reporter.log("train summary: " + ", ".join(f"{k}={v}" for k, v in sorted(summary.items())))

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._reporter is not None and self._reporter.stop_requested() and not self._stopped_by_dashboard:
            # The dashboard's Stop: this step is done; save a checkpoint and leave the loop.
            self._stopped_by_dashboard = True
            self._reporter.log(f"stop requested from the dashboard; stopping after step {state.global_step}")
            control.should_save = True
            control.should_training_stop = True
        if self._reporter is not None and self._system.due():
            self._reporter.metrics(state.global_step, self._system.sample())
        # The Trainer's own callbacks have decided by now what follows this step.
        if control.should_evaluate:
            self._report_phase("evaluating")
        elif control.should_save:
            self._report_phase("saving checkpoint")
        else:
            self._report_phase("training")

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._reporter is None:
            return
        loader = kwargs.get("eval_dataloader")
        total = len(loader) if loader is not None and hasattr(loader, "__len__") else None
        self._eval_batches += 1
        self._reporter.phase("evaluating", done=self._eval_batches, total=total)

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._eval_batches = 0
        self._report_phase("saving checkpoint" if control.should_save else "training")

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._report_phase("training")

    def _report_phase(self, name: str) -> None:
        if self._reporter is not None and name != self._phase:
            self._phase = name
            self._reporter.phase(name)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if self._reporter is None:
            return
        self._reporter.status("stopped" if self._stopped_by_dashboard else "completed", total_steps=state.max_steps or None)
        self._finish()

    # ----- failures -----
    def fail(self, error: BaseException | str) -> None:
        """Mark the open run failed (for code that catches the exception train() raised) and flush."""
        if self._reporter is None:
            return
        if isinstance(error, BaseException):
            self._reporter.log("".join(traceback.format_exception(error)))
            message = f"{type(error).__name__}: {error}"
        else:
            message = error
        self._reporter.status("failed", error=message)
        self._finish()

    def _at_exit(self) -> None:
        if self._reporter is None:
            return
        # Set by the interpreter when an uncaught exception ended the program.
        error = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        self.fail(error if error is not None else "the process exited before training finished")

    def _finish(self) -> None:
        reporter, self._reporter = self._reporter, None
        if reporter is not None:
            reporter.close()
