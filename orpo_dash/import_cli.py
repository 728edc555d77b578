"""`orpo-dash import PATH`: upload a run made elsewhere to a running dashboard (POST /api/imports).

The dashboard reads the file (orpo_dash/run_import.py) and creates a run with status `imported`; this
command only finds the file in a folder, uploads it with a progress bar on stderr and prints the run's
address. Exit status: 0 imported, 1 the dashboard could not be reached or failed, 2 the file was refused.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from orpo_dash.protocol import API_TOKEN_ENV

# Kept here, not in orpo_dash.run_import, so that building the CLI's parser loads no numpy.
FORMATS = ("a TRL/Hugging Face trainer_state.json (or a checkpoint folder holding one), our trainer's --metrics-out "
           "JSONL, the dashboard's CSV/JSON export, a TRL log history as JSONL/CSV, TensorBoard event files "
           "(events.out.tfevents.*), a W&B history export (CSV/JSON with _step) or run file (wandb/run-*/run-<id>.wandb), "
           "or an MLflow run (an mlruns folder, or a tracking server URL with --mlflow-run)")
TENSORBOARD_INSTALL = 'pip install "orpo-dash[import]"  (or: pip install tensorboard)'
WANDB_INSTALL = 'pip install "orpo-dash[import]"  (or: pip install "wandb>=0.31")'
CHUNK = 1024 * 1024
DESCRIPTION = f"""Bring a run made elsewhere into a running dashboard as a run with status 'imported': its
metrics mapped to our names (docs/metrics.md), its config where the source has one, and the pitfall alerts
the dashboard's alert engine finds in it.

Sources (PATH is a file, or a folder holding one):
  trainer_state.json      a TRL / Hugging Face Trainer state (its log_history), or a checkpoint folder
                          (checkpoint-500/) holding one; its config.json names the model
  metrics.jsonl[.gz]      our trainer's --metrics-out, or a TRL log history as one JSON object per line
  *.csv, *.json           the dashboard's own exports (Export CSV / Export JSON), or a log history as CSV
  events.out.tfevents.*   TensorBoard event files, or a folder of them (needs: pip install "orpo-dash[import]")
  W&B history export      the CSV of a run's history (the W&B UI's Export CSV: _step, _runtime, _timestamp,
                          train/loss, ...; a chart panel's CSV too) or its rows from the API (run.history() /
                          scan_history() written as JSON or JSONL)
  wandb/run-*/            an offline or synced W&B run folder (its run-<id>.wandb), or a wandb/ folder (its
                          latest run); read by the wandb package (needs: pip install "orpo-dash[import]")
  mlruns/                 an MLflow file store (mlruns/<experiment>/<run id>/), a run folder in it, or an
                          experiment folder; with several runs, --mlflow-run RUN_ID picks one (default: the newest)
  run.zip, run.tar.gz     any folder above as a zip or tar archive (what the Import page takes for folders); the
                          dashboard unpacks and reads it, --mlflow-run picks the run of an archived mlruns/
  http://HOST:5000        an MLflow tracking server, with --mlflow-run RUN_ID (or a run's URL,
                          http://HOST:5000/#/experiments/1/runs/RUN_ID): read through its REST API

