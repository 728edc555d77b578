"""API schemas, one per direction: RunCreate in, RunPublic out (the ORM Run never leaves the server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)

from orpo_dash.run_config import RunConfig
from orpo_dash.sweep_spec import MAX_AXIS_CHARS, MAX_SEEDS, MAX_SWEEP_RUNS


def _as_utc(value: datetime) -> datetime:
    # SQLite hands DateTime(timezone=True) columns back naive; every stored time is UTC (models.utcnow).
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ISO 8601 with its offset, always UTC: "2026-11-30T18:49:41.123456+00:00". Without an offset a browser
# reads the time as its own local time.
UtcDatetime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(datetime.isoformat, return_type=str, when_used="json"),
]


# A run's name and tags are labels on a list page, not documents (docs/security.md, Limits).
MAX_NAME_CHARS = 200
MAX_TAGS = 50
MAX_TAG_CHARS = 64
Tag = Annotated[str, StringConstraints(max_length=MAX_TAG_CHARS)]


class RunCreate(RunConfig):
    """POST /api/runs body: every run-config field as in the config file, plus an optional display name
    and, for a run started from "Clone with this fix", the run and alert it fixes."""

    name: str | None = Field(None, max_length=MAX_NAME_CHARS, description="Display name; defaults to run-<id>.")
    parent_run_id: int | None = Field(None, ge=1, description="The run this one was cloned from.")
    from_alert_id: int | None = Field(
        None, ge=1, description="The alert of parent_run_id whose suggested change this run applies (needs parent_run_id).",
    )

    def run_config(self) -> RunConfig:
        return RunConfig.model_validate(self.model_dump(exclude={"name", "parent_run_id", "from_alert_id"}))


class RunUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=MAX_NAME_CHARS, description="New display name.")
    tags: list[Tag] | None = Field(
        None, max_length=MAX_TAGS, description=f"Replaces the run's tags: at most {MAX_TAGS}, each at most {MAX_TAG_CHARS} characters.",
    )


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    severity: str
    onset_step: int
    step: int
    message: str = Field(description="What is wrong, as a plain sentence.")
    details: str = Field("", description="The statistics behind the message (trend tests, medians, steps); may be empty.")
    advice: str
    suggested_change: dict[str, Any] | None = Field(
        None, description='The config change the advice suggests, {"field": ..., "from": ..., "to": ...}; null when none.',
    )
    state: str
    closed_step: int | None = None
    created_at: UtcDatetime


class PhasePublic(BaseModel):
    name: str = Field(description="What the worker is doing: one of orpo_dash.protocol.PHASES.")
    done: int | None = Field(None, description="Parts of this phase done (e.g. eval batches), when it has parts.")
    total: int | None = Field(None, description="Parts in this phase, when it has parts.")
    time: float = Field(description="Unix time the worker reported it.")


class RunPublic(BaseModel):
    id: int
    name: str
    status: str
    config: dict[str, Any]
    tags: list[str]
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    total_steps: int | None
    last_step: int | None
    error: str | None
    latest: dict[str, float | None]
    best: dict[str, float | None] = Field(
        default_factory=dict, description="Best value logged per metric asked for with ?best= (lowest loss, highest "
                                          "accuracy...); metrics with no better direction are left out.")
    alerts: list[AlertPublic]
    output_dir: str | None
    output_dir_exists: bool = Field(False, description="Whether output_dir exists on the dashboard's machine (an external "
                                                       "worker's folder, or one no checkpoint was written to yet, does not).")
    checkpoints: list[str]
    checkpoint_bytes: int = Field(0, description="Bytes the run's checkpoint folders take on disk.")
    created_by: str | None = None  # the user who started it; None while auth is off
    queue_position: int | None = Field(
        None, description="1 for the next queued run to start, 2 for the one after...; None unless queued.")
    phase: PhasePublic | None = Field(None, description="What a running run's worker is doing now, if it says.")
    parent_run_id: int | None = None  # "Clone with this fix": the run it was cloned from...
    from_alert_id: int | None = None  # ...and the alert it fixes
    sweep_id: int | None = Field(None, description="The sweep that made this run; null for a run started on its own.")


class RunRegistered(RunPublic):
    """Returned once when a run is registered for an external worker: carries its worker token."""

    worker_token: str


class StoragePublic(BaseModel):
    data_dir: str
    data_bytes: int = Field(description="Everything under the data folder: database, run folders, logs, checkpoints.")
    output_root: str = Field(description="The folder under which runs may write checkpoints.")
    checkpoint_bytes: int = Field(description="Every run's checkpoint folders together.")
    free_bytes: int = Field(description="Free space on the data folder's disk.")


class CheckpointsDeleted(BaseModel):
    deleted: int = Field(description="Checkpoint folders removed.")
    freed_bytes: int


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
        default_factory=dict,
        description="Settings that make an ORPO pitfall likely, and a hub model a local worker would have to "
                    "download (\"needs network, not cached here\"); they do not block the launch.",
    )
    preview: DatasetPreview | None = None


class LauncherPublic(BaseModel):
    """Who starts this dashboard's runs, and what the cluster has (shown on the new-run form)."""

    kind: str = Field(description="'local' (subprocesses of the dashboard), 'ray' (Ray jobs) or 'none' (external workers only).")
    max_concurrent_runs: int = Field(description="Runs started at once; more wait queued.")
    ray_address: str | None = Field(None, description="The Ray Jobs API URL (launcher 'ray').")
    nodes: int | None = Field(None, description="Alive Ray nodes; null when unknown.")
    cpus: float | None = Field(None, description="CPUs across the Ray cluster.")
    gpus: float | None = Field(None, description="GPUs across the Ray cluster.")
    cpus_per_run: float | None = Field(None, description="CPUs Ray reserves for each run.")
    error: str | None = Field(None, description="Why the cluster could not be described, if it could not.")


