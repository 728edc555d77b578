"""Record a real MLflow tracking server's REST answers for one run, for tests/server/test_imports.py (which serves
them from a small HTTP server: a real `mlflow server` needs the full mlflow package, whose pins would downgrade
ours, e.g. pyarrow, and pull pandas, scikit-learn and matplotlib into the test environment).

How mlflow_rest_run.json was made (mlflow 3.17.2 in its own venv):
    python -m venv /tmp/mlv && /tmp/mlv/bin/pip install mlflow
    /tmp/mlv/bin/mlflow server --backend-store-uri sqlite:////tmp/mls/mlflow.db --port 5055 &
    python -c "from tests.import_fixtures import write_mlflow_run; print(write_mlflow_run('http://127.0.0.1:5055'))"
    python -m tests.recorded.record_mlflow http://127.0.0.1:5055 RUN_ID tests/recorded/mlflow_rest_run.json
The run is tests.import_fixtures.trl_logs logged by transformers' MLflowCallback; get-history is recorded in pages
of 30 points, so a client must follow next_page_token to read a whole history.
"""

from __future__ import annotations

import json
import sys

import httpx


def main(base: str, run_id: str, out: str) -> None:
    page = 30
    client = httpx.Client(base_url=base)
    get = client.get("/api/2.0/mlflow/runs/get", params={"run_id": run_id})
    missing = client.get("/api/2.0/mlflow/runs/get", params={"run_id": "0" * 32})
    history = {}
    for key in sorted(m["key"] for m in get.json()["run"]["data"]["metrics"]):
        pages, token = [], None
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": page}
            if token:
                params["page_token"] = token
            body = client.get("/api/2.0/mlflow/metrics/get-history", params=params).json()
            pages.append(body)
            token = body.get("next_page_token")
            if not token:
                break
        history[key] = pages
    version = client.get("/version").text
    json.dump({"recorded_from": f"mlflow {version} server (mlflow server --backend-store-uri sqlite:///...), "
                                f"get-history with max_results={page}",
               "run_id": run_id, "runs/get": get.json(),
               "runs/get missing": {"status": missing.status_code, "body": missing.json()},
               "metrics/get-history": history}, open(out, "w"), indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4])
