"""What every import reader shares: the run it makes (ImportedRun), its error, and the steps from a tool's
columns to our series and config (docs/metrics.md, "Importing runs"). The readers: orpo_dash.run_import
(TRL, TensorBoard, our files), orpo_dash.import_wandb, orpo_dash.import_mlflow."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orpo_dash.diagnostics.loading import NONFINITE_WORDS, MetricSeries, reading_order
from orpo_dash.diagnostics.records import MetricsFileError

# Hugging Face TrainingArguments / TRL ORPOConfig settings (what W&B's config and MLflow's params hold, as the
# Hugging Face WandbCallback and MLflowCallback log them) -> our RunConfig fields, with the type each must have.
HF_ARGS_CONFIG: dict[str, tuple[str, type]] = {
    "max_steps": ("max_steps", int),
    "num_train_epochs": ("num_epochs", float),
    "per_device_train_batch_size": ("batch_size", int),
    "gradient_accumulation_steps": ("gradient_accumulation_steps", int),
    "learning_rate": ("learning_rate", float),
    "beta": ("beta", float),  # ORPOConfig.beta is the paper's lambda, which our `beta` is too
    "weight_decay": ("weight_decay", float),
    "max_grad_norm": ("max_grad_norm", float),
    "warmup_steps": ("warmup_steps", int),
    "warmup_ratio": ("warmup_ratio", float),
    "seed": ("seed", int),
    "logging_steps": ("logging_every", int),
    "eval_steps": ("eval_every", int),
    "save_steps": ("save_every", int),
    "max_length": ("max_length", int),
    "max_prompt_length": ("max_prompt_length", int),
}
# The model: the model config's `_name_or_path` (logged with the arguments by both callbacks).
HF_MODEL_KEYS = ("_name_or_path", "model_name_or_path")


class RunImportError(MetricsFileError):
    """The file cannot be imported; the message names the problem and the formats expected."""


@dataclass
class ImportedRun:
    """What an import brings in: the source's format, a suggested name, config, and series per metric."""

    format: str  # "trainer_state", "tensorboard", "metrics_file", "wandb", "wandb_history" or "mlflow"
    name: str
    config: dict[str, Any]
    series: dict[str, MetricSeries]
    times: dict[str, np.ndarray] = field(default_factory=dict)  # unix time per point, where the source has it
    notes: list[str] = field(default_factory=list)

    @property
    def point_count(self) -> int:
        return sum(len(s) for s in self.series.values())

    @property
    def last_step(self) -> int | None:
        steps = [int(s.steps[-1]) for s in self.series.values() if len(s)]
        return max(steps) if steps else None

    def rows_by_name(self, default_time: float) -> list[tuple[str, list[tuple[int, str, float, float]]]]:
        """Per metric in name order, its (step, name, value, time) rows in step order: the order of the
        points table's primary key (run, name, step), so storing them appends to its B-tree instead of
        inserting all over it (several times faster for a long run)."""
        out = []
        for name in sorted(self.series):
            series = self.series[name]
            times = self.times[name].tolist() if name in self.times else [default_time] * len(series)
            out.append((name, list(zip(series.steps.tolist(), [name] * len(series), series.values.tolist(), times,
                                       strict=True))))
        return out

    def points(self, default_time: float) -> list[tuple[int, str, float, float]]:
        """(step, name, value, time) in step order, names in reading_order within a step: the order the
        alert engine is fed and the dashboard stores. Sorted with numpy: an import holds millions."""
        names = sorted(self.series, key=reading_order)
        if not names:
            return []
        steps = np.concatenate([self.series[n].steps for n in names])
        values = np.concatenate([self.series[n].values for n in names])
        times = np.concatenate([self.times[n] if n in self.times else np.full(len(self.series[n]), default_time)
                                for n in names])
        ranks = np.concatenate([np.full(len(self.series[n]), i, dtype=np.int64) for i, n in enumerate(names)])
        order = np.lexsort((ranks, steps))
        name_of = [names[i] for i in ranks[order].tolist()]
        return list(zip(steps[order].tolist(), name_of, values[order].tolist(), times[order].tolist(), strict=True))


# A tool's columns: per key, its steps, values and unix times (None where the tool records no time).
Columns = dict[str, tuple[list[int], list[float], list[float] | None]]
# The same as numpy arrays (the .wandb reader builds its columns with numpy).
ArrayColumns = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]]


def series_from_columns(columns: Columns | ArrayColumns, name_of: Callable[[str], tuple[str, bool]]
                        ) -> tuple[dict[str, MetricSeries], dict[str, np.ndarray]]:
    """Our series (and times) from a tool's columns: each key renamed (and negated) by `name_of`, sorted by
    step, the last value logged at a step winning. Two keys that map to one name: the later key wins a step."""
    series: dict[str, MetricSeries] = {}
    times: dict[str, np.ndarray] = {}
    for key in sorted(columns):
        steps, values, walls = columns[key]
        if not len(steps):
            continue
        name, negated = name_of(key)
        order = np.argsort(np.asarray(steps, dtype=np.int64), kind="stable")
        s = np.asarray(steps, dtype=np.int64)[order]
        v = np.asarray(values, dtype=np.float64)[order] * (-1.0 if negated else 1.0)
        last = np.append(s[1:] != s[:-1], True)  # the last logged value of a step wins
        series[name] = MetricSeries(s[last], v[last])
        if walls is not None:
            times[name] = np.asarray(walls, dtype=np.float64)[order][last]
    return series, times


def number(raw: Any) -> float | None:
    """A logged value as a float: numbers, numeric strings (CSV cells, MLflow params) and the NaN/Infinity
    words; None for anything else (text, media, an empty cell)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        word = raw.strip()
        if word.lower() in NONFINITE_WORDS:
            return float(word)
        try:
            return float(word) if word else None
        except ValueError:
            return None
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def hf_args_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Our run config from Hugging Face TrainingArguments / ORPOConfig settings (W&B config, MLflow params;
    MLflow's are strings): the fields HF_ARGS_CONFIG maps, where the value is a valid one of ours (HF's
    max_steps -1 and a fractional logging_steps are "not set" for us), and the model's name."""
    config: dict[str, Any] = {}
    for theirs, (ours, kind) in HF_ARGS_CONFIG.items():
        value = number(settings.get(theirs))
        if value is None or not math.isfinite(value) or value < 0:
            continue
        if kind is int:
            if value != int(value) or (value == 0 and ours in ("max_steps", "batch_size", "logging_every")):
                continue
            config[ours] = int(value)
        elif value > 0 or ours in ("weight_decay", "max_grad_norm", "warmup_ratio"):
            config[ours] = value
    for key in HF_MODEL_KEYS:
        model = settings.get(key)
        if isinstance(model, str) and model.strip():
            config["model"] = model.strip()
            break
    return config

