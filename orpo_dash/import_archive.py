"""A folder uploaded as one archive (.zip, .tar, .tar.gz, .tgz): what the Import page takes for sources that
are folders (a checkpoint, a TensorBoard log dir, a wandb/ run folder, an MLflow mlruns/ folder), since a
browser uploads files, not folders.

The archive is unpacked into a fresh folder, refusing what could write outside it or fill the disk:
members with absolute paths or `..`, more than MAX_MEMBERS members, or more than `limit_bytes` unpacked (a
zip bomb stops at the limit, not after); links and devices are skipped. Then the folder is read as
`orpo-dash import FOLDER` reads one (orpo_dash.run_import.find_run_file), MLflow run folders first.
"""

from __future__ import annotations

import re
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from orpo_dash import import_mlflow
from orpo_dash.import_common import ImportedRun, RunImportError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_MEMBERS = 100_000
_CHUNK = 1024 * 1024
_HOW = "zip the folder (e.g. `zip -r run.zip mlruns/`) or tar it (`tar czf run.tar.gz mlruns/`)"


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def read_archive(archive: Path, *, display_name: str, into: Path, limit_bytes: int, source: str | None = None,
                 mlflow_run: str | None = None) -> ImportedRun:
    """The run in an uploaded archive of a folder: an MLflow run (`mlflow_run` picks one of several, else the
    newest), else the file `orpo-dash import` would find in the folder."""
    from orpo_dash.run_import import find_run_file, read_run, suggested_name

    unpack(archive, into, display_name=display_name, limit_bytes=limit_bytes)
    root = _content_root(into)
    runs = import_mlflow.find_run_folders(root)
    if runs:
        chosen = import_mlflow.choose_run_folder(runs, mlflow_run, Path(display_name))
        document = into.parent / f"mlflow-run-{chosen.name}.json"
        import_mlflow.write_document(import_mlflow.read_run_folder(chosen), document)
        run = read_run(document, display_name=f"{display_name}: {document.name}")
        run.config["imported_from"] = {"format": "mlflow", "file": Path(display_name).name}
        if len(runs) > 1 and not mlflow_run:
            run.notes.append(f"{len(runs)} MLflow runs in {display_name}; imported the newest, {chosen.name} "
                             "(choose another with the MLflow run ID field, or mlflow_run=RUN_ID)")
        return run
    if mlflow_run:
        raise RunImportError(f"{display_name}: no MLflow run folders in it (mlruns/<experiment>/<run id>/meta.yaml); "
                             "an MLflow run ID needs an archive of an mlruns folder")
    files = [p for p in root.rglob("*") if p.is_file() and "__MACOSX" not in p.parts]
    try:
        # One file compressed alone (a metrics.jsonl or history CSV, zipped to upload it faster) is that file.
        file = files[0] if len(files) == 1 else find_run_file(root)
    except RunImportError:
        raise RunImportError(f"{display_name}: the archive holds no trainer_state.json, no TensorBoard event file "
                             "(events.out.tfevents.*), no W&B run (run-<id>.wandb) and no MLflow run folder; "
                             f"{_HOW} around one of them") from None
    inside = file.relative_to(into).as_posix()
    run = read_run(file, display_name=f"{display_name}: {inside}", source=source)
    run.config["imported_from"] = {"format": run.format, "file": Path(display_name).name}
    if run.format in ("trainer_state", "tensorboard"):  # named after its folder in the archive, else the archive
        run.name = suggested_name(file, top=into) or re.sub(r"(\.tar)?\.[^.]+$", "", Path(display_name).name, flags=re.IGNORECASE)
    return run


def unpack(archive: Path, into: Path, *, display_name: str, limit_bytes: int) -> None:
    """Unpack `archive` into the empty folder `into`, refusing unsafe members and more than `limit_bytes`."""
    into.mkdir(parents=True, exist_ok=True)
    budget = _Budget(limit_bytes, display_name)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                for count, info in enumerate(zipped.infolist(), 1):
                    budget.count(count)
                    # Links (wandb/latest-run) and devices are left out: only plain files are unpacked.
                    if info.is_dir() or (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                        continue
                    with zipped.open(info) as member:
                        _write(member, _target(into, info.filename, display_name), budget)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                for count, tar_info in enumerate(_tar_members(tarred), 1):
                    budget.count(count)
                    if not tar_info.isfile():  # folders, links, devices
                        continue
                    source = tarred.extractfile(tar_info)
                    assert source is not None  # a regular file always has contents
                    with source:
                        _write(source, _target(into, tar_info.name, display_name), budget)
        else:
            raise RunImportError(f"{display_name}: not a zip or tar archive (the name ends in "
                                 f"{Path(display_name).suffix or 'nothing'}); {_HOW}")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        shutil.rmtree(into, ignore_errors=True)
        raise RunImportError(f"{display_name}: the archive is damaged or cut short ({error}); {_HOW} again") from None
    except RunImportError:
        shutil.rmtree(into, ignore_errors=True)
        raise


def _tar_members(tarred: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (info := tarred.next()) is not None:
        yield info


def _target(into: Path, name: str, display_name: str) -> Path:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise RunImportError(f"{display_name}: member {name[:120]!r} would unpack outside the folder (an absolute "
                             f"path or ..); {_HOW} from the folder's parent")
    target = into.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _write(source: IO[bytes], target: Path, budget: _Budget) -> None:
    with open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            budget.spend(len(chunk))
            out.write(chunk)


def _content_root(into: Path) -> Path:
    """The folder the archive wraps: `zip -r run.zip my-orpo/` puts everything under my-orpo/, which is the
    folder `orpo-dash import my-orpo` would be given (macOS's __MACOSX side folder aside)."""
    root = into
    while True:
        entries = [p for p in root.iterdir() if p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir() or import_mlflow.find_run_folders(root):
            return root
        root = entries[0]


class _Budget:
    """How much an archive may unpack to: counted as it is written, so a zip bomb stops at the limit."""

    def __init__(self, limit_bytes: int, display_name: str) -> None:
        self.left = limit_bytes
        self.limit = limit_bytes
        self.display_name = display_name

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise RunImportError(f"{self.display_name}: unpacks to more than {self.limit / 1e6:.0f} MB, the most an "
                                 "import may (ORPO_DASH_MAX_IMPORT_BYTES); archive only the run's folder, or import "
                                 "it with orpo-dash import FOLDER")

    def count(self, members: int) -> None:
        if members > MAX_MEMBERS:
            raise RunImportError(f"{self.display_name}: holds more than {MAX_MEMBERS:,} files; archive only the "
                                 "run's folder")
