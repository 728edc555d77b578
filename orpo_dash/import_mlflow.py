"""MLflow runs (docs/metrics.md, "Importing runs"): from a tracking server through its REST API, or from a
file store folder (`mlruns/`), both read by `orpo-dash import` on the user's machine. The CLI uploads what it
read as one JSON document, which the dashboard reads (read_mlflow_document):

    {"mlflow_run": {"info": {...}, "data": {"params": [{"key", "value"}], "tags": [...]}},
     "metric_history": {"loss": {"step": [...], "timestamp": [...], "value": [...]}, ...}, "source": URL or folder}

`info` and `data` are `GET /api/2.0/mlflow/runs/get`'s; each history is `GET /api/2.0/mlflow/metrics/get-history`'s
points (all pages) as columns: a long run's 1.5 million points as 1.5 million small objects would make the
document several times larger and slower to write and read. A non-finite value is the string "NaN",
"Infinity" or "-Infinity" (JSON has no such numbers). A file store holds the same: `<experiment>/<run id>/meta.yaml`, `metrics/<key>` (lines
"timestamp value step", the key's `/` as folders), `params/<key>` and `tags/<key>` (the value as the file's text).

Names: the Hugging Face MLflowCallback logs TRL's keys as they are (`loss`, `rewards/chosen`, `eval_loss`) at
step `global_step`, and the training arguments and the model's config as params (strings).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from orpo_dash import metric_names as m
from orpo_dash.diagnostics.records import MetricsFileError
from orpo_dash.import_common import Columns, ImportedRun, RunImportError, hf_args_config, number, series_from_columns

DOCUMENT_KEY = "mlflow_run"
PAGE_SIZE = 25_000  # get-history's largest page; a server may send fewer, and says so with next_page_token
# The file store's run status numbers (mlflow.entities.RunStatus).
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_RUN_URL = re.compile(r"/runs/([A-Za-z0-9_-]+)")
_THREE_COLUMNS = re.compile(r"(?:[^ \n]+ [^ \n]+ [^ \n]+\n)*")  # what MLflow writes: "timestamp value step\n" lines
_LINE_EXAMPLE = "'1700000000000 0.71 12' (timestamp in ms, value, step)"


# ----- on the dashboard: the uploaded document -----

def is_mlflow_document(file: Path) -> bool:
    if file.suffix != ".json":
        return False
    try:
        with open(file, encoding="utf-8-sig", errors="replace") as fh:
            head = fh.read(200)
    except OSError:
        return False
    return f'"{DOCUMENT_KEY}"' in head


def read_mlflow_document(file: Path) -> ImportedRun:
    """The run `orpo-dash import` read from an MLflow server or file store: its metric histories under our
    names (TRL's, as the Hugging Face MLflowCallback logs them), its params as config where they map."""
    try:
        document = _loads(file.read_bytes())
        run, histories = document[DOCUMENT_KEY], document["metric_history"]
        info, data = run["info"], run.get("data") or {}
        if not isinstance(histories, dict) or not isinstance(info, dict):
            raise TypeError("metric_history or info is not an object")
    except (ValueError, KeyError, TypeError) as error:
        raise MetricsFileError(f"{file}: not an MLflow run as orpo-dash import writes it ({error}); import an MLflow "
                               "run with: orpo-dash import http://HOST:5000 --mlflow-run RUN_ID, or orpo-dash import "
                               "mlruns/") from None
    columns: Columns = {}
    for key, history in histories.items():
        try:
            steps = np.asarray(history["step"], dtype=np.int64)
            stamps = np.asarray(history["timestamp"], dtype=np.int64)
            raw = history["value"]
            if not len(steps) == len(stamps) == len(raw):
                raise ValueError("its step, timestamp and value lists differ in length")
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise MetricsFileError(f"{file}: metric {str(key)[:80]!r} is not step, timestamp and value lists of "
                                   f"numbers ({error}); import the run again with orpo-dash import") from None
        try:
            values = np.asarray(raw, dtype=np.float64)  # reads the "NaN"/"Infinity" strings too
        except (TypeError, ValueError):
            values = np.asarray([np.nan if (v := number(x)) is None else v for x in raw], dtype=np.float64)
        # In step order, a step's values in the order they were logged (asynchronous logging writes out of order).
        order = np.lexsort((stamps, steps))
        columns[str(key)] = (steps[order].tolist(), values[order].tolist(), (stamps[order] / 1000.0).tolist())
    source = _log_odds_source(columns)
    series, times = series_from_columns(columns, lambda key: m.our_name(key, log_odds_source=source))
    params = {str(p.get("key")): p.get("value") for p in data.get("params") or [] if isinstance(p, dict)}
    tags = {str(p.get("key")): p.get("value") for p in data.get("tags") or [] if isinstance(p, dict)}
    name = info.get("run_name") or tags.get("mlflow.runName") or info.get("run_id") or file.stem
    return ImportedRun(format="mlflow", name=str(name), config=hf_args_config(params), series=series, times=times)


def _loads(data: bytes) -> Any:
    """JSON through orjson (a long run's document is large), or json where it refuses the NaN literals."""
    import orjson

    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8-sig"))


def _int(raw: Any) -> int:
    if type(raw) is int:
        return raw
    value = number(raw)
    return int(value) if value is not None and value == value and abs(value) != float("inf") else 0


def _log_odds_source(columns: Columns) -> str:
    """Whose a bare `log_odds_ratio` is: ours when the run has names only we log and none only TRL/HF log,
    else TRL's (the Hugging Face MLflowCallback logs TRL's keys)."""
    namings = {m.naming(key) for key in columns}
    return "ours" if "ours" in namings and "trl" not in namings else "trl"


# ----- on the user's machine: a file store folder -----

def find_run_folders(path: Path) -> list[Path]:
    """The MLflow run folders in `path`: itself (a run folder: meta.yaml and metrics/), its runs (an
    experiment folder), or its experiments' runs (an mlruns folder). Deleted runs (.trash) are left out."""
    def is_run(folder: Path) -> bool:
        return (folder / "meta.yaml").is_file() and (folder / "metrics").is_dir()

    if is_run(path):
        return [path]
    found = [p for p in path.iterdir() if p.is_dir() and is_run(p)] if path.is_dir() else []
    if not found and path.is_dir():
        found = [run for experiment in path.iterdir() if experiment.is_dir() and experiment.name != ".trash"
                 for run in experiment.iterdir() if run.is_dir() and is_run(run)]
    return sorted(found)


def choose_run_folder(folders: list[Path], run_id: str | None, path: Path) -> Path:
    """The run asked for (`--mlflow-run`), else the one most recently started."""
    if run_id:
        chosen = [f for f in folders if f.name == run_id]
        if not chosen:
            ids = ", ".join(f.name for f in folders[:5])
            raise RunImportError(f"{path}: no MLflow run {run_id} in it (runs found: {ids}); check --mlflow-run")
        return chosen[0]
    return max(folders, key=lambda f: (_int(_meta(f).get("start_time")), f.name))


def read_run_folder(folder: Path) -> dict[str, Any]:
    """A file store's run folder as the document the dashboard reads (the REST API's shapes)."""
    meta = _meta(folder)
    status = meta.get("status")
    info = {"run_id": str(meta.get("run_id") or meta.get("run_uuid") or folder.name),
            "run_name": meta.get("run_name") or "", "experiment_id": str(meta.get("experiment_id") or ""),
            "start_time": meta.get("start_time"), "end_time": meta.get("end_time"),
            "status": _STATUS.get(status, status) if isinstance(status, int) else status}
    histories: dict[str, dict[str, list[Any]]] = {}
    for file in sorted(p for p in (folder / "metrics").rglob("*") if p.is_file()):
        histories[file.relative_to(folder / "metrics").as_posix()] = _metric_file(file)
    return {DOCUMENT_KEY: {"info": info, "data": {"params": _key_values(folder / "params"),
                                                  "tags": _key_values(folder / "tags")}},
            "metric_history": histories, "source": str(folder)}


def _meta(folder: Path) -> dict[str, Any]:
    import yaml

    try:
        meta = yaml.safe_load((folder / "meta.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RunImportError(f"{folder / 'meta.yaml'}: not a readable MLflow run meta.yaml ({error})") from None
    return meta if isinstance(meta, dict) else {}


def _metric_file(file: Path) -> dict[str, list[Any]]:
    """A file store's metric file as columns: lines "timestamp value step" (MLflow before 1.0 wrote
    "timestamp value", at step 0). MLflow writes NaN and infinities as nan, inf and -inf."""
    text = file.read_text(encoding="utf-8", errors="replace")
    if _THREE_COLUMNS.fullmatch(text):  # the usual file: one conversion per column, not per line
        tokens = text.split()
        try:
            return {"step": list(map(int, tokens[2::3])), "timestamp": list(map(int, tokens[0::3])),
                    "value": _json_values(np.asarray(list(map(float, tokens[1::3])), dtype=np.float64))}
        except ValueError:
            pass  # a broken line: read line by line, to name it
    lines = [line for line in text.splitlines() if line.strip()]
    columns: dict[str, list[Any]] = {"step": [], "timestamp": [], "value": []}
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        try:
            if len(parts) not in (2, 3):
                raise ValueError(line)
            columns["timestamp"].append(int(parts[0]))
            columns["value"].append(float(parts[1]))
            columns["step"].append(int(parts[2]) if len(parts) == 3 else 0)
        except ValueError:
            raise RunImportError(f"{file}: line {lineno} is not an MLflow metric line: {line[:80]!r}; expected "
                                 f"{_LINE_EXAMPLE}, one per logged value") from None
    columns["value"] = _json_values(np.asarray(columns["value"], dtype=np.float64))
    return columns


def _json_values(values: np.ndarray) -> list[Any]:
    """Values for the JSON document: floats, and the non-finite ones as "NaN", "Infinity", "-Infinity"."""
    if bool(np.isfinite(values).all()):
        return values.tolist()
    return [v if math.isfinite(v) else "NaN" if v != v else "Infinity" if v > 0 else "-Infinity" for v in values.tolist()]


def write_document(document: dict[str, Any], file: Path) -> None:
    import orjson

    file.write_bytes(orjson.dumps(document))


def _key_values(folder: Path) -> list[dict[str, str]]:
    if not folder.is_dir():
        return []
    return [{"key": p.relative_to(folder).as_posix(), "value": p.read_text(encoding="utf-8", errors="replace")}
            for p in sorted(folder.rglob("*")) if p.is_file()]


# ----- on the user's machine: a tracking server -----

def split_run_url(url: str, run_id: str | None) -> tuple[str, str]:
    """(the server's base URL, the run id) from `http://HOST:5000` and --mlflow-run, or from a run's page
    URL (`http://HOST:5000/#/experiments/1/runs/RUN_ID`)."""
    parts = urlsplit(url)
    found = _RUN_URL.search(parts.fragment) or _RUN_URL.search(parts.path)
    run_id = run_id or (found.group(1) if found else None)
    if not run_id:
        raise RunImportError(f"{url}: which MLflow run? Pass --mlflow-run RUN_ID (on the run's page), or the run's "
                             "URL, e.g. http://HOST:5000/#/experiments/1/runs/RUN_ID")
    path = parts.path.split("/experiments/")[0].rstrip("/")  # a server behind a proxy keeps its base path
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), run_id


def auth_headers(env: Mapping[str, str]) -> dict[str, str]:
    """The credentials the mlflow client itself reads: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME
    and MLFLOW_TRACKING_PASSWORD."""
    if token := env.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    if (user := env.get("MLFLOW_TRACKING_USERNAME")) and (password := env.get("MLFLOW_TRACKING_PASSWORD")) is not None:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def fetch_run(base: str, run_id: str, *, headers: Mapping[str, str],
              progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """A run from a tracking server's REST API: runs/get, then every metric's full history (get-history,
    page by page), as the document the dashboard reads."""
    import httpx

    with httpx.Client(base_url=base, headers=dict(headers), timeout=httpx.Timeout(30, read=120)) as client:
        run = _get(client, base, "runs/get", {"run_id": run_id}, run_id)["run"]
        keys = sorted({str(m_["key"]) for m_ in (run.get("data") or {}).get("metrics") or []})
        histories: dict[str, dict[str, list[Any]]] = {}
        for i, key in enumerate(keys, 1):
            points: list[dict[str, Any]] = []
            token: str | None = None
            while True:
                params = {"run_id": run_id, "metric_key": key, "max_results": PAGE_SIZE}
                if token:
                    params["page_token"] = token
                page = _get(client, base, "metrics/get-history", params, run_id)
                points.extend(p for p in page.get("metrics") or [] if isinstance(p, dict))
                token = page.get("next_page_token")
                if not token:
                    break
            values = [number(p.get("value")) for p in points]
            histories[key] = {"step": [_int(p.get("step")) for p in points],
                              "timestamp": [_int(p.get("timestamp")) for p in points],
                              "value": _json_values(np.asarray([np.nan if v is None else v for v in values],
                                                               dtype=np.float64))}
            if progress:
                progress(i, len(keys), key)
    run.pop("inputs", None), run.pop("outputs", None)
    return {DOCUMENT_KEY: run, "metric_history": histories, "source": f"{base}/#/experiments/"
            f"{(run.get('info') or {}).get('experiment_id', '')}/runs/{run_id}"}


def _get(client: Any, base: str, endpoint: str, params: dict[str, Any], run_id: str) -> dict[str, Any]:
    import httpx

    url = f"{base}/api/2.0/mlflow/{endpoint}"
    try:
        response = client.get(f"/api/2.0/mlflow/{endpoint}", params=params)
    except httpx.HTTPError as error:
        raise RunImportError(f"could not reach the MLflow server at {base}: {error}; check the URL "
                             "(the address its UI is served at, e.g. http://HOST:5000)") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in (401, 403):
        raise RunImportError(f"the MLflow server at {base} refused the request (HTTP {response.status_code}): set "
                             "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    if isinstance(body, dict) and body.get("error_code") == "RESOURCE_DOES_NOT_EXIST":
        raise RunImportError(f"the MLflow server at {base} has no run {run_id} ({body.get('message')}); check "
                             "--mlflow-run (the id on the run's page, or in its URL …/runs/RUN_ID)")
    if response.status_code != 200 or not isinstance(body, dict) or (endpoint == "runs/get" and "run" not in body):
        what = f"HTTP {response.status_code}, {response.headers.get('content-type', 'no content type')}"
        detail = body.get("message") if isinstance(body, dict) else response.text[:120]
        raise RunImportError(f"{url} did not answer like an MLflow tracking server's REST API ({what}: {detail!r}); "
                             "pass the server's address, e.g. http://HOST:5000")
    return body
