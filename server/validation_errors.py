"""422 responses whose messages say what was wrong with which field and how to fix it.

FastAPI's default repeats pydantic's terse wording. This handler keeps its shape (`detail` is a list
of {type, loc, msg, input}) so clients that parse it keep working, and rewrites `msg` through the
same `explain` the form and the CLI use. A run being created also gets its file checks (model path,
dataset) in the same response, so one round trip shows every problem.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.status import HTTP_422_UNPROCESSABLE_CONTENT

from orpo_dash.config_errors import describe
from orpo_dash.protocol import shown
from server.services.config_checks import check_payload

# Routes whose body is a run config: unknown fields get "did you mean" from RunConfig's names.
RUN_CONFIG_PATHS = ("/api/runs", "/api/runs/validate")


async def explain_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    is_run_config = request.url.path in RUN_CONFIG_PATHS and request.method == "POST"
    detail: list[dict[str, Any]] = []
    for error in exc.errors():
        _, sentence = describe(error, None if is_run_config else {})
        # The input is echoed as pydantic gives it, unless long: a 1 MB name does not come back 1 MB.
        given = error.get("input")
        detail.append({**error, "msg": sentence, "input": given if len(repr(given)) <= 200 else shown(given)})
    body = exc.body
    if is_run_config and isinstance(body, dict) and request.query_params.get("launch", "true").lower() != "false":
        already = {str(part) for error in exc.errors() for part in error.get("loc", ())[1:2]}
        # In a thread: it reads the dataset file, which must not stall the event loop.
        file_errors, _ = await run_in_threadpool(check_payload, body, roots=request.app.state.settings.path_roots())
        detail += [
            {"type": "value_error", "loc": ["body", field], "msg": message, "input": body.get(field)}
            for field, message in file_errors.items() if field not in already
        ]
    return JSONResponse(status_code=HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": jsonable_encoder(detail)})
