"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it promises."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_postgres_and_a_dashboard_pointed_at_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "dashboard"}
    db = services["db"]
    assert db["image"].startswith("postgres:")
    dashboard = services["dashboard"]
    assert dashboard["depends_on"]["db"]["condition"] == "service_healthy"

    env = dashboard["environment"]
    url = make_url(env["ORPO_DASH_DATABASE_URL"])
    assert url.get_backend_name() == "postgresql"
    assert url.host == "db" and url.port == 5432
    assert url.username == db["environment"]["POSTGRES_USER"]
    assert url.password == db["environment"]["POSTGRES_PASSWORD"]
    assert url.database == db["environment"]["POSTGRES_DB"]
    # Published on loopback only: there is no authentication yet.
    assert all(str(port).startswith("127.0.0.1:") for port in dashboard["ports"])


def test_compose_environment_is_accepted_by_the_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["dashboard"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.resolved_database_url == env["ORPO_DASH_DATABASE_URL"]


def test_public_bind_without_the_container_opt_in_is_refused(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from pydantic import ValidationError

    monkeypatch.delenv("ORPO_DASH_ALLOW_PUBLIC_BIND", raising=False)
    with pytest.raises(ValidationError, match="no authentication"):
        Settings(host="0.0.0.0")


def test_dockerfile_copies_every_runtime_folder() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ("orpo_dash", "server", "trainer", "templates", "static", "migrations"):
        assert f"COPY {folder} {folder}" in dockerfile
