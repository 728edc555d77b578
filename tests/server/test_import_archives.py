"""Folders through POST /api/imports (what the Import page sends for them): a checkpoint folder, a TensorBoard
log dir and an MLflow mlruns/ folder as zip or tar archives import with the same values as the folder itself
through `orpo-dash import FOLDER`; archives that would write outside their folder, unpack past the limit or
hold no run are refused with what to do, and nothing is stored."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from orpo_dash.import_archive import unpack
from orpo_dash.import_common import RunImportError
from tests.conftest import assert_no_server_tracebacks
from tests.import_fixtures import (
    tar_gz_folder,
    write_mlflow_run,
    write_tensorboard,
    write_trainer_state,
    zip_folder,
)
from tests.over_penalized import STEPS
from tests.server.test_imports import _import, _run_id, _series


def _post(server, archive: Path, **params: str):  # type: ignore[no-untyped-def]
    return server.api("POST", "/api/imports", params={"filename": archive.name, **params}, content=archive.read_bytes())


def test_an_archived_mlruns_folder_imports_the_newest_run_or_the_one_named(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("mlflow", reason="the fixture is written by the mlflow client (the [test] extra)")
    first = write_mlflow_run(f"file:{tmp_path / 'mlruns'}")
    newest = write_mlflow_run(f"file:{tmp_path / 'mlruns'}", steps=30)
    archive = zip_folder(tmp_path / "mlruns", tmp_path / "mlruns.zip")

    posted = _post(live_server, archive)
    assert posted.status_code == 201, posted.text
    run = posted.json()
    assert run["last_step"] == 30 and run["config"]["imported_from"] == {"format": "mlflow", "file": "mlruns.zip"}
    logs = " ".join(line["text"] for line in live_server.api("GET", f"/api/runs/{run['id']}/logs").json())
    assert f"2 MLflow runs in mlruns.zip; imported the newest, {newest}" in logs

    named = _post(live_server, archive, mlflow_run=first)
    assert named.status_code == 201, named.text
    run = named.json()
    assert run["name"] == "orpo-beta10" and run["last_step"] == STEPS
    assert run["config"]["beta"] == 10.0 and run["config"]["model"] == "HuggingFaceTB/SmolLM2-135M"
    assert "over_penalization" in {alert["kind"] for alert in run["alerts"]}
    # The same points as the folder itself through the CLI (whose values test_imports checks against the log).
    from_folder = _run_id(_import(live_server, tmp_path / "mlruns", "--mlflow-run", first))
    assert _series(live_server, run["id"]) == _series(live_server, from_folder)

    unknown = _post(live_server, archive, mlflow_run="0" * 32)
    assert unknown.status_code == 422
    assert f"no MLflow run {'0' * 32} in it (runs found: " in unknown.json()["detail"] and first in unknown.json()["detail"]
    assert_no_server_tracebacks(live_server)


def test_a_checkpoint_folder_and_a_tensorboard_log_dir_import_from_archives(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    checkpoint = write_trainer_state(tmp_path / "my-orpo" / f"checkpoint-{STEPS}", model="HuggingFaceTB/SmolLM2-135M")
    posted = _post(live_server, tar_gz_folder(checkpoint, tmp_path / "checkpoint.tar.gz"))
    assert posted.status_code == 201, posted.text
    run = posted.json()
    assert run["name"] == f"checkpoint-{STEPS}"  # the archived folder's own name: its parent was not archived
    assert run["config"]["model"] == "HuggingFaceTB/SmolLM2-135M"  # from the folder's config.json
    assert run["config"]["imported_from"] == {"format": "trainer_state", "file": "checkpoint.tar.gz"}
    direct = _run_id(_import(live_server, checkpoint / "trainer_state.json"))
    assert _series(live_server, run["id"]) == _series(live_server, direct)

    pytest.importorskip("tensorboard", reason='the [import] extra: pip install "orpo-dash[import]"')
    write_tensorboard(tmp_path / "runs" / "tb-run")
    posted = _post(live_server, zip_folder(tmp_path / "runs", tmp_path / "runs.zip"))
    assert posted.status_code == 201, posted.text
    assert posted.json()["name"] == "tb-run" and posted.json()["config"]["imported_from"]["format"] == "tensorboard"
    direct = _run_id(_import(live_server, tmp_path / "runs" / "tb-run"))
    assert _series(live_server, posted.json()["id"]) == _series(live_server, direct)

    # One file zipped alone (to upload it faster) is read as that file.
    alone = tmp_path / "alone.zip"
    with zipfile.ZipFile(alone, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.write(checkpoint / "trainer_state.json", "trainer_state.json")
    posted = _post(live_server, alone)
    assert posted.status_code == 201, posted.text
    assert _series(live_server, posted.json()["id"]) == _series(live_server, run["id"])
    assert_no_server_tracebacks(live_server)


def test_archives_that_cannot_be_imported_are_refused_naming_the_fix(live_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    escaping = tmp_path / "escape.zip"
    with zipfile.ZipFile(escaping, "w") as zipped:
        zipped.writestr("run/trainer_state.json", "{}")
        zipped.writestr("../../outside.json", "{}")
    refused = _post(live_server, escaping)
    assert refused.status_code == 422
    assert "member '../../outside.json' would unpack outside the folder" in refused.json()["detail"]

    not_zip = tmp_path / "run.zip"
    not_zip.write_text("step,loss\n1,0.7\n")
    refused = _post(live_server, not_zip)
    assert refused.status_code == 422 and "run.zip: not a zip or tar archive" in refused.json()["detail"]

    nothing = tmp_path / "notes"
    nothing.mkdir()
    (nothing / "README.txt").write_text("hello")
    (nothing / "NOTES.txt").write_text("world")
    refused = _post(live_server, zip_folder(nothing, tmp_path / "notes.zip"))
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "notes.zip: the archive holds no trainer_state.json" in detail and "zip -r run.zip mlruns/" in detail

    broken = tmp_path / "cut.tar.gz"
    whole = tar_gz_folder(write_trainer_state(tmp_path / "whole"), tmp_path / "whole.tar.gz").read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])
    refused = _post(live_server, broken)
    assert refused.status_code == 422 and "cut.tar.gz: the archive is damaged or cut short" in refused.json()["detail"]

    state = write_trainer_state(tmp_path / "plain") / "trainer_state.json"
    refused = live_server.api("POST", "/api/imports", params={"filename": "trainer_state.json", "mlflow_run": "abc"},
                              content=state.read_bytes())
    assert refused.status_code == 422 and "mlflow_run picks a run of an archived mlruns folder" in refused.json()["detail"]
    assert live_server.api("GET", "/api/runs").json() == []  # nothing half-made
    assert_no_server_tracebacks(live_server)


def test_unpacking_stops_at_the_size_limit_and_skips_links(tmp_path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("run/trainer_state.json", b"0" * 5_000_000)  # 5 MB of zeros: a few KB zipped
    assert bomb.stat().st_size < 50_000
    with pytest.raises(RunImportError, match=r"bomb.zip: unpacks to more than 1 MB, the most an import may"):
        unpack(bomb, tmp_path / "out", display_name="bomb.zip", limit_bytes=1_000_000)
    assert not (tmp_path / "out").exists()  # what was unpacked before the limit is gone

    linked = tmp_path / "linked.tar"
    with tarfile.open(linked, "w") as tarred:
        data = b'{"log_history": []}'
        info = tarfile.TarInfo("run/trainer_state.json")
        info.size = len(data)
        tarred.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("run/latest")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tarred.addfile(link)
    unpack(linked, tmp_path / "unpacked", display_name="linked.tar", limit_bytes=1_000_000)
    assert (tmp_path / "unpacked" / "run" / "trainer_state.json").read_bytes() == data
    assert not (tmp_path / "unpacked" / "run" / "latest").exists() and not (tmp_path / "unpacked" / "run" / "latest").is_symlink()
