"""A model that cannot load is refused or warned about at submit, and a worker whose hub model cannot be
had fails in seconds (issue 20 point 2)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import _serve

HUB_NAME = "no-such-org/no-such-model"


def _model_error(client, model: str) -> str:  # type: ignore[no-untyped-def]
    response = client.post("/api/runs/validate", json={"model": model})
    assert response.status_code == 200, response.text
    return response.json()["errors"].get("model", "")


def test_local_models_that_cannot_load_are_refused_with_the_fix(client, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as folder:  # inside the test dashboard's model root
        root = Path(folder)
        (root / "no-config").mkdir()
        (root / "no-config" / "model.safetensors").write_bytes(b"")
        (root / "model.Q4_1.gguf").write_bytes(b"GGUF")
        assert "has no config.json; point at a folder saved with save_pretrained" in _model_error(client, str(root / "no-config"))
        assert "is a .gguf file; the worker loads a folder saved with save_pretrained" in _model_error(client, str(root / "model.Q4_1.gguf"))
        assert _model_error(client, str(root / "missing")).startswith("model path not found")
        assert _model_error(client, str(tiny_model_dir)) == ""
        # Creating the run is refused the same way, and nothing is stored.
        refused = client.post("/api/runs", json={"model": str(root / "no-config")})
        assert refused.status_code == 422 and "has no config.json" in refused.json()["detail"][0]["msg"]
    assert client.get("/api/runs").json() == []


def test_paths_outside_the_model_roots_get_one_refusal_whether_or_not_they_exist(client) -> None:  # type: ignore[no-untyped-def]
    existing, missing = _model_error(client, "/etc"), _model_error(client, "/nowhere-at-all/model")
    assert "ORPO_DASH_MODEL_ROOTS" in existing
    assert existing.replace("/etc", "X") == missing.replace("/nowhere-at-all/model", "X")
    assert "config.json" not in existing and "not found" not in existing


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    return cache


@pytest.fixture
def server_with_hub_cache(tmp_path: Path, hub_cache: Path):  # type: ignore[no-untyped-def]
    """A real dashboard (local launcher) whose workers use an empty Hugging Face cache of the test's own."""
    yield from _serve(tmp_path, None, {"HF_HUB_CACHE": str(hub_cache)})


def test_a_hub_model_not_in_the_local_cache_gets_a_network_warning(server_with_hub_cache, hub_cache) -> None:  # type: ignore[no-untyped-def]
    result = server_with_hub_cache.api("POST", "/api/runs/validate", json={"model": HUB_NAME}).json()
    assert result["ok"] is True  # a warning, not an error: the worker may well have network
    assert result["advice"]["model"].startswith(f"model {HUB_NAME} needs network, not cached here")
    bundled = server_with_hub_cache.api("POST", "/api/runs/validate", json={}).json()
    assert "model" not in bundled["advice"]

    # The same name once a worker here has downloaded it (huggingface_hub's cache layout).
    snapshot = hub_cache / "models--no-such-org--no-such-model" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    cached = server_with_hub_cache.api("POST", "/api/runs/validate", json={"model": HUB_NAME}).json()
    assert "model" not in cached["advice"], cached


def test_a_worker_whose_hub_model_cannot_be_had_fails_before_loading_torch(server_with_hub_cache, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    created = server_with_hub_cache.api("POST", "/api/runs", json={
        "model": HUB_NAME, "dataset": str(tiny_dataset_file), "max_steps": 2})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    run = created.json()
    for _ in range(600):
        run = server_with_hub_cache.api("GET", f"/api/runs/{run_id}").json()
        if run["status"] == "failed":
            break
        time.sleep(0.1)
    print(f"run failed {time.monotonic() - started:.1f} s after it was created")
    assert run["status"] == "failed", run
    # Offline the hub cannot be reached; online it has no such model. Either way the message says so.
    assert (f"model {HUB_NAME} needs network, not cached here" in run["error"]
            or f"model {HUB_NAME} not found on the Hugging Face hub" in run["error"]), run["error"]
    logs = "\n".join(line["text"] for line in server_with_hub_cache.api("GET", f"/api/runs/{run_id}/logs").json())
    assert "loading model" not in logs  # it failed before the recipe (and torch) started
