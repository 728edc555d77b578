"""Bad run configs are refused before anything is stored: a 422 per field on create, and the same
checks (schema, files, dataset size) from /api/runs/validate, each naming the field and the fix."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest


def _tiny_run(model_dir: Path, dataset: Path) -> dict:
    return {
        "name": "e2e", "model": str(model_dir), "dataset": str(dataset), "max_steps": 6, "batch_size": 2,
        "max_length": 64, "max_prompt_length": 32, "learning_rate": 1e-3, "eval_fraction": 0.2, "seed": 0,
    }


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        # {tmp} is inside the test dashboard's allowed roots (tests/server/in_process.py), /nowhere is not.
        ("dataset", "{tmp}/nowhere/prefs.jsonl", "dataset file not found"),
        ("model", "{tmp}/nowhere/model", "model path not found"),
        ("dataset", "/nowhere/prefs.jsonl", "ORPO_DASH_DATA_ROOTS"),
        ("model", "/nowhere/model", "ORPO_DASH_MODEL_ROOTS"),
        ("learning_rate", -1e-4, "greater than 0"),
        ("batch_size", -2, "greater than 0"),
        ("batch_size", 0, "greater than 0"),
        ("batch_size", 4000, "pairs per step, but dataset"),
        # Checkpoints are written after training: a folder that cannot be made would throw the run away.
        ("output_dir", "{dataset}/run", "cannot be created: {dataset} is a file"),
        ("output_dir", "/proc/orpo-dash-run", "ORPO_DASH_OUTPUT_ROOT"),
        ("alert_thresholds", {"min_stp": 80}, "did you mean 'min_step'?"),
        # An empty field says it is required and how to fill it, not "dataset '' is a directory".
        ("dataset", "", "dataset is required: choose a .jsonl, .json, .csv or .parquet file"),
        ("dataset", "  ", "or keep the bundled default bundled:orpo-demo-prefs"),
        ("model", "", "model is required: give a local folder saved with save_pretrained"),
    ],
)
def test_bad_input_gets_a_per_field_422_and_creates_no_run(client, tiny_model_dir, tiny_dataset_file, field, value, expected) -> None:  # type: ignore[no-untyped-def]
    if isinstance(value, str):
        value = value.format(tmp=tempfile.gettempdir(), dataset=tiny_dataset_file)
        expected = expected.format(dataset=tiny_dataset_file)
    body = {**_tiny_run(tiny_model_dir, tiny_dataset_file), field: value}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 422
    problems = {tuple(d["loc"])[-1]: d["msg"] for d in response.json()["detail"]}
    assert field in problems and expected in problems[field], problems
    assert client.get("/api/runs").json() == []


def test_one_422_lists_schema_and_file_problems_with_their_fixes(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/runs", json={
        "dataset": str(tmp_path / "missing.jsonl"), "model": "/nowhere/model", "learning_rate": -1, "learnig_rate": 1e-5,
    })
    assert response.status_code == 422
    problems = {tuple(d["loc"])[-1]: d["msg"] for d in response.json()["detail"]}
    assert set(problems) == {"dataset", "model", "learning_rate", "learnig_rate"}
    assert problems["learning_rate"] == "learning_rate must be greater than 0 (got -1); the default is 2e-5"
    assert problems["learnig_rate"] == "unknown field 'learnig_rate': did you mean 'learning_rate'?"
    assert "bundled:orpo-demo-prefs" in problems["dataset"]
    not_json = client.post("/api/runs", content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"][0]["msg"]
    assert client.get("/api/runs").json() == []


def test_a_step_bigger_than_the_dataset_is_reported_with_other_problems(client, tiny_model_dir, tiny_dataset_file) -> None:  # type: ignore[no-untyped-def]
    rows = len(tiny_dataset_file.read_text().splitlines())
    body = {**_tiny_run(tiny_model_dir, tiny_dataset_file), "batch_size": rows, "gradient_accumulation_steps": 2, "beta": -1}
    errors = client.post("/api/runs/validate", json=body).json()["errors"]
    assert set(errors) == {"batch_size", "beta"}
    assert errors["batch_size"] == (
        f"batch_size {rows} x gradient_accumulation_steps 2 = {2 * rows} pairs per step, but dataset {tiny_dataset_file} "
        f"has only {rows} rows: set batch_size to at most {rows // 2} or lower gradient_accumulation_steps"
    )
    fits = {**body, "batch_size": rows // 2, "beta": 0.1}
    assert client.post("/api/runs/validate", json=fits).json()["errors"] == {}


def test_dataset_with_wrong_columns_names_what_it_found(client, tiny_model_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "good": "a", "bad": "b"}) + "\n")
    response = client.post("/api/runs/validate", json=_tiny_run(tiny_model_dir, bad))
    body = response.json()
    assert body["ok"] is False
    assert "question" in body["errors"]["dataset"] and "prompt" in body["errors"]["dataset"]


def test_validation_reports_file_and_schema_problems_in_one_round_trip(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/api/runs/validate", json={
        "dataset": str(tmp_path / "missing.jsonl"), "model": "/nowhere/model", "beta": -1, "batch_size": 0,
    })
    errors = response.json()["errors"]
    assert set(errors) == {"dataset", "model", "beta", "batch_size"}
    assert "not found" in errors["dataset"] and "greater than 0" in errors["beta"]
