"""The one typed settings object. Nothing else in the server reads environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Dashboard settings, read from ORPO_DASH_* environment variables or CLI flags."""

    model_config = SettingsConfigDict(env_prefix="ORPO_DASH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind. Keep 127.0.0.1 until auth lands.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to serve on.")
    data_dir: Path = Field(Path("data"), description="Folder for the SQLite file, run folders and worker logs.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means an embedded SQLite file in data_dir."
    )
    max_concurrent_runs: int = Field(1, ge=1, description="Local worker processes running at once; more wait queued.")
    worker_python: str = Field("", description="Python executable for workers; empty means this interpreter.")
    model_cache_dir: Path | None = Field(None, description="Where workers cache converted models (default ~/.cache/orpo-dash).")
    launch_workers: bool = Field(True, description="Start a local worker process for each new run.")
    orphan_grace_seconds: float = Field(
        90.0, ge=0.0,
        description="After a restart, a run still marked running whose worker has not reconnected within this "
                    "many seconds is marked failed (a worker that comes back later reopens it).",
    )
    alert_webhook_url: str = Field(
        "", description="POST a Slack-compatible JSON message here when an alert opens or escalates; empty: off."
    )

    allow_public_bind: bool = Field(
        False,
        description="Permit a non-loopback host. Only for containers whose port is published on 127.0.0.1 alone.",
    )

    @model_validator(mode="after")
    def _refuse_public_bind(self) -> Settings:
        # There is no authentication yet: binding beyond loopback would let anyone on the network
        # start processes on this machine.
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.allow_public_bind:
            raise ValueError(
                f"host={self.host!r} would expose the dashboard beyond this machine, and it has no authentication "
                "yet; use 127.0.0.1 (or an SSH tunnel), or set ORPO_DASH_ALLOW_PUBLIC_BIND=1 inside a container "
                "whose port is published on 127.0.0.1 only"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'orpo-dash.sqlite3').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir.resolve() / "runs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
