"""One persistence layer (``studio.db``): every store of a studio shares one ``Database`` (one
connection pool on one file), Alembic migrations build the schema on an empty file and bring a
file made by an earlier version up to date with its rows still readable, transactions take the
write lock at BEGIN, and nothing outside ``studio/db/`` talks to the database driver itself."""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect

from studio.config import Settings
from studio.core import Studio
from studio.db import Database
from studio.db.engine import newest_revision
from studio.db.schema import metadata
from studio.genius.consistency.task import EntityStore
from studio.genius.sla.monitor import SlaMonitor
from studio.jobs import store as st
from studio.jobs.store import TaskStore
from studio.keys import KeyStore, hash_key

HEAD = newest_revision()  # the newest migration; an upgraded database stands there

ROOT = Path(__file__).resolve().parent.parent

# The CREATE statements the stores ran themselves before studio.db existed (copied from the
# previous version), with the task table of the oldest versions: no owner, webhook_url, batch_id.
OLD_TASKS_WITHOUT_LATER_COLUMNS = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, progress REAL NOT NULL DEFAULT 0, current_step TEXT NOT NULL DEFAULT '', eta_seconds REAL,
    estimated_seconds REAL, preview_path TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0, error TEXT, error_type TEXT, result TEXT
);
CREATE INDEX tasks_queue ON tasks (status, priority DESC, seq);
"""
OLD_TASKS_OF_THE_LAST_VERSION = """
CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, status TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, request TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,
    finished_at REAL, progress REAL NOT NULL DEFAULT 0, current_step TEXT NOT NULL DEFAULT '', eta_seconds REAL,
    estimated_seconds REAL, preview_path TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0, error TEXT, error_type TEXT, result TEXT,
    owner TEXT NOT NULL DEFAULT '', webhook_url TEXT, batch_id TEXT
);
CREATE INDEX tasks_queue ON tasks (status, priority DESC, seq);
CREATE INDEX tasks_owner ON tasks (owner);
CREATE INDEX tasks_batch ON tasks (batch_id);
"""
OLD_OTHER_TABLES = """
CREATE TABLE batches (id TEXT PRIMARY KEY, owner TEXT NOT NULL, request TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL, type TEXT NOT NULL,
                     data TEXT NOT NULL, created_at REAL NOT NULL);
CREATE INDEX events_task ON events (task_id, id);
CREATE TABLE idempotency (owner TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, task_id TEXT NOT NULL,
                          created_at REAL NOT NULL, PRIMARY KEY (owner, key));
CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY, task_id TEXT NOT NULL, owner TEXT NOT NULL, url TEXT NOT NULL, event TEXT NOT NULL,
    payload TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL, last_error TEXT, created_at REAL NOT NULL, finished_at REAL
);
CREATE INDEX outbox_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX outbox_task ON webhook_outbox (task_id, url);
CREATE TABLE timings (model TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, samples INTEGER NOT NULL,
                      PRIMARY KEY (model, name));
CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
                       webhook_secret TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE sla_uptime (id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, last_seen REAL NOT NULL,
                         clean_stop INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sla_violations (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, level TEXT NOT NULL,
                             metric TEXT NOT NULL, value REAL NOT NULL, threshold REAL NOT NULL);
CREATE INDEX sla_violations_level ON sla_violations (level, at);
CREATE TABLE entities (id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, entity_type TEXT NOT NULL,
                       width INTEGER NOT NULL, height INTEGER NOT NULL, image BLOB NOT NULL, created_at REAL NOT NULL,
                       UNIQUE (owner, name));
"""


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names())


def _alembic_head(database: Database) -> list[str]:
    with database.connect() as db:
        return [row[0] for row in db.exec_driver_sql("SELECT version_num FROM alembic_version")]


# -- one database for the whole studio ---------------------------------------------------------------

def test_every_store_of_a_studio_uses_one_database_and_one_file_connection(tmp_path, monkeypatch):
    opened: list[str] = []
    real_connect = sqlite3.connect

    def counting_connect(*args, **kwargs):
        opened.append(str(args[0] if args else kwargs.get("database")))
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting_connect)
    monkeypatch.setattr(sqlite3.dbapi2, "connect", counting_connect)  # what SQLAlchemy's dialect calls
    studio = Studio(Settings(data_dir=tmp_path, model="tiny"))  # not started: no threads
    try:
        database = studio.database
        entities = studio.entities
        assert studio.store.database is database and studio.keys.database is database
        assert studio.sla._store._database is database and entities._records.database is database
        # Each store reads and writes through it, one after the other on this thread ...
        task, _ = studio.store.create_task("t2v", {"prompt": "x"}, owner="key-1")
        key = studio.keys.create("ci")
        studio.sla.start(background=False)
        entities.add("key-1", "hero", "person", (8, 8), b"png")
        assert studio.store.get(task.id).owner == "key-1" and studio.keys.lookup(key.key).id == key.record.id
        assert studio.sla.ledger.details()["runs"] == 1 and [e.name for e in entities.owned("key-1")] == ["hero"]
        # ... so the single file was opened twice: the task store's held connection (its hot
        # path, studio.db.engine.HeldConnection) and one pooled connection for all the others.
        assert opened == [str(Path(studio.settings.db_path).resolve())] * 2
    finally:
        studio.stop()


# -- migrations ---------------------------------------------------------------------------------

def test_migrations_build_the_whole_schema_on_an_empty_file(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    database = Database.for_file(tmp_path / "new.sqlite3")
    try:
        assert _tables(database) == set(metadata.tables) | {"alembic_version"}
        assert _alembic_head(database) == [HEAD]
        with database.connect() as db:  # the migrated schema is exactly studio.db.schema
            assert compare_metadata(MigrationContext.configure(db), metadata) == []
        database.migrate()  # at the next start: nothing to do
        assert _alembic_head(database) == [HEAD]
    finally:
        database.dispose()


@pytest.mark.parametrize("old_tasks", [OLD_TASKS_WITHOUT_LATER_COLUMNS, OLD_TASKS_OF_THE_LAST_VERSION],
                         ids=["oldest-task-table", "last-version"])
def test_a_database_of_the_previous_version_is_upgraded_and_its_rows_stay_readable(tmp_path, old_tasks):
    path = tmp_path / "studio.sqlite3"
    now = time.time()
    with sqlite3.connect(path) as old:
        old.executescript(old_tasks + OLD_OTHER_TABLES)
        old.execute("INSERT INTO tasks (id, kind, status, priority, request, created_at, result) "
                    "VALUES ('old-done', 't2v', 'completed', 1, '{\"prompt\": \"p\"}', ?, '{\"video_url\": \"v\"}')",
                    (now - 60,))
        old.execute("INSERT INTO tasks (id, kind, status, priority, request, created_at) "
                    "VALUES ('old-pending', 't2v', 'pending', 1, '{}', ?)", (now - 30,))
        old.execute("INSERT INTO events (task_id, type, data, created_at) VALUES ('old-done', 'task.created', "
                    "'{\"status\": \"pending\"}', ?)", (now - 60,))
        old.execute("INSERT INTO timings VALUES ('tiny', 'step_s', 0.5, 3)")
        old.execute("INSERT INTO api_keys VALUES ('key-old', 'old', ?, 'ek_abcdefg', 'whsec_x', ?, NULL)",
                    (hash_key("ek_the-old-key"), now - 100))
        old.execute("INSERT INTO sla_uptime (started_at, last_seen, clean_stop) VALUES (?, ?, 1)", (now - 50, now - 40))
        old.execute("INSERT INTO sla_violations (at, level, metric, value, threshold) "
                    "VALUES (?, 'standard', 'error_rate_percent', 9.5, 5.0)", (now - 20,))
        old.execute("INSERT INTO entities VALUES ('ent-old', 'key-old', 'cat', 'object', 4, 3, X'89504E47', ?)",
                    (now - 10,))
    old.close()

    database = Database(f"sqlite:///{path}")
    database.migrate()
    try:
        assert _alembic_head(database) == [HEAD] and _tables(database) >= set(metadata.tables)
        columns = {c["name"] for c in inspect(database.engine).get_columns("tasks")}
        assert {"owner", "webhook_url", "batch_id"} <= columns
        assert {i["name"] for i in inspect(database.engine).get_indexes("tasks")} >= {"tasks_queue", "tasks_owner",
                                                                                      "tasks_batch"}
        store, keys = TaskStore(database), KeyStore(database)
        done = store.get("old-done")
        assert done.status == st.COMPLETED and done.result == {"video_url": "v"} and done.owner == ""
        assert store.events("old-done")[0]["type"] == "task.created" and store.timing("tiny", "step_s") == 0.5
        assert store.queue_position("old-pending") == 1 and store.claim_next().id == "old-pending"
        assert keys.lookup("ek_the-old-key").id == "key-old"
        entities = EntityStore(database)
        assert [(e.entity_id, e.width, e.height) for e in entities.owned("key-old")] == [("ent-old", 4, 3)]
        assert entities.images("key-old", ["cat"])[0][1] == b"\x89PNG"
        monitor = SlaMonitor(database, gpu_memory=lambda: 0)
        assert [v.value for v in monitor.violation_log.recent(now=now)] == [9.5]
        assert monitor.ledger.details(now)["runs"] == 1
        # and the new version writes to it as usual
        created, _ = store.create_task("t2v", {"prompt": "new"}, owner="key-old", webhook_url="https://example.com/h")
        assert store.get(created.id).webhook_url == "https://example.com/h"
    finally:
        database.dispose()


# -- transactions ------------------------------------------------------------------------------

def test_a_transaction_holds_the_write_lock_from_its_begin_and_reads_hold_none(tmp_path):
    database = Database.for_file(tmp_path / "lock.sqlite3")
    other = sqlite3.connect(tmp_path / "lock.sqlite3", timeout=0, isolation_level=None)
    try:
        with database.transaction() as db:
            db.exec_driver_sql("SELECT 1")  # no write yet: BEGIN IMMEDIATE already holds the lock
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with database.connect() as db:
            db.exec_driver_sql("SELECT COUNT(*) FROM tasks").scalar_one()
            other.execute("BEGIN IMMEDIATE")  # a reader blocks no writer
            other.execute("ROLLBACK")
        with database.connect() as db:
            assert db.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert db.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert db.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 5000
    finally:
        other.close()
        database.dispose()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    store = TaskStore(tmp_path / "q.sqlite3")
    try:
        first, _ = store.create_task("t2v", {"n": 1}, owner="a")
        with pytest.raises(Exception, match="depends_on"):
            store.create_task("t2v", {"n": 2}, owner="a", depends_on=[first.id, "nope"])
        assert store.queue_depth() == 1 and len(store.events(first.id)) == 1
    finally:
        store.close()


def test_the_database_url_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("ECHOEL_DATA_DIR", str(tmp_path))
    assert Settings.from_env().db_url == f"sqlite:///{tmp_path.resolve() / 'studio.sqlite3'}"
    monkeypatch.setenv("ECHOEL_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    settings = Settings.from_env()
    assert settings.db_url.endswith("elsewhere.db")
    studio = Studio(settings)
    try:
        assert studio.database.path == (tmp_path / "elsewhere.db").resolve()
        assert not settings.db_path.exists()
    finally:
        studio.stop()


# -- the layer's boundary -----------------------------------------------------------------------

def test_nothing_outside_studio_db_talks_to_the_database_driver():
    driver_use = re.compile(r"^\s*(import sqlite3|from sqlite3 import)|sqlite3\.connect|create_engine\(", re.M)
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "studio").rglob("*.py"))
                 if "db" not in path.relative_to(ROOT / "studio").parts[:1] and driver_use.search(path.read_text())]
    assert offenders == []


# -- PostgreSQL (the next issue): a smoke test where a server and a driver are at hand -------------

def _postgres_up() -> bool:
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        return False
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", 5432)) == 0


@pytest.mark.skipif(not _postgres_up(), reason="no PostgreSQL on 127.0.0.1:5432 or no psycopg driver")
def test_the_stores_run_on_postgresql():
    """The same migrations and queries on PostgreSQL (database ``test``, a schema of its own)."""
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dstudio_db_test"
    database = Database(url)
    try:
        with database.transaction() as db:
            db.exec_driver_sql("DROP SCHEMA IF EXISTS studio_db_test CASCADE")
            db.exec_driver_sql("CREATE SCHEMA studio_db_test")
        database.migrate()
        store = TaskStore(database)
        keyed, _ = store.create_task("t2v", {"prompt": "x"}, owner="key-1", webhook_url="https://example.com/h")
        ui, _ = store.create_task("t2v", {"prompt": "y"}, owner="ui:abc", depends_on=None)
        assert {store.queue_position(keyed.id), store.queue_position(ui.id)} == {1, 2}
        assert store.claim_next().id == keyed.id and store.finish(keyed.id, st.COMPLETED, result={"ok": True})
        assert store.get(keyed.id).result == {"ok": True} and store.queue_position(ui.id) == 1
        deliveries = store.claim_due_webhooks()
        assert [d["event"] for d in deliveries] == ["task.created"]  # the rest wait for it, in order
        key = KeyStore(database).create("pg")
        assert KeyStore(database).lookup(key.key).id == key.record.id
        entities = EntityStore(database)
        entities.add("key-1", "hero", "person", (8, 8), b"png")
        assert entities.images("key-1", ["hero"])[0][1] == b"png"
        monitor = SlaMonitor(database, gpu_memory=lambda: 0)
        monitor.start(background=False)
        assert monitor.ledger.details()["runs"] == 1
        monitor.stop()
    finally:
        with database.transaction() as db:
            db.exec_driver_sql("DROP SCHEMA IF EXISTS studio_db_test CASCADE")
        database.dispose()


PG_CLI_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dstudio_cli_test"


def _fresh_postgres_schema(url: str, schema: str, drop_only: bool = False) -> None:
    database = Database(url)
    try:
        with database.transaction() as db:
            db.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            if not drop_only:
                db.exec_driver_sql(f"CREATE SCHEMA {schema}")
    finally:
        database.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_db_command_migrates_the_configured_database(tmp_path, capsys, monkeypatch, backend):
    """``python -m studio db current|upgrade`` on ``ECHOEL_DATABASE_URL`` (default: the data
    folder's SQLite file): an operator migrates before starting new API and worker processes."""
    from studio.__main__ import main

    monkeypatch.delenv("ECHOEL_DATABASE_URL", raising=False)
    if backend == "postgresql":
        if not _postgres_up():
            pytest.skip("no PostgreSQL on 127.0.0.1:5432 or no psycopg driver")
        _fresh_postgres_schema(PG_CLI_URL, "studio_cli_test")
        monkeypatch.setenv("ECHOEL_DATABASE_URL", PG_CLI_URL)
    try:
        assert main(["--data-dir", str(tmp_path), "db", "current"]) == 0
        assert "not migrated yet" in capsys.readouterr().out
        assert main(["--data-dir", str(tmp_path), "db", "upgrade"]) == 0
        printed = capsys.readouterr().out
        assert f"at {HEAD}; newest {HEAD}" in printed and backend in printed
        assert main(["--data-dir", str(tmp_path), "db", "upgrade"]) == 0  # again: nothing to do
    finally:
        if backend == "postgresql":
            _fresh_postgres_schema(PG_CLI_URL, "studio_cli_test", drop_only=True)
