"""HTML pages: server-rendered shells whose data comes from the JSON API and the browser websocket.

Routes stay thin: parse, look the run up through the runs service, render a template.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import annotated_types
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse
from pydantic.fields import FieldInfo

from orpo_dash.metric_names import HIGHER_IS_BETTER, LOWER_IS_BETTER
from orpo_dash.number_format import format_exact
from orpo_dash.protocol import shown
from orpo_dash.run_config import RunConfig, field_groups
from server.assets import PLOTLY_JS
from server.auth import current_caller
from server.charts import CHART_GROUPS, COMPARE_METRICS, metric_axes_json
from server.db import SessionDep
from server.services import sweeps as sweep_service
from server.services.runs import get_run, lineage_of
from server.settings import Settings
from server.templating import templates

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_caller)])

# Sections shown open on the new-run form; the rest start collapsed as "advanced".
OPEN_SECTIONS = ("Model", "Data", "ORPO", "Optimisation")
LABELS = {
    "beta": "λ (beta): odds-ratio weight",
    "dtype": "Dtype",
    "lr_scheduler": "LR scheduler",
    "adam_beta1": "Adam β1",
    "adam_beta2": "Adam β2",
    "adam_epsilon": "Adam ε",
    "max_grad_norm": "Max grad norm",
    "lora": "Use LoRA",
    "lora_r": "LoRA rank (r)",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "lora_target_modules": "LoRA target modules",
    "num_epochs": "Epochs",
    "prompt_loss": "Include prompt tokens in NLL",
    "eval_dataset": "Eval dataset",
    "max_steps": "Max steps",
}
BETA_EXPLAINER = (
    "ORPO minimises L = L_SFT + λ·L_OR. L_SFT teaches the chosen responses; L_OR pushes the odds of "
    "the chosen response above the rejected one. Raise λ to learn preferences harder (risk: an over-"
    "conservative model); lower it if the total loss rises. The ORPO paper uses 0.1."
)


@dataclass
class FormField:
    """What the template needs to draw one RunConfig field."""

    name: str
    label: str
    help: str
    kind: str  # text | number | checkbox | select | lines | json
    default: Any
    nullable: bool = False
    options: list[str] = field(default_factory=list)
    step: str = "any"
    min: float | None = None
    max: float | None = None
    explainer: str | None = None

    @property
    def default_text(self) -> str:
        """The default as the input's initial value."""
        if self.default is None:
            return ""
        if self.kind == "lines":
            return "\n".join(self.default)
        if self.kind == "json":
            return json.dumps(self.default) if self.default else ""
        if isinstance(self.default, float):
            return format_exact(self.default)  # 2e-5, as every page writes it (not Python's 2e-05)
        return str(self.default)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def _form_field(name: str, info: FieldInfo) -> FormField:
    annotation, nullable = _unwrap_optional(info.annotation)
    default = info.get_default(call_default_factory=True)
    spec = FormField(
        name=name,
        label=LABELS.get(name, name.replace("_", " ").capitalize()),
        help=info.description or "",
        kind="text",
        default=default,
        nullable=nullable,
        explainer=BETA_EXPLAINER if name == "beta" else None,
    )
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        spec.kind, spec.options = "select", [str(a) for a in typing.get_args(annotation)]
    elif annotation is bool:
        spec.kind = "checkbox"
    elif annotation in (int, float):
        spec.kind, spec.step = "number", "1" if annotation is int else "any"
        for constraint in info.metadata:
            if isinstance(constraint, (annotated_types.Ge, annotated_types.Gt)):
                spec.min = getattr(constraint, "ge", getattr(constraint, "gt", None))
            if isinstance(constraint, (annotated_types.Le, annotated_types.Lt)):
                spec.max = getattr(constraint, "le", getattr(constraint, "lt", None))
    elif origin is list:
        spec.kind = "lines"
    elif origin is dict:
        spec.kind = "json"
    return spec


def form_sections() -> list[tuple[str, bool, list[FormField]]]:
    """(section title, open by default, fields) in `field_groups()` order."""
    fields = RunConfig.model_fields
    return [
        (title, title in OPEN_SECTIONS, [_form_field(name, fields[name]) for name in names])
        for title, names in field_groups().items()
    ]