class SweepCreate(BaseModel):
    """POST /api/sweeps (and /api/sweeps/preview) body: a base run config and the fields swept over it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", min_length=1, max_length=MAX_NAME_CHARS, description="Display name; runs are named after it.")
    config: dict[str, Any] = Field(default_factory=dict, description="The base run config, as POST /api/runs takes it.")
    axes: dict[str, Annotated[str, StringConstraints(max_length=MAX_AXIS_CHARS)]] = Field(
        default_factory=dict, description="Field -> values: '0.05, 0.1', '1e-6..5e-6, 4 values' or 'log 5e-6..5e-5, 4 values'.")
    mode: Literal["grid", "random"] = Field("grid", description="grid: every combination; random: `count` sampled settings.")
    count: int | None = Field(None, ge=1, le=MAX_SWEEP_RUNS, description="Random mode: how many settings to sample.")
    random_seed: int = Field(0, ge=0, le=2**31 - 1, description="Random mode: the same seed samples the same settings.")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description="Runs per setting, with seeds config.seed, config.seed + 1, ...")
    max_concurrent: int = Field(1, ge=1, le=64, description="Runs of this sweep running at once.")
    stop_on_critical: bool = Field(False, description="Stop a run of the sweep when it raises a critical alert.")


class SweepCreated(BaseModel):
    id: int
    url: str
    run_ids: list[int]
    run_count: int
    estimated_seconds: float | None


class SweepPreview(BaseModel):
    run_count: int
    estimated_seconds: float | None
    estimate_basis: str = Field(description="Where the estimate comes from, or why there is none.")
    settings: list[dict[str, float | int]]


class SweepSummary(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    run_count: int
    status_counts: dict[str, int]


class SweepRunPublic(BaseModel):
    id: int
    name: str
    status: str
    seed: int | None
    values: dict[str, float | int | None]
    final: dict[str, float | None]
    best: dict[str, float | None]
    alerts: int
    critical_alerts: int


class SweepSettingPublic(BaseModel):
    values: dict[str, float | int | None]
    run_ids: list[int]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    n: int


class SweepPublic(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    created_by: str | None
    mode: str
    axes: dict[str, str]
    fields: list[str]
    count: int | None
    random_seed: int
    seeds: int
    max_concurrent: int
    stop_on_critical: bool
    status_counts: dict[str, int]
    metrics: list[str]
    runs: list[SweepRunPublic]
    settings: list[SweepSettingPublic]
