"""The one typed settings object. Nothing else in the server reads environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.launchers.capacity import default_max_concurrent_runs
from server.services.allowed_paths import PathRoots

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    """Dashboard settings, read from ORPO_DASH_* environment variables or CLI flags."""

    model_config = SettingsConfigDict(env_prefix="ORPO_DASH_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind. Any other than loopback needs auth=true.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to serve on.")
    data_dir: Path = Field(Path("data"), description="Folder for the SQLite file, run folders and worker logs.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means an embedded SQLite file in data_dir."
    )
    max_concurrent_runs: int = Field(
        default_factory=default_max_concurrent_runs, ge=1,
        description="Runs trained at once (local worker processes, or Ray jobs submitted); more wait queued, "
                    "with their place in line shown. Default: one per visible GPU, else one per 4 CPU cores (at least 1).",
    )
    worker_python: str = Field("", description="Python executable for workers; empty means this interpreter.")
    model_cache_dir: Path | None = Field(None, description="Where workers cache converted models (default ~/.cache/orpo-dash).")
    launch_workers: bool = Field(True, description="Start a local worker process for each new run.")
    import_judge_process: bool = Field(
        True, description="Judge an imported run's alerts in a separate process while it is stored (faster on two "
                          "or more cores); false: in the request's thread, before it is stored.",
    )
    worker_timeout: float = Field(
        60.0, gt=0.0,
        description="A running run whose worker has sent nothing (not even a heartbeat) for this many seconds "
                    "becomes 'lost', counting wall-clock time (a dashboard's downtime included; a restarted "
                    "dashboard judges the runs left running at once). A worker that comes back is "
                    "told so, stops at a checkpoint, and its points are still kept.",
    )
    heartbeat_seconds: float = Field(
        5.0, gt=0.0,
        description="How often workers send a heartbeat when they have nothing else to send (told to them on "
                    "connect); at most a third of worker_timeout. Unset, it is 5 s or a quarter of a shorter "
                    "worker_timeout.",
    )
    alert_webhook_url: str = Field(
        "", description="POST a Slack-compatible JSON message here when an alert opens or escalates; empty: off."
    )

    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders a run may read datasets from, separated by ':' (os.pathsep). Empty: the data dir, "
                    "plus the directory the server was started in while it listens on loopback only (docs/security.md).",
    )
    model_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders a run may load models and resume checkpoints from, separated by ':'. Empty: as data_roots. "
                    "output_root is always allowed too (fine-tuning an earlier run's checkpoint).",
    )
    output_root: Path | None = Field(
        None, description="The folder under which runs may write checkpoints (output_dir). Empty: the data dir.",
    )
    max_request_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest HTTP request body accepted; larger ones get 413.",
    )
    max_import_bytes: int = Field(
        512 * 1024 * 1024, ge=1024,
        description="Largest file `orpo-dash import` and the Import page may upload (a 100,000-step trainer_state.json "
                    "is about 60 MB); larger ones get 413.",
    )
    worker_url: str = Field(
        "", description="URL workers use to reach this dashboard (e.g. http://dashboard-host:8000); empty: "
                        "http://<host>:<port>, loopback when bound to 0.0.0.0. Set it when workers run on other machines. "
                        "Several, comma-separated, when several dashboard processes share one PostgreSQL database: a "
                        "worker moves to the next one when the one it streams to stops answering.",
    )
    launcher: Literal["local", "ray"] = Field(
        "local", description="Who starts a queued run's worker: 'local' (a subprocess of this dashboard) or "
                             "'ray' (a Ray job on the cluster at ray_address; needs `pip install orpo-dash[ray]`).",
    )
    ray_address: str = Field("", description="The Ray dashboard / Jobs API URL, e.g. http://ray-head:8265 (launcher 'ray').")
    ray_runtime_env: dict[str, Any] = Field(
        default_factory=dict,
        description="Ray runtime_env for every run's job, as JSON, e.g. {\"pip\": [\"orpo-dash\"]} or "
                    "{\"working_dir\": \"/src/orpo-dash\"}; empty when every node has the same image.",
    )
    ray_cpus_per_run: float = Field(1.0, gt=0.0, description="CPUs Ray reserves for each run's job (entrypoint_num_cpus).")
    ray_poll_seconds: float = Field(2.0, gt=0.0, description="How often the Ray launcher asks Ray about its jobs.")

    auth: bool = Field(
        False,
        description="Require a login (or an API token) for every page, API call and websocket. "
                    "Off on loopback, where one person uses their own machine; required for any other host.",
    )
    session_secret: str = Field(
        "", description="Key that signs login cookies; empty: generated once and kept in data_dir/session-secret.",
    )
    session_max_age_seconds: int = Field(
        12 * 3600, ge=1, description="A login lasts this long, then the browser is asked to log in again.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins allowed per user name and address within login_failure_window_seconds; "
                             "past that, logins from there get 429 with Retry-After.",
    )
    login_failure_window_seconds: float = Field(
        60.0, gt=0.0, description="The window over which failed logins are counted (login_max_failures).",
    )
    secure_cookies: bool = Field(
        False, description="Mark the login cookie Secure (sent over HTTPS only): set it when a TLS proxy serves the dashboard.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the dashboard answers to (the Host header), besides the bound host, localhost, "
                    "127.0.0.1 and [::1]; anything else gets 400, which stops DNS-rebinding pages. '*' allows any.",
    )
    allow_public_bind: bool = Field(
        False,
        description="Permit a non-loopback host without auth. Only for containers whose port is published on "
                    "127.0.0.1 alone (docker-compose.yml).",
    )
    # Where local workers find Hugging Face hub models they downloaded before, read under the names
    # huggingface_hub itself reads, so the form can say whether a hub model needs the network.
    hf_hub_cache: Path | None = Field(
        None, validation_alias=AliasChoices("ORPO_DASH_HF_HUB_CACHE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"),
        description="The Hugging Face hub cache local workers use (default $HF_HOME/hub).",
    )
    hf_home: Path | None = Field(
        None, validation_alias=AliasChoices("HF_HOME"),
        description="Hugging Face's home folder (default ~/.cache/huggingface); its hub/ is the hub cache.",
    )

    @field_validator("data_roots", "model_roots", mode="before")
    @classmethod
    def _split_path_list(cls, value: object) -> object:
        # Like PATH: one string of folders separated by os.pathsep, so an environment variable reads naturally.
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # ORPO_DASH_ALLOWED_HOSTS=a.example,10.0.0.5 reads more naturally than a JSON list.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_public_bind_without_auth(self) -> Settings:
        # Without auth, anyone who can reach the port could start processes on this machine.
        if not self.loopback_only and not self.auth and not self.allow_public_bind:
            raise ValueError(
                f"host={self.host!r} would expose the dashboard beyond this machine, and auth is off (no authentication); "
                "turn it on with --auth (ORPO_DASH_AUTH=1) after creating a user with `orpo-dash user add NAME --admin`, "
                "or use 127.0.0.1 (or an SSH tunnel); ORPO_DASH_ALLOW_PUBLIC_BIND=1 is only for a container whose port "
                "is published on 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _ray_needs_an_address(self) -> Settings:
        if self.launcher == "ray" and not self.ray_address.startswith(("http://", "https://")):
            raise ValueError(
                f"launcher='ray' needs ray_address, the Ray dashboard's URL (got {self.ray_address!r}); set "
                "--ray-address or ORPO_DASH_RAY_ADDRESS to e.g. http://ray-head:8265 (`ray start --head` prints it)"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_fits_the_timeout(self) -> Settings:
        # One late heartbeat (a busy machine, a reconnect) must not make a healthy run 'lost'.
        if "heartbeat_seconds" not in self.model_fields_set:
            self.heartbeat_seconds = min(self.heartbeat_seconds, self.worker_timeout / 4)
        if self.heartbeat_seconds * 3 > self.worker_timeout:
            raise ValueError(
                f"heartbeat_seconds={self.heartbeat_seconds:g} leaves too little room in worker_timeout="
                f"{self.worker_timeout:g}: workers must be able to miss two heartbeats; lower "
                "ORPO_DASH_HEARTBEAT_SECONDS or raise ORPO_DASH_WORKER_TIMEOUT to at least three times it"
            )
        return self

    @property
    def trusted_hosts(self) -> list[str]:
        """Host header values (without port) this dashboard answers to: workers on other machines use worker_url's."""
        worker_hosts = [host for url in self.worker_url.split(",") if (host := urlsplit(url.strip()).hostname)]
        return [self.host, "localhost", "127.0.0.1", "::1", *worker_hosts, *self.allowed_hosts]

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'orpo-dash.sqlite3').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir.resolve() / "runs"

    @property
    def loopback_only(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def shared(self) -> bool:
        """Reachable by more than this machine's one user: auth is on, or it is bound beyond loopback."""
        return self.auth or not self.loopback_only

    def hub_cache_dir(self) -> Path:
        """The folder huggingface_hub caches models in, on this machine (its own default order)."""
        if self.hf_hub_cache is not None:
            return self.hf_hub_cache.expanduser()
        return (self.hf_home or Path("~/.cache/huggingface")).expanduser() / "hub"

    def path_roots(self) -> PathRoots:
        """The resolved folders run paths must lie in (server/services/allowed_paths.py).

        The directory the server started in is a default root only on loopback: there the one caller
        is this machine's user, who can read it anyway, and relative paths like `data/prefs.jsonl`
        keep working. On a network it is wherever the service happened to start (often / or a home
        folder), so its roots must be named.
        """
        data_dir = self.data_dir.resolve()
        default = [data_dir, *([Path.cwd()] if self.loopback_only else [])]
        data = [root.expanduser().resolve() for root in self.data_roots] or default
        model = [root.expanduser().resolve() for root in self.model_roots] or default
        output = (self.output_root or data_dir).expanduser().resolve()
        return PathRoots(data=tuple(data), model=tuple(model), output=output)


@lru_cache
def get_settings() -> Settings:
    return Settings()
