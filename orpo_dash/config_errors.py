"""Run-config validation errors in words a user can act on: which field, what was wrong, the fix.

Pydantic's own messages ("Input should be greater than 0", "Extra inputs are not permitted") name
neither the value that was given nor what to write instead. The form, the API and `orpo-dash train`
all report through `explain`, so a mistake reads the same wherever it is made.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic.fields import FieldInfo

from orpo_dash.number_format import format_exact
from orpo_dash.protocol import shown
from orpo_dash.run_config import RunConfig

_BOUND_WORDS = {
    "greater_than": ("greater than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}
_NUMBER_TYPES = {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float", "finite_number"}
_BOOL_TYPES = {"bool_parsing", "bool_type"}
_VALUE_ERROR_PREFIX = "Value error, "


def explain(errors: Iterable[Mapping[str, Any]], fields: Mapping[str, FieldInfo] | None = None) -> dict[str, str]:
    """Field name -> one actionable sentence, from pydantic's `ValidationError.errors()`.

    `loc` may start with "body" (FastAPI); a model-level error gets the key "config".
    """
    explained: dict[str, str] = {}
    for error in errors:
        field, sentence = describe(error, fields)
        explained.setdefault(field, sentence)
    return explained


def describe(error: Mapping[str, Any], fields: Mapping[str, FieldInfo] | None = None) -> tuple[str, str]:
    """(field, sentence) for one pydantic error; `fields` defaults to RunConfig's."""
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return "body", f"the request body is not valid JSON ({reason}); send one JSON object"
    loc = [part for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = str(loc[0]) if loc else "config"
    return field, _sentence(field, error, RunConfig.model_fields if fields is None else fields)


def _sentence(field: str, error: Mapping[str, Any], fields: Mapping[str, FieldInfo]) -> str:
    kind = error.get("type", "")
    given = error.get("input")
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_field(field, fields)
    if kind == "missing":
        return f"{field} is required"
    if kind in _BOUND_WORDS:
        words, key = _BOUND_WORDS[kind]
        return f"{field} must be {words} {_number(context.get(key))} (got {shown(given)}){_default_hint(field, fields)}"
    if kind in _NUMBER_TYPES:
        noun = "whole number" if kind.startswith("int") else "finite number" if kind == "finite_number" else "number"
        return f"{field} must be a {noun} (got {shown(given)}){_default_hint(field, fields)}"
    if kind in _BOOL_TYPES:
        return f"{field} must be true or false (got {shown(given)})"
    if kind in ("model_attributes_type", "model_type", "dict_type") and field == "config":
        return f"the run settings must be one JSON object of field: value pairs (got {type(given).__name__})"
    if kind == "string_too_long":
        return (f"{field} must be at most {context.get('max_length')} characters (got {_length(given)}); "
                "shorten it")
    if kind == "string_too_short":
        return f"{field} must be at least {context.get('min_length')} character(s) (got {shown(given)})"
    if kind == "too_long":
        return (f"{field} may hold at most {context.get('max_length')} items (got {context.get('actual_length')}); "
                "remove some")
    if kind == "string_type":
        return f"{field} must be text (got {shown(given)})"
    if kind == "literal_error":
        return f"{field} must be one of {context.get('expected', '')} (got {shown(given)})"
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix(_VALUE_ERROR_PREFIX)
    return message if field == "config" or field in message else f"{field}: {message}"


def _length(given: object) -> str:
    return f"{len(given)} characters" if isinstance(given, str) else shown(given)


def _unknown_field(field: str, fields: Mapping[str, FieldInfo]) -> str:
    names = set(fields)
    for info in fields.values():  # accepted aliases too (beta's "lambda")
        alias = info.validation_alias
        names.update(choice for choice in getattr(alias, "choices", []) if isinstance(choice, str))
    close = difflib.get_close_matches(field, sorted(names), n=1, cutoff=0.75)
    fix = f"did you mean '{close[0]}'?" if close else "remove it or check its spelling"
    return f"unknown field '{field}': {fix}"


def _default_hint(field: str, fields: Mapping[str, FieldInfo]) -> str:
    info = fields.get(field)
    if info is None or info.default is None or info.is_required():
        return ""
    default = info.get_default(call_default_factory=True)
    if default in (None, [], {}):
        return ""
    shown_default = format_exact(default) if isinstance(default, float) else default
    return f"; the default is {shown_default}"


def _number(bound: object) -> object:
    """A bound as the form shows numbers (1e-8, not 1e-08); whole floats without ".0"."""
    return format_exact(bound) if isinstance(bound, float) else bound


def oversized_step(
    *, batch_size: int, accumulation: int, processes: int = 1, available: int, where: str, unit: str
) -> str | None:
    """Why a step that needs more pairs than there are is refused, and the largest batch_size that fits;
    None when it fits. The form checks the dataset's rows, the worker its exact training split: the
    same words either way ("... but {where} has only {available} {unit}")."""
    per_step = batch_size * accumulation * processes
    if available <= 0 or per_step <= available:
        return None
    factors = f"batch_size {batch_size} x gradient_accumulation_steps {accumulation}"
    if processes > 1:
        factors += f" x {processes} processes"
    fix = f"set batch_size to at most {max(1, available // (accumulation * processes))}"
    if accumulation != 1:
        fix += " or lower gradient_accumulation_steps"
    return f"{factors} = {per_step} pairs per step, but {where} has only {available} {unit}: {fix}"
