"""Sweep specifications: the axis text of the form and the API, expanded into run configs.

One axis sweeps one numeric run-config field (docs/sweeps.md):
- a list: `0.05, 0.1, 0.25, 0.5`
- a linear range: `1e-6..5e-6, 4 values`
- a log range: `log 5e-6..5e-5, 4 values`
Integer fields (max_steps, batch_size...) are rounded to whole numbers and repeated values dropped.

Grid mode takes the cartesian product of the axes; random mode samples `count` settings (each list
uniformly, each range uniformly or, for a log range, log-uniformly), reproducibly from `random_seed`.
`seeds` repeats every setting with seeds base.seed, base.seed + 1, ... Every generated config is
validated against RunConfig, and errors name the field to fix: `axes.beta`, `count`, `config.max_length`.

Like run_config.py this imports only pydantic and the standard library, so the server and the
trainer can both use it.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from orpo_dash.config_errors import explain
from orpo_dash.protocol import shown
from orpo_dash.run_config import MAX_SEED, RunConfig

Mode = Literal["grid", "random"]

# A sweep is a batch of runs queued at once: these bounds keep one form submission from queueing
# a month of training or a table the browser cannot draw.
MAX_SWEEP_RUNS = 500
MAX_AXIS_VALUES = 200
MAX_AXES = 8
MAX_SEEDS = 100
MAX_AXIS_CHARS = 2000

# Significant digits kept for generated float values: 1e-6..5e-6 gives 2.33333333333e-06, not a
# binary-rounding tail like 2.3333333333333334e-06 in run names and tables.
FLOAT_DIGITS = 12
# Field names shortened in run names ("beta sweep · beta=0.1 lr=1e-05 seed=42").
SHORT_NAMES = {"learning_rate": "lr", "gradient_accumulation_steps": "grad_accum", "max_steps": "steps"}
# `seed` is swept with `seeds: N` (repeats of every setting), never as an axis.
NOT_AXES = {"seed": "seed is not an axis: use seeds (a number of repeats) to run every setting with "
                    "seeds base seed, base seed + 1, ..."}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*(?P<log>log\s+)?(?P<low>{_NUMBER})\s*\.\.\s*(?P<high>{_NUMBER})\s*"
                    rf"(?:,\s*(?P<count>\d+)\s*values?)?\s*$", re.IGNORECASE)
AXIS_SYNTAX = ("a list like '0.05, 0.1, 0.25', a range like '1e-6..5e-6, 4 values', "
               "or a log range like 'log 5e-6..5e-5, 4 values'")


class SweepSpecError(ValueError):
    """Field -> message for everything wrong with a sweep; nothing is created from it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


def numeric_fields() -> dict[str, type]:
    """Run-config fields an axis may sweep -> int or float (bools and text are not numbers)."""
    found: dict[str, type] = {}
    for name, info in RunConfig.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            annotation = options[0] if len(options) == 1 else None
        if annotation in (int, float) and name not in NOT_AXES:
            found[name] = annotation  # type: ignore[assignment]
    return found


@dataclass(frozen=True)
class Axis:
    """One parsed axis. `values` are the grid values (a list's, or a range's evenly spaced ones)."""

    field: str
    kind: Literal["list", "linear", "log"]
    values: tuple[float | int, ...]
    low: float = 0.0
    high: float = 0.0
    integer: bool = False

    def sample(self, rng: random.Random) -> float | int:
        """One value for random mode: a list's values uniformly, a range continuously."""
        if self.kind == "list":
            return rng.choice(self.values)
        if self.kind == "log":
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        return _as_field_number(value, self.integer)


