"""Every path field of a run is confined to its allowed roots, and a refusal leaks nothing about the
path: not its contents, not whether it exists (server/services/allowed_paths.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LiveServer, _serve, serve_with_auth

SECRET = "root:$6$s3cr3t-hash:19000:0:99999:7:::"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Roots for data, models and outputs, and a secret outside all of them reachable by `..`,
    by absolute path and through symlinks placed inside each root."""
    base = tmp_path_factory.mktemp("paths")
    folders = {name: base / name for name in ("data", "models", "out", "secret")}
    for folder in folders.values():
        folder.mkdir()
    secret = folders["secret"]
    (secret / "shadow.csv").write_text(f"{SECRET}\nprompt,chosen,rejected\n")
    (secret / "model").mkdir()
    (secret / "model" / "config.json").write_text(json.dumps({"model_type": "llama", "secret": SECRET}))
    (folders["data"] / "shadow.csv").symlink_to(secret / "shadow.csv")
    (folders["models"] / "linked-model").symlink_to(secret / "model", target_is_directory=True)
    (folders["out"] / "linked-out").symlink_to(secret, target_is_directory=True)
    (folders["data"] / "ok.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}) + "\n")
    return folders


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, layout: dict[str, Path]) -> Iterator[LiveServer]:
    env = {"ORPO_DASH_DATA_ROOTS": str(layout["data"]), "ORPO_DASH_MODEL_ROOTS": str(layout["models"]),
           "ORPO_DASH_OUTPUT_ROOT": str(layout["out"]), "ORPO_DASH_LAUNCH_WORKERS": "0"}
    yield from _serve(tmp_path_factory.mktemp("paths-server"), None, env)


def _escapes(layout: dict[str, Path], field: str) -> dict[str, str]:
    """Ways out of the field's root: `..`, an absolute path, a symlink inside the root, and a
    path that does not exist (which must read exactly like one that does)."""
    secret = layout["secret"]
    if field in ("dataset", "eval_dataset"):
        root, target, link = layout["data"], secret / "shadow.csv", layout["data"] / "shadow.csv"
    elif field in ("model", "resume_from"):
        root, target, link = layout["models"], secret / "model", layout["models"] / "linked-model"
    else:
        root, target, link = layout["out"], secret / "run", layout["out"] / "linked-out" / "run"
    return {
        "dot-dot": f"{root}/../secret/{target.name}",
        "absolute": str(target),
        "symlink": str(link),
        "missing": str(secret / "does-not-exist.csv" if "dataset" in field else secret / "does-not-exist"),
    }


FIELDS = ("dataset", "eval_dataset", "model", "resume_from", "output_dir")


def _refusal(response_json: dict, field: str) -> str:
    if "errors" in response_json:  # /api/runs/validate
        return response_json["errors"][field]
    messages = [error["msg"] for error in response_json["detail"] if error["loc"][-1] == field]
    assert messages, response_json
    return messages[0]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("endpoint", ["/api/runs", "/api/runs/validate"])