Expected formats: {FORMATS}."""


def add_arguments(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("path", help="the file, a folder holding one (a checkpoint, a TensorBoard log dir, a wandb/ folder, "
                        "an mlruns folder), or an MLflow tracking server's URL")
    parser.add_argument("--server", default="http://127.0.0.1:8000", help="dashboard URL (default http://127.0.0.1:8000)")
    parser.add_argument("--token", default=None,
                        help=f"personal API token for a dashboard started with --auth (default: ${API_TOKEN_ENV})")
    parser.add_argument("--name", default=None, help="run name (default: the folder's or file's name)")
    parser.add_argument("--source", choices=("trl", "ours"), default=None,
                        help="whose a bare 'log_odds_ratio' is when the file cannot tell (see docs/metrics.md)")
    parser.add_argument("--mlflow-run", default=None, metavar="RUN_ID",
                        help="the MLflow run to import from a tracking server URL or an mlruns folder (default in a "
                        "folder: the newest run). A server's credentials come from MLFLOW_TRACKING_TOKEN, or "
                        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, as for the mlflow client")


def main(args) -> int:  # type: ignore[no-untyped-def]
    import httpx

    from orpo_dash.run_import import RunImportError, find_run_file

    with tempfile.TemporaryDirectory(prefix="orpo-dash-import-") as folder:
        try:
            file = _read_mlflow(args, Path(folder)) or find_run_file(args.path)
        except RunImportError as error:
            print(f"orpo-dash import: error: {error}", file=sys.stderr)
            return 2
        return _upload(args, file, httpx)


def _read_mlflow(args, folder: Path) -> Path | None:  # type: ignore[no-untyped-def]
    """An MLflow run read here (from a tracking server's REST API, or an mlruns folder) and written into
    `folder` as the one JSON document the dashboard reads; None when PATH is no MLflow source."""
    from orpo_dash import import_mlflow
    from orpo_dash.import_archive import is_archive
    from orpo_dash.import_common import RunImportError

    path = str(args.path)
    if path.startswith(("http://", "https://")):
        base, run_id = import_mlflow.split_run_url(path, args.mlflow_run)
        print(f"orpo-dash import: reading MLflow run {run_id} from {base}", file=sys.stderr)
        document = import_mlflow.fetch_run(base, run_id, headers=import_mlflow.auth_headers(os.environ),
                                           progress=lambda done, total, key: _progress(done, total, f"metric {key}"))
        print(file=sys.stderr) if sys.stderr.isatty() else None
    else:
        runs = import_mlflow.find_run_folders(Path(path))
        if not runs:
            if args.mlflow_run and not is_archive(path):  # an archive is unpacked by the dashboard, which picks the run
                raise RunImportError(f"{path}: no MLflow run folders in it (mlruns/<experiment>/<run id>/meta.yaml); "
                                     "--mlflow-run needs an mlruns folder or a tracking server URL")
            return None
        run_folder = import_mlflow.choose_run_folder(runs, args.mlflow_run, Path(path))
        if len(runs) > 1 and not args.mlflow_run:
            print(f"orpo-dash import: {len(runs)} MLflow runs in {path}; importing the newest, {run_folder.name} "
                  "(choose another with --mlflow-run RUN_ID)", file=sys.stderr)
        document = import_mlflow.read_run_folder(run_folder)
        run_id = run_folder.name
    file = folder / f"mlflow-run-{run_id}.json"
    import_mlflow.write_document(document, file)
    return file


def _upload(args, file: Path, httpx) -> int:  # type: ignore[no-untyped-def]
    from orpo_dash.import_archive import is_archive
    from orpo_dash.run_import import model_config_name, suggested_name

    params = {"filename": file.name}
    if name := args.name or suggested_name(file):
        params["name"] = name
    if args.source:
        params["source"] = args.source
    if args.mlflow_run and is_archive(file.name):
        params["mlflow_run"] = args.mlflow_run
    if file.name == "trainer_state.json" and (model := model_config_name(file.parent)):
        params["model"] = model
    token = args.token or os.environ.get(API_TOKEN_ENV)
    size = file.stat().st_size
    headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = args.server.rstrip("/")
    started = time.monotonic()
    try:
        response = httpx.post(f"{url}/api/imports", params=params, headers=headers,
                              content=_read_with_progress(file, size), timeout=httpx.Timeout(30, read=600))
    except httpx.HTTPError as error:
        print(f"\norpo-dash import: could not reach the dashboard at {url}: {error}", file=sys.stderr)
        return 1
    _progress(size, size, "done" if response.status_code == 201 else "refused")
    print(file=sys.stderr)
    if response.status_code == 201:
        run = response.json()
        alerts = [a for a in run.get("alerts", []) if a.get("state") == "open"]
        print(f"orpo-dash import: run {run['id']} ({run['name']}): {len(run.get('latest', {}))} metrics up to step "
              f"{run.get('last_step')}, {len(alerts)} open alert(s), in {time.monotonic() - started:.1f} s")
        print(f"{url}/runs/{run['id']}")
        return 0
    print(f"orpo-dash import: error: {_reason(response, url)}", file=sys.stderr)
    return 2 if response.status_code in (413, 422) else 1


def _read_with_progress(file: Path, size: int) -> Iterator[bytes]:
    sent = 0
    with open(file, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sent += len(chunk)
            _progress(sent, size, "uploading" if sent < size else "reading on the dashboard…")
            yield chunk


def _progress(done: int, total: int, what: str) -> None:
    if not sys.stderr.isatty() and what not in ("done", "refused"):
        return  # a bar redrawn with \r is noise in a log file: only the final line
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done / 1e6:.1f}/{total / 1e6:.1f} MB {what}  ",
          end="", file=sys.stderr, flush=True)


def _reason(response, url: str) -> str:  # type: ignore[no-untyped-def]
    if response.status_code == 401:
        return (f"the dashboard at {url} requires a login: create a personal API token on its Account page and "
                f"pass --token TOKEN or set {API_TOKEN_ENV}")
    try:
        detail = response.json().get("detail")
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) for item in detail)
    return str(detail)