def _run_id(text: str) -> int | None:
    """A run id typed into a URL, or None. ASCII digits only ("²".isdigit() is true, int() refuses it),
    and short: an id has at most 10 digits, and int() of thousands of digits raises."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _not_found(request: Request, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "404.html", {"message": message}, status_code=404)


# Not under /static: the app mounts StaticFiles there first, and a mount shadows later routes.
@router.get("/vendor/plotly.min.js", name="plotly_js")
def plotly_js() -> FileResponse:
    """plotly.js's strict bundle, vendored (static/vendor/README.md): the dashboard never needs a CDN, and
    the bundle draws every trace, parcoords' WebGL included, under our CSP (no 'unsafe-eval')."""
    return FileResponse(
        PLOTLY_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@router.get("/", response_class=HTMLResponse, name="runs_list")
def runs_list(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "runs_list.html", {"metric_directions": _metric_directions()})


def _metric_directions() -> dict[str, list[str]]:
    """Which metrics have a "best" (lower or higher is better), for the pages' scripts."""
    return {"lower": sorted(LOWER_IS_BETTER), "higher": sorted(HIGHER_IS_BETTER)}


@router.get("/runs/new", response_class=HTMLResponse, name="run_new")
def run_new(request: Request, clone: int | None = None, fix: int | None = None) -> HTMLResponse:
    sections = form_sections()
    context = {
        "sections": sections,
        "defaults": RunConfig().model_dump(mode="json"),
        # What the form's script needs to turn inputs back into JSON values.
        "field_kinds": {f.name: {"kind": f.kind, "nullable": f.nullable} for _, _, fields in sections for f in fields},
        "clone_id": clone,
        # "Clone with this fix": the alert of the cloned run whose suggested change the form applies.
        "fix_alert_id": fix if clone is not None else None,
        # The kind and address only: the cluster's resources are fetched by the page (/api/launcher), so an
        # unreachable Ray head never slows the form down.
        "launcher": _launcher_kind(request.app.state.settings),
    }
    return templates.TemplateResponse(request, "run_new.html", context)


@router.get("/import", response_class=HTMLResponse, name="run_import")
def run_import(request: Request) -> HTMLResponse:
    """Upload a run made elsewhere (POST /api/imports does the work; static/js/import.js drives it)."""
    return templates.TemplateResponse(request, "import.html", {})


def _launcher_kind(settings: Settings) -> dict[str, str]:
    kind = "none" if not settings.launch_workers else settings.launcher
    return {"kind": kind, "ray_address": settings.ray_address}


@router.get("/runs/{run_id}", response_class=HTMLResponse, name="run_detail")
def run_detail(request: Request, run_id: str, session: SessionDep) -> HTMLResponse:
    # A str path parameter so that /runs/abc gets the friendly 404 page, not a JSON 422.
    number = _run_id(run_id)
    run = get_run(session=session, run_id=number) if number is not None else None
    if run is None:
        return _not_found(request, f"There is no run with id {run_id}. It may have been deleted.")
    context = {"run": run, "chart_groups": CHART_GROUPS, "metric_axes": metric_axes_json(), "config_groups": list(field_groups().items()),
               "metric_directions": _metric_directions(), "lineage": lineage_of(session=session, run=run)}
    return templates.TemplateResponse(request, "run_detail.html", context)


@router.get("/compare", response_class=HTMLResponse, name="compare")
def compare(request: Request, session: SessionDep, runs: str = "", sweep: str = "") -> HTMLResponse:
    if sweep:  # ?sweep=ID: that sweep's runs, before any listed in ?runs=
        sweep_id = _run_id(sweep)
        if sweep_id is None or sweep_service.get_sweep(session=session, sweep_id=sweep_id) is None:
            return _not_found(request, f"There is no sweep with id {shown(sweep)}.")
        runs = ",".join([*(str(run.id) for run in sweep_service.sweep_runs(session=session, sweep_id=sweep_id)), runs])
    ids: list[int] = []
    not_ids: list[str] = []
    for part in runs.split(","):
        part = part.strip()
        if (number := _run_id(part)) is not None:
            if number not in ids:
                ids.append(number)
        elif part:
            not_ids.append(part)
    found = [run_id for run_id in ids if get_run(session=session, run_id=run_id) is not None]
    missing = [str(run_id) for run_id in ids if run_id not in found] + [shown(part) for part in not_ids]
    context = {"run_ids": found, "missing": missing, "metrics": COMPARE_METRICS, "metric_axes": metric_axes_json(),
               "config_groups": list(field_groups().items()), "metric_directions": _metric_directions()}
    return templates.TemplateResponse(request, "compare.html", context)


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse, name="sweep_detail")
def sweep_detail(request: Request, sweep_id: str, session: SessionDep) -> HTMLResponse:
    """One sweep; static/js/sweep_detail.js fills it from GET /api/sweeps/{id}."""
    number = _run_id(sweep_id)  # the same rule as a run id: digits only, at most 10
    sweep = sweep_service.get_sweep(session=session, sweep_id=number) if number is not None else None
    if sweep is None:
        return _not_found(request, f"There is no sweep with id {shown(sweep_id)}. It may have been deleted.")
    return templates.TemplateResponse(request, "sweep_detail.html",
                                      {"sweep": sweep, "metric_directions": _metric_directions()})