def test_paths_outside_their_root_are_refused_alike_and_leak_nothing(server, layout, field: str, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    messages = {}
    for way, value in _escapes(layout, field).items():
        response = server.api("POST", endpoint, json={field: value})
        assert response.status_code == (422 if endpoint == "/api/runs" else 200), (way, response.text)
        assert SECRET not in response.text and "s3cr3t" not in response.text, (way, response.text)
        assert "exist" not in _refusal(response.json(), field) and "not found" not in _refusal(response.json(), field)
        messages[way] = _refusal(response.json(), field)
    # One message for every way out, whether or not the path is there: nothing to probe with.
    assert len(set(messages.values())) == 1, messages
    message = messages["missing"]
    assert message.startswith(field) and "ORPO_DASH_" in message
    allowed = layout["data"] if "dataset" in field else layout["out"] if field == "output_dir" else layout["models"]
    assert str(allowed.resolve()) in message


def test_paths_inside_their_roots_are_accepted(server, layout) -> None:  # type: ignore[no-untyped-def]
    (layout["out"] / "ckpt").mkdir(exist_ok=True)
    body = {"dataset": str(layout["data"] / "ok.jsonl"), "eval_dataset": str(layout["data"] / "ok.jsonl"),
            "output_dir": str(layout["out"] / "run-a"), "resume_from": str(layout["out"] / "ckpt"),
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "batch_size": 1}
    result = server.api("POST", "/api/runs/validate", json=body).json()
    assert not {"dataset", "eval_dataset", "output_dir", "resume_from", "model"} & set(result["errors"]), result
    assert result["preview"]["count"] == 1


def test_bundled_names_and_hub_names_are_not_paths(server) -> None:  # type: ignore[no-untyped-def]
    result = server.api("POST", "/api/runs/validate", json={"model": "org/some-model", "dataset": "org/some-prefs"}).json()
    assert "model" not in result["errors"] and "dataset" not in result["errors"], result
    result = server.api("POST", "/api/runs/validate", json={}).json()  # bundled model and dataset
    assert "dataset" not in result["errors"] and result["preview"]["count"] > 0, result
    # A hub-shaped name that climbs out is a path, and refused as one.
    result = server.api("POST", "/api/runs/validate", json={"model": "org/.."}).json()
    assert "ORPO_DASH_MODEL_ROOTS" in result["errors"]["model"]


def test_an_external_workers_output_dir_outside_the_root_is_never_listed(server, layout) -> None:  # type: ignore[no-untyped-def]
    """launch=false: the paths are the worker's own, kept in its config, but the dashboard lists and
    serves files only from an output_dir inside its output root."""
    (layout["secret"] / "checkpoint-1").mkdir(exist_ok=True)
    created = server.api("POST", "/api/runs", params={"launch": "false"},
                         json={"dataset": "org/prefs", "output_dir": str(layout["secret"])})
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["output_dir"] is None and run["checkpoints"] == []
    assert run["config"]["output_dir"] == str(layout["secret"])
    files = server.api("GET", f"/api/runs/{run['id']}/files").json()
    assert files["files"] == []
    assert server.api("GET", f"/api/runs/{run['id']}/files/shadow.csv").status_code == 404


def test_default_roots_share_the_working_directory_only_on_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import Settings

    monkeypatch.chdir(tmp_path)
    local = Settings(data_dir=tmp_path / "data").path_roots()
    assert local.data == local.model == ((tmp_path / "data").resolve(), tmp_path.resolve())
    assert local.output == (tmp_path / "data").resolve()
    shared = Settings(host="0.0.0.0", allow_public_bind=True, data_dir=tmp_path / "data").path_roots()
    assert shared.data == shared.model == ((tmp_path / "data").resolve(),)


def test_roots_are_read_from_the_environment_like_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.settings import Settings

    monkeypatch.setenv("ORPO_DASH_DATA_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("ORPO_DASH_OUTPUT_ROOT", str(tmp_path / "out"))
    roots = Settings().path_roots()
    assert roots.data == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    assert roots.output == (tmp_path / "out").resolve()


@pytest.fixture(scope="module", params=["auth", "public-bind"])
def shared_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                  layout: dict[str, Path]) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A shared dashboard, the two ways: auth on (bob, a member, calls with his API token), or bound beyond
    loopback (the container case, ORPO_DASH_ALLOW_PUBLIC_BIND=1, where no login exists)."""
    from tests.accounts import create_token, login

    env = {"ORPO_DASH_DATA_ROOTS": str(layout["data"]), "ORPO_DASH_MODEL_ROOTS": str(layout["models"]),
           "ORPO_DASH_OUTPUT_ROOT": str(layout["out"]), "ORPO_DASH_LAUNCH_WORKERS": "0"}
    folder = tmp_path_factory.mktemp(f"shared-{request.param}")
    if request.param == "auth":
        for server in serve_with_auth(folder, env, users=("bob",)):
            client = login(server.url, "bob")
            token = create_token(client)
            client.close()
            yield server, {"Authorization": f"Bearer {token}"}
    else:
        yield from ((server, {}) for server in _serve(
            folder, None, {**env, "ORPO_DASH_HOST": "0.0.0.0", "ORPO_DASH_ALLOW_PUBLIC_BIND": "1"}))


@pytest.mark.parametrize("field", FIELDS)
def test_an_external_workers_paths_are_confined_like_a_launched_runs_on_a_shared_dashboard(shared_server, layout, field: str) -> None:  # type: ignore[no-untyped-def]
    """launch=false on a shared dashboard: the same roots and the same refusal as a launched run."""
    server, headers = shared_server
    messages = {}
    for way, value in _escapes(layout, field).items():
        response = server.api("POST", "/api/runs", params={"launch": "false"}, json={field: value}, headers=headers)
        assert response.status_code == 422, (way, response.text)
        assert SECRET not in response.text and "s3cr3t" not in response.text, (way, response.text)
        messages[way] = _refusal(response.json(), field)
    assert len(set(messages.values())) == 1, messages
    launched = server.api("POST", "/api/runs", json={field: _escapes(layout, field)["missing"]}, headers=headers)
    assert _refusal(launched.json(), field) == messages["missing"]  # word for word a launched run's refusal
    allowed = layout["data"] if "dataset" in field else layout["out"] if field == "output_dir" else layout["models"]
    assert str(allowed.resolve()) in messages["missing"]


def test_an_external_workers_paths_inside_the_roots_are_registered_on_a_shared_dashboard(shared_server, layout) -> None:  # type: ignore[no-untyped-def]
    """Only the roots are checked: the files may live on the worker's own machine, under the same folders."""
    server, headers = shared_server
    body = {"dataset": str(layout["data"] / "on-the-worker.jsonl"), "model": str(layout["models"] / "on-the-worker"),
            "output_dir": str(layout["out"] / "external"), "resume_from": str(layout["out"] / "external" / "checkpoint-9")}
    created = server.api("POST", "/api/runs", params={"launch": "false"}, json=body, headers=headers)
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "running" and run["output_dir"] == str(layout["out"] / "external")


def test_on_loopback_without_auth_an_external_workers_paths_are_labels_never_opened(server, layout) -> None:  # type: ignore[no-untyped-def]
    """launch=false on loopback without auth: the worker's paths are recorded as given (they may be on its
    own machine), and nothing the dashboard serves for the run opens them."""
    secret = layout["secret"]
    body = {"dataset": str(layout["data"] / "shadow.csv"), "eval_dataset": str(secret / "shadow.csv"),
            "model": str(secret / "model"), "resume_from": str(secret / "model"), "output_dir": str(secret)}
    created = server.api("POST", "/api/runs", params={"launch": "false"}, json=body)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    assert {field: created.json()["config"][field] for field in body} == body
    served = [server.api("GET", path) for path in (
        f"/api/runs/{run_id}", f"/runs/{run_id}", f"/api/runs/{run_id}/files", f"/api/runs/{run_id}/files/shadow.csv",
        f"/api/runs/{run_id}/files/model/config.json", f"/api/runs/{run_id}/export?format=json", "/", "/runs/new",
        f"/runs/new?clone={run_id}", f"/compare?runs={run_id}")]
    for response in served:
        assert response.status_code < 500 and SECRET not in response.text and "s3cr3t" not in response.text, response.url
    assert served[2].json()["files"] == [] and served[3].status_code == 404 and served[4].status_code == 404
    # Cloning it sends its config through the form's check, which refuses what lies outside the roots
    # before opening anything (the dataset preview included).
    checked = server.api("POST", "/api/runs/validate", json=created.json()["config"])
    assert checked.status_code == 200 and SECRET not in checked.text and "s3cr3t" not in checked.text
    assert {"dataset", "eval_dataset", "model", "resume_from", "output_dir"} <= set(checked.json()["errors"])