def parse_axis(name: str, text: str, *, mode: Mode = "grid") -> Axis:
    """Parse one axis; raises SweepSpecError keyed `axes.<name>`."""
    key = f"axes.{name}"
    fields = numeric_fields()
    if name in NOT_AXES:
        raise SweepSpecError({key: NOT_AXES[name]})
    if name not in fields:
        raise SweepSpecError({key: _not_numeric(name, fields)})
    if not isinstance(text, str) or not text.strip():
        raise SweepSpecError({key: f"{name} needs values: {AXIS_SYNTAX}"})
    if len(text) > MAX_AXIS_CHARS:
        raise SweepSpecError({key: f"{name}'s values may take at most {MAX_AXIS_CHARS} characters (got {len(text)})"})
    integer = fields[name] is int
    match = _RANGE.match(text)
    if match:
        return _parse_range(name, key, match, integer=integer, mode=mode)
    if ".." in text:
        raise SweepSpecError({key: f"{name}: {shown(text)} is not a range; write it like '1e-6..5e-6, 4 values' "
                                   "or 'log 5e-6..5e-5, 4 values'"})
    values: list[float | int] = []
    for part in text.split(","):
        values.append(_as_field_number(_number(name, key, part), integer))
    values = list(dict.fromkeys(values))  # 1.2 and 1.4 both round to 1 for an integer field: one run
    if len(values) > MAX_AXIS_VALUES:
        raise SweepSpecError({key: f"{name} has {len(values)} values; at most {MAX_AXIS_VALUES}"})
    return Axis(field=name, kind="list", values=tuple(values), integer=integer,
                low=float(min(values)), high=float(max(values)))


def _parse_range(name: str, key: str, match: re.Match[str], *, integer: bool, mode: Mode) -> Axis:
    low, high = _number(name, key, match["low"]), _number(name, key, match["high"])
    kind: Literal["linear", "log"] = "log" if match["log"] else "linear"
    if low > high:
        raise SweepSpecError({key: f"{name}: the range starts above where it ends ({match['low']}..{match['high']}); "
                                   "write the smaller bound first"})
    if kind == "log" and low <= 0:
        raise SweepSpecError({key: f"{name}: a log range needs positive bounds (got {match['low']}); "
                                   "use a linear range, or start above 0"})
    if match["count"] is None:
        if mode == "grid":
            raise SweepSpecError({key: f"{name}: say how many values the grid takes from the range, like "
                                       f"'{match['low']}..{match['high']}, 4 values' (or use random mode)"})
        count = 2  # random mode samples the range continuously; the grid values are only its ends
    else:
        count = int(match["count"])
        if not 2 <= count <= MAX_AXIS_VALUES:
            raise SweepSpecError({key: f"{name}: a range takes 2 to {MAX_AXIS_VALUES} values (got {count}); "
                                       "for one value write just the number"})
    if kind == "log":
        raw = [math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (count - 1)) for i in range(count)]
    else:
        raw = [low + i * (high - low) / (count - 1) for i in range(count)]
    raw[0], raw[-1] = low, high  # exactly the bounds written, not exp(log(x))
    values = list(dict.fromkeys(_as_field_number(value, integer) for value in raw))
    return Axis(field=name, kind=kind, values=tuple(values), low=low, high=high, integer=integer)


