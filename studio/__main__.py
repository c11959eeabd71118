"""Administration commands.

    python -m studio keys create --name NAME    print a new API key and its webhook secret (once)
    python -m studio keys list                  list keys (ids, names, prefixes, state)
    python -m studio keys revoke KEY_ID         revoke a key (its requests get 403)
    python -m studio maintenance on|off|status  drain: refuse new work with 503, finish running tasks
    python -m studio db current                 the migration the database stands at, and the newest
    python -m studio db upgrade                 migrate the database to the newest schema (Alembic)
    python -m studio worker [--models M1,M2]    a Celery worker (ECHOEL_BROKER_URL) for those models'
                                                queues (default: every model); one per GPU

All take ``--data-dir`` (default ``ECHOEL_DATA_DIR`` or ``./data``), the server's data folder; the
database is ``ECHOEL_DATABASE_URL`` (default: the SQLite file in the data folder), as the server's.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from studio.config import Settings
from studio.db import Database
from studio.db.engine import newest_revision
from studio.db.state import MAINTENANCE, StudioState
from studio.keys import KeyStore


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    database = Database(settings.db_url)  # ECHOEL_DATABASE_URL, as the server uses
    database.migrate()
    store = KeyStore(database)
    try:
        if args.action == "create":
            created = store.create(args.name)
            print(f"id:             {created.record.id}")
            print(f"api key:        {created.key}")
            print(f"webhook secret: {created.record.webhook_secret}")
            print("Store both now: the key is kept only as a hash and cannot be shown again.")
        elif args.action == "list":
            for key in store.list():
                state = "revoked " + datetime.fromtimestamp(key.revoked_at).isoformat(" ", "seconds") \
                    if key.revoked_at else "active"
                created = datetime.fromtimestamp(key.created_at).isoformat(" ", "seconds")
                print(f"{key.id}\t{key.name}\t{key.prefix}…\tcreated {created}\t{state}")
        elif args.action == "revoke":
            if not store.revoke(args.key_id):
                print(f"no active key with id {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
    finally:
        store.close()
        database.dispose()
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    """``db upgrade`` migrates (the server also does at start); both say where the database stands."""
    database = Database(settings.db_url)
    try:
        if args.action == "upgrade":
            database.migrate()
        at = database.revision()
        where = database.url.render_as_string(hide_password=True)
        print(f"{where}: at {at or 'no revision (not migrated yet)'}; newest {newest_revision()}")
    finally:
        database.dispose()
    return 0 if args.action == "current" or at == newest_revision() else 1


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a Celery worker: one process that runs one task at a time (one per GPU), on the queues
    of the models it serves. The same as ``celery -A studio.jobs.celery_app worker -Q ...``."""
    from studio.jobs.routing import queues_for
    from studio.models.catalog import MODELS

    if not settings.distributed:
        print("set ECHOEL_BROKER_URL (redis://... or amqp://...) and ECHOEL_REDIS_URL first", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(settings.worker_models)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    # The worker's processes read their settings from the environment, as the server's do.
    os.environ["ECHOEL_DATA_DIR"] = str(settings.data_dir)
    os.environ["ECHOEL_WORKER_MODELS"] = ",".join(models)
    from studio.jobs.celery_app import make_app

    app = make_app(settings.broker_url)  # the app ``celery -A studio.jobs.celery_app`` finds, for this URL
    argv = ["worker", "--concurrency", str(args.concurrency), "--pool", "prefork", "--loglevel", args.loglevel,
            "-Q", ",".join(queues_for(models or list(MODELS))), "--without-gossip", "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def _maintenance(args: argparse.Namespace, settings: Settings) -> int:
    """The switch lives in the database, so every API process drains, wherever it runs; the
    data folder's flag file (what earlier versions used) is kept in step with it."""
    flag = settings.maintenance_flag
    database = Database(settings.db_url)
    try:
        database.migrate()
        state = StudioState(database)
        if args.state == "on":
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.touch()
            state.set(MAINTENANCE, "on")
        elif args.state == "off":
            flag.unlink(missing_ok=True)
            state.delete(MAINTENANCE)
        on = flag.exists() or state.get(MAINTENANCE) == "on"
    finally:
        database.dispose()
    print("maintenance: " + ("on (new work gets 503)" if on else "off"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    keys = commands.add_parser("keys", help="manage API keys")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create")
    create.add_argument("--name", required=True)
    key_actions.add_parser("list")
    revoke = key_actions.add_parser("revoke")
    revoke.add_argument("key_id")
    maintenance = commands.add_parser("maintenance", help="drain mode")
    maintenance.add_argument("state", choices=["on", "off", "status"])
    db = commands.add_parser("db", help="database schema (Alembic migrations)")
    db.add_argument("action", choices=["current", "upgrade"])
    worker = commands.add_parser("worker", help="run a Celery worker (needs ECHOEL_BROKER_URL, ECHOEL_REDIS_URL)")
    worker.add_argument("--models", default=None, help="comma-separated model ids it serves (default: "
                                                        "ECHOEL_WORKER_MODELS, else every model)")
    worker.add_argument("--concurrency", type=int, default=1, help="tasks at once (1 per GPU)")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--hostname", default=None, help="Celery node name (default: celery@<host>)")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.data_dir is not None:
        settings = replace(settings, data_dir=args.data_dir.resolve())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {"keys": _keys, "db": _db, "maintenance": _maintenance, "worker": _worker}[args.command](args, settings)


if __name__ == "__main__":
    sys.exit(main())
