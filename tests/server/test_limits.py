"""Bad input gets a 4xx that says what was wrong, never a 500 (docs/security.md, Limits): ids beyond
the database's integers, lone surrogates and NUL characters, bodies, names, tags and numbers too big.
On SQLite and on PostgreSQL, whose integers are narrower and whose text cannot hold NUL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import LiveServer, _serve, assert_no_server_tracebacks


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    database_url = None
    if request.param == "postgres":
        database_url = request.getfixturevalue("module_postgres_url")
    yield from _serve(tmp_path_factory.mktemp("limits"), database_url, {"ORPO_DASH_LAUNCH_WORKERS": "0"})


@pytest.fixture(scope="module", autouse=True)
def no_tracebacks(server: LiveServer) -> Iterator[None]:
    yield
    assert_no_server_tracebacks(server)


@pytest.fixture(scope="module")
def run_id(server: LiveServer) -> int:
    created = server.api("POST", "/api/runs", params={"launch": "false"}, json={"dataset": "org/prefs", "name": "limits"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _raw(server: LiveServer, method: str, path: str, body: bytes, **headers: str) -> httpx.Response:
    return httpx.request(method, server.url + path, content=body, timeout=30,
                         headers={"content-type": "application/json", **headers})


def _messages(response: httpx.Response) -> str:
    return " ".join(str(error.get("msg")) for error in response.json()["detail"])


@pytest.mark.parametrize("run", [2**31, 2**63 - 1, 2**63, 2**64 + 1, 10**30])
def test_ids_beyond_the_id_column_are_404(server: LiveServer, run: int) -> None:
    for path in (f"/api/runs/{run}", f"/api/runs/{run}/metrics", f"/api/runs/{run}/files", f"/runs/{run}",
                 f"/api/export?runs=1,{run}"):
        assert server.api("GET", path).status_code == 404, path
    for method, path in (("PATCH", f"/api/runs/{run}"), ("DELETE", f"/api/runs/{run}"), ("POST", f"/api/runs/{run}/stop")):
        response = server.api(method, path, json={"name": "x"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    compare = server.api("GET", f"/compare?runs={run},1")
    assert compare.status_code == 200 and "No run with id" in compare.text


@pytest.mark.parametrize("text", ["²", "1" * 5000, "-1", "0x10"])
def test_odd_run_ids_in_urls_are_not_found_or_refused(server: LiveServer, text: str) -> None:
    assert server.api("GET", f"/runs/{text}").status_code == 404
    assert server.api("GET", f"/compare?runs={text}").status_code == 200
    response = server.api("GET", f"/api/export?runs={text}")
    assert response.status_code == 422 and "runs must be run ids" in response.text and len(response.text) < 1000


@pytest.mark.parametrize("body", [
    b'{"name": "\\ud800x"}',  # a lone surrogate: valid JSON to Python, no UTF-8 for the database
    b'{"name": "a\\u0000b"}',  # NUL: PostgreSQL text cannot hold it
    b'{"beta": NaN}', b'{"beta": Infinity}', b'{"beta": 1e400}',
    b'{"name": "x", "sample_prompts": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"name": ', b"\xff\xfe not utf-8",
])
def test_unparsable_bodies_are_422_with_a_reason(server: LiveServer, run_id: int, body: bytes) -> None:
    for method, path in (("POST", "/api/runs"), ("POST", "/api/runs/validate"), ("PATCH", f"/api/runs/{run_id}")):
        response = _raw(server, method, path, body)
        assert response.status_code == 422, (method, path, body[:40], response.status_code, response.text)
        assert "request body" in _messages(response), response.text


def test_nul_in_a_url_is_422(server: LiveServer, run_id: int) -> None:
    for path in (f"/api/runs/{run_id}/metrics?names=loss%00", "/api/runs?q=%00", f"/api/runs/{run_id}/files/a%00b"):
        response = server.api("GET", path)
        assert response.status_code == 422, (path, response.text)
        assert "NUL" in response.text


def test_bodies_over_the_limit_are_413_announced_or_not(server: LiveServer) -> None:
    big = b'{"name": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    response = _raw(server, "POST", "/api/runs", big)
    assert response.status_code == 413 and "ORPO_DASH_MAX_REQUEST_BYTES" in response.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as the body arrives
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = httpx.post(server.url + "/api/runs/validate", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_names_and_tags_have_limits(server: LiveServer, run_id: int) -> None:
    cases = {
        "name": {"name": "x" * 201},
        "tags": {"tags": [f"t{i}" for i in range(100_000)]},
    }
    for field, body in cases.items():
        response = server.api("PATCH", f"/api/runs/{run_id}", json=body)
        assert response.status_code == 422, (field, response.text[:300])
        assert field in _messages(response) and len(response.text) < 2000
    response = server.api("PATCH", f"/api/runs/{run_id}", json={"tags": ["x" * 65]})
    assert response.status_code == 422 and "at most 64 characters" in _messages(response)
    response = server.api("POST", "/api/runs", params={"launch": "false"}, json={"name": "n" * 201})
    assert response.status_code == 422 and "name must be at most 200 characters" in _messages(response)


@pytest.mark.parametrize(("field", "value", "bound"), [
    ("beta", 1e308, "at most 100"), ("max_steps", 10**30, "at most 10000000"), ("seed", 2**64, "at most 4294967295"),
    ("learning_rate", 5.0, "at most 1"), ("max_length", 10**9, "at most 131072"), ("num_epochs", 1e9, "at most 10000"),
    ("batch_size", 10**6, "at most 4096"), ("sample_max_new_tokens", 10**6, "at most 4096"),
])
def test_run_config_numbers_have_upper_bounds_with_messages(server: LiveServer, field: str, value: object, bound: str) -> None:
    response = server.api("POST", "/api/runs", params={"launch": "false"}, json={field: value})
    assert response.status_code == 422, response.text
    message = _messages(response)
    assert f"{field} must be {bound}" in message
    advice = server.api("POST", "/api/runs/validate", json={field: value}).json()
    assert advice["ok"] is False and bound in advice["errors"][field]


def test_timestamps_carry_their_utc_offset(server: LiveServer, run_id: int) -> None:
    run = server.api("GET", f"/api/runs/{run_id}").json()
    assert run["created_at"].endswith("+00:00") and run["started_at"].endswith("+00:00"), run
    listed = server.api("GET", "/api/runs").json()
    assert all(r["created_at"].endswith("+00:00") for r in listed)


@pytest.mark.parametrize("field", ["dataset", "eval_dataset", "model", "output_dir", "resume_from"])
@pytest.mark.parametrize("path", ["*" * 5000, "/tmp/" + "x" * 300 + "/data.jsonl"])
def test_a_path_too_long_for_the_file_system_is_a_field_error_not_a_500(server: LiveServer, field: str, path: str) -> None:
    """The OS refuses to look at a name longer than NAME_MAX (ENAMETOOLONG): a bad value, not a crash
    (found by the API fuzz: a dataset of 5,000 '*')."""
    body = {"dataset": "org/prefs", field: path}
    for url in ("/api/runs/validate", "/api/runs"):
        response = server.api("POST", url, json=body)
        assert response.status_code < 500, (url, response.status_code, response.text[:300])