def _number(name: str, key: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise SweepSpecError({key: f"{name}: {shown(text.strip())} is not a number; write {AXIS_SYNTAX}"}) from None
    if not math.isfinite(value):
        raise SweepSpecError({key: f"{name}: values must be finite numbers (got {shown(text.strip())})"})
    return value


def _as_field_number(value: float, integer: bool) -> float | int:
    if integer:
        return math.floor(value + 0.5)  # half up (Python's round() would send 2.5 to 2)
    return float(f"{value:.{FLOAT_DIGITS}g}")


def _not_numeric(name: str, fields: Mapping[str, type]) -> str:
    if name in RunConfig.model_fields:
        return f"{name} is not a numeric field, so it cannot be swept; numeric fields: {', '.join(sorted(fields))}"
    if name == "lambda":
        return "write the axis as beta: the config's name for the paper's lambda"
    import difflib

    close = difflib.get_close_matches(name, sorted(fields), n=1, cutoff=0.75)
    hint = f"did you mean '{close[0]}'?" if close else f"numeric fields: {', '.join(sorted(fields))}"
    return f"unknown field '{name}': {hint}"


@dataclass
class Setting:
    """One point of the sweep: the swept values, and one validated config per seed."""

    values: dict[str, float | int]
    configs: list[RunConfig] = field(default_factory=list)


@dataclass
class SweepPlan:
    settings: list[Setting]
    base: RunConfig

    @property
    def run_count(self) -> int:
        return sum(len(setting.configs) for setting in self.settings)


def expand(
    base: Mapping[str, Any], axes: Mapping[str, str], *, mode: Mode = "grid", count: int | None = None,
    random_seed: int = 0, seeds: int = 1,
) -> SweepPlan:
    """Every run of the sweep, validated; raises SweepSpecError with every problem found."""
    errors: dict[str, str] = {}
    try:
        base_config = RunConfig.model_validate(dict(base))
    except ValidationError as error:
        errors.update({f"config.{name}": message for name, message in explain(error.errors()).items()})
        base_config = None
    if not axes:
        errors["axes"] = f"a sweep needs at least one axis: a numeric field with {AXIS_SYNTAX}"
    elif len(axes) > MAX_AXES:
        errors["axes"] = f"a sweep may have at most {MAX_AXES} axes (got {len(axes)})"
    if mode not in ("grid", "random"):
        errors["mode"] = f"mode must be 'grid' or 'random' (got {shown(mode)})"
    if not 1 <= seeds <= MAX_SEEDS:
        errors["seeds"] = f"seeds must be from 1 to {MAX_SEEDS} (got {seeds}): the runs made per setting"
    parsed: list[Axis] = []
    for name, text in (axes.items() if len(axes) <= MAX_AXES else ()):
        try:
            parsed.append(parse_axis(name, text, mode=mode))
        except SweepSpecError as error:
            errors.update(error.errors)
    if mode == "random" and (count is None or not 1 <= count <= MAX_SWEEP_RUNS):
        errors["count"] = f"random mode needs count, the number of settings to sample: 1 to {MAX_SWEEP_RUNS} (got {count})"
    if errors or base_config is None:
        raise SweepSpecError(errors)

    settings_count = math.prod(len(axis.values) for axis in parsed) if mode == "grid" else int(count or 0)
    if settings_count * seeds > MAX_SWEEP_RUNS:
        where = "seeds" if settings_count <= MAX_SWEEP_RUNS else ("axes" if mode == "grid" else "count")
        shape = " x ".join(str(len(axis.values)) for axis in parsed) if mode == "grid" else str(count)
        raise SweepSpecError({where: f"this sweep would make {settings_count * seeds} runs ({shape} settings x "
                                     f"{seeds} seed(s)); at most {MAX_SWEEP_RUNS}: take fewer values or seeds"})
    last_seed = base_config.seed + seeds - 1
    if last_seed > MAX_SEED:
        raise SweepSpecError({"seeds": f"seeds {seeds} from base seed {base_config.seed} would go past {MAX_SEED}; "
                                       "lower config.seed or seeds"})

    if mode == "grid":
        points = [dict(zip([a.field for a in parsed], combo, strict=True))
                  for combo in itertools.product(*(axis.values for axis in parsed))]
    else:
        rng = random.Random(random_seed)
        points = [{axis.field: axis.sample(rng) for axis in parsed} for _ in range(settings_count)]

    base_values = base_config.model_dump()
    settings = []
    for values in points:
        setting = Setting(values=values)
        for offset in range(seeds):
            candidate = {**base_values, **values, "seed": base_config.seed + offset}
            try:
                setting.configs.append(RunConfig.model_validate(candidate))
            except ValidationError as error:
                raise SweepSpecError(_setting_errors(error, values)) from None
        settings.append(setting)
    return SweepPlan(settings=settings, base=base_config)


def _setting_errors(error: ValidationError, values: Mapping[str, float | int]) -> dict[str, str]:
    """A generated config that does not validate: the axis that made it, or the config field it broke."""
    where = " ".join(f"{name}={format_value(value)}" for name, value in values.items())
    out: dict[str, str] = {}
    for name, message in explain(error.errors()).items():
        key = f"axes.{name}" if name in values else f"config.{name}"
        out.setdefault(key, f"{message} (in the setting {where}): change the axis values or the base config")
    return out


def format_value(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(sweep_name: str, values: Mapping[str, float | int], seed: int, *, max_chars: int = 200) -> str:
    """'beta sweep · beta=0.1 lr=1e-05 seed=42', cut to the name column's length."""
    parts = " ".join(f"{SHORT_NAMES.get(name, name)}={format_value(value)}" for name, value in values.items())
    return f"{sweep_name} · {parts} seed={seed}"[:max_chars]
