"""The run-files endpoints list and serve a run's checkpoint files and nothing outside its output folder."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import LiveServer


@pytest.fixture
def run_with_files(client: TestClient, tiny_dataset_file: Path, tmp_path: Path) -> tuple[int, Path]:
    output = tmp_path / "out"
    (output / "checkpoint-10").mkdir(parents=True)
    (output / "checkpoint-10" / "config.json").write_text('{"model_type": "llama"}')
    (output / "checkpoint-10" / "model.safetensors").write_bytes(b"\x00" * 64)
    (output / ".checkpoint-20-tmp").mkdir()  # a save in progress: not listed
    (output / ".checkpoint-20-tmp" / "partial.bin").write_bytes(b"x")
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    (output / "checkpoint-10" / "escape.txt").symlink_to(secret)
    (output / "linked-dir").symlink_to(tmp_path, target_is_directory=True)
    inner_target = output / "checkpoint-10" / "config.json"
    (output / "alias.json").symlink_to(inner_target)  # a link that stays inside is fine
    created = client.post(
        "/api/runs", params={"launch": "false"},
        json={"dataset": str(tiny_dataset_file), "output_dir": str(output), "name": "files"},
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], output


def test_lists_checkpoint_files_but_not_hidden_or_escaping_ones(client, run_with_files) -> None:  # type: ignore[no-untyped-def]
    run_id, output = run_with_files
    body = client.get(f"/api/runs/{run_id}/files").json()
    assert body["output_dir"] == str(output)
    assert [f["path"] for f in body["files"]] == ["alias.json", "checkpoint-10/config.json", "checkpoint-10/model.safetensors"]
    assert body["files"][2]["size"] == 64


def test_downloads_one_file_as_an_attachment(client, run_with_files) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = run_with_files
    response = client.get(f"/api/runs/{run_id}/files/checkpoint-10/config.json")
    assert response.status_code == 200
    assert response.text == '{"model_type": "llama"}'
    assert 'attachment; filename="config.json"' in response.headers["content-disposition"]
    assert client.get(f"/api/runs/{run_id}/files/alias.json").status_code == 200


@pytest.mark.parametrize("path", [
    "..%2Fsecret.txt",
    "checkpoint-10%2F..%2F..%2Fsecret.txt",
    "%2Fetc%2Fpasswd",
    "checkpoint-10/escape.txt",  # symlink to a file outside
    "linked-dir/secret.txt",  # through a symlinked folder
])
def test_refuses_paths_that_resolve_outside_the_output_folder(client, run_with_files, path: str) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = run_with_files
    # Sent raw (no client-side normalisation of `..`), as a hostile client would.
    response = client.send(client.build_request("GET", f"/api/runs/{run_id}/files/{path}"))
    assert response.status_code == 403, (path, response.status_code, response.text)
    assert "not yours" not in response.text


def test_raw_dot_dot_in_the_url_is_refused(live_server: LiveServer, tiny_dataset_file: Path, tmp_path: Path) -> None:
    # Over a real socket: the in-process client hands the app httpx's normalised path (`/api/secret.txt`),
    # so only a real server sees the request line with `../` in it, as a hostile client sends it.
    output = tmp_path / "out"
    output.mkdir()
    (tmp_path / "secret.txt").write_text("not yours")
    run_id = live_server.api("POST", "/api/runs", params={"launch": "false"},
                             json={"dataset": str(tiny_dataset_file), "output_dir": str(output)}).json()["id"]
    # A literal `../` is not collapsed by the client here: the request line carries it as-is.
    with httpx.Client(base_url=live_server.url) as http:
        request = http.build_request("GET", f"/api/runs/{run_id}/files/x")
        request.url = request.url.copy_with(raw_path=f"/api/runs/{run_id}/files/../../../secret.txt".encode())
        response = http.send(request)
    assert response.status_code in (403, 404)
    assert "not yours" not in response.text


def test_missing_hidden_and_unknown_run_are_404(client, run_with_files) -> None:  # type: ignore[no-untyped-def]
    run_id, _ = run_with_files
    assert client.get(f"/api/runs/{run_id}/files/checkpoint-10/nope.bin").status_code == 404
    assert client.get(f"/api/runs/{run_id}/files/.checkpoint-20-tmp/partial.bin").status_code == 404
    assert client.get(f"/api/runs/{run_id}/files/checkpoint-10").status_code == 404  # a folder
    assert client.get("/api/runs/999999/files").status_code == 404


def test_a_run_without_an_output_folder_lists_nothing(client, tiny_dataset_file, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/runs", params={"launch": "false"},
                         json={"dataset": str(tiny_dataset_file), "output_dir": str(tmp_path / "never-made")}).json()
    assert client.get(f"/api/runs/{created['id']}/files").json()["files"] == []
    assert os.path.exists(tmp_path / "never-made") is False
