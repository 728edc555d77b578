"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis): whatever arrives, no 5xx.

A real server on a real port, with launching workers off so fuzzed run creations stay queued
instead of training. Bounded to a few examples per operation so it runs in CI in about half a minute per database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import LiveServer, _serve

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fuzzed_server(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    # PostgreSQL too: its integers are narrower and its text holds no NUL, where SQLite let inputs pass.
    database_url = request.getfixturevalue("module_postgres_url") if request.param == "postgres" else None
    yield from _serve(tmp_path_factory.mktemp("api-fuzz"), database_url, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: LiveServer) -> schemathesis.schemas.BaseSchema:
    # A few runs to read, so generated ids sometimes hit one.
    for name in ("a", "b"):
        fuzzed_server.api("POST", "/api/runs", params={"launch": "false"}, json={"name": name, "dataset": "org/prefs"})
    return schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")


def test_no_input_makes_the_api_answer_5xx(api_schema: schemathesis.schemas.BaseSchema, fuzzed_server: LiveServer) -> None:
    # Driven by hand rather than through schemathesis' pytest plugin, which does not run on pytest 9.
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would raise here: the schema is ours
        for mode in GenerationMode:  # valid inputs, and inputs the schema says are invalid

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=[not_a_server_error])

            try:
                call()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to make invalid (an operation without parameters): no negative case exists
            except Exception as error:  # noqa: BLE001 - collected, so one run reports every operation
                failures.append(f"{operation.label} ({mode.value}): {str(error)[:1500]}")
    assert fuzzed_server.log_path is not None
    log = fuzzed_server.log_path.read_text()
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-4000:]
