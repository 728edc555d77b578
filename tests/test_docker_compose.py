"""docker-compose.yml cannot run here (no Docker engine): parse it and check what it promises."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import make_url

from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_postgres_and_a_dashboard_pointed_at_it() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "dashboard"} <= set(services)
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


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_a_ray_head_and_a_worker_node_that_joins_it() -> None:
    services = _compose()["services"]
    assert set(services) == {"db", "dashboard", "ray-head", "ray-worker"}
    head, worker = services["ray-head"], services["ray-worker"]
    # Both are the dashboard's image: the worker node needs the trainer, the head the same Ray version.
    assert head["build"] == worker["build"] == services["dashboard"]["build"] == "."
    head_command = head["command"]
    assert head_command[:3] == ["ray", "start", "--head"] and "--block" in head_command
    gcs_port = head_command[head_command.index("--port") + 1]
    assert head_command[head_command.index("--num-cpus") + 1] == "0", "runs belong on the worker nodes"
    worker_command = worker["command"]
    assert worker_command[:2] == ["ray", "start"] and "--block" in worker_command
    assert worker_command[worker_command.index("--address") + 1] == f"ray-head:{gcs_port}"
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    # Checkpoints written on the worker node land where the dashboard lists them.
    assert "dashboard-data:/app/data" in worker["volumes"] and "dashboard-data:/app/data" in services["dashboard"]["volumes"]
    # Ray's Jobs API runs any command it is sent: loopback only, like the dashboard.
    for service in services.values():
        assert all(str(port).startswith("127.0.0.1:") for port in service.get("ports", []))


def test_compose_dashboard_submits_runs_to_the_ray_head_and_is_reachable_from_the_workers(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from orpo_dash.cli import _settings, build_parser

    services = _compose()["services"]
    dashboard = services["dashboard"]
    command = dashboard["command"]
    assert command[:2] == ["orpo-dash", "serve"]
    for key, value in dashboard["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = _settings(build_parser().parse_args(command[1:]))
    assert settings.launcher == "ray"
    head_command = services["ray-head"]["command"]
    dashboard_port = head_command[head_command.index("--dashboard-port") + 1]
    assert settings.ray_address == f"http://ray-head:{dashboard_port}"
    assert head_command[head_command.index("--dashboard-host") + 1] == "0.0.0.0", "the dashboard container must reach it"
    assert dashboard["depends_on"]["ray-head"]["condition"] == "service_healthy"
    # Workers stream to the dashboard by its service name: its bind address 0.0.0.0 is no URL.
    worker_url = urlsplit(settings.worker_url)
    assert (worker_url.hostname, worker_url.port) == ("dashboard", settings.port)


def test_the_image_has_ray_for_the_head_and_the_worker_nodes() -> None:
    assert 'pip install -e ".[trainer,ray]"' in (ROOT / "Dockerfile").read_text()
