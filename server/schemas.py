"""API schemas, one per direction: RunCreate in, RunPublic out (the ORM Run never leaves the server)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orpo_dash.run_config import RunConfig


class RunCreate(RunConfig):
    """POST /api/runs body: every run-config field as in the config file, plus an optional display name."""

    name: str | None = Field(None, max_length=200, description="Display name; defaults to run-<id>.")

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate(self.model_dump(exclude={"name"}))


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description="New display name.")
    tags: list[str] | None = Field(None, description="Replaces the run's tags.")


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    severity: str
    onset_step: int
    step: int
    message: str
    advice: str
    state: str
    closed_step: int | None = None
    created_at: datetime


class RunPublic(BaseModel):
    id: int
    name: str
    status: str
    config: dict[str, Any]
    tags: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total_steps: int | None
    last_step: int | None
    error: str | None
    latest: dict[str, float | None]
    alerts: list[AlertPublic]
    output_dir: str | None
    checkpoints: list[str]


class RunRegistered(RunPublic):
    """Returned once when a run is registered for an external worker: carries its worker token."""

    worker_token: str


class Series(BaseModel):
    step: list[int]
    value: list[float | None]
    time: list[float]


class MetricsResponse(BaseModel):
    run_id: int
    series: dict[str, Series]
    downsampled: bool


class LogLinePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    time: float
    stream: str
    text: str


class SamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    prompt: str
    completion: str
    time: float


class DatasetPreview(BaseModel):
    count: int
    columns: list[str]
    pairs: list[dict[str, Any]]


class ValidationResult(BaseModel):
    ok: bool
    errors: dict[str, str]
    advice: dict[str, str] = Field(
        default_factory=dict, description="Settings that make an ORPO pitfall likely; they do not block the launch."
    )
    preview: DatasetPreview | None = None
