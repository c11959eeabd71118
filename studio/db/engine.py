"""The studio's one database connection pool: ``Database``, built from a URL.

Every store (tasks, API keys, SLA history, entities) is handed the same ``Database`` by
``studio.core`` and runs its statements through ``transaction()`` (one atomic unit that takes the
write lock at once) or ``connect()`` (each statement commits on its own: reads and single-row
writes). ``migrate()`` brings the schema to the newest Alembic revision at start-up.

SQLite (the default, ``sqlite:///<data_dir>/studio.sqlite3``) is set up per connection as the
stores always did: WAL (readers never wait for the writer), ``synchronous=FULL`` (a task
acknowledged to a client survives a power cut, not only a crash), ``busy_timeout=5000`` and
foreign keys not enforced (SQLite's default; the tables declare none). pysqlite's own
transaction handling is switched off and every transaction starts with ``BEGIN IMMEDIATE``
(SQLAlchemy's documented recipe for pysqlite, "Serializable isolation / Savepoints /
Transactional DDL"), so two writers never both read and then fail to upgrade their lock.

Driver errors leave as the studio's: a full disk is ``StorageFull`` (507), any other
operational error ``StoreUnavailable`` (503) (``studio.errors.storage_fault``).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from studio.errors import register_database_errors, storage_fault

__all__ = ["Database", "HeldConnection", "sqlite_url"]

# storage_fault (studio.errors) classifies these without importing a driver itself.
register_database_errors(sqlite3.Error, sqlite3.OperationalError)
register_database_errors(exc.DBAPIError, exc.OperationalError)

# Execution option marking a connection whose statements commit one by one (see ``connect``).
_AUTOCOMMIT = "studio_autocommit"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def sqlite_url(path: Path | str) -> str:
    """The URL of the SQLite file at ``path`` (``":memory:"``: a private in-memory database)."""
    if str(path) == ":memory:":
        return "sqlite://"
    return URL.create("sqlite", database=str(Path(path).resolve())).render_as_string()


MIGRATION_LOCK = 0x5EC0_0001  # the PostgreSQL advisory lock id migrations hold


class Database:
    """One engine (one connection pool) for the whole process.

    Args:
        url: an SQLAlchemy URL (``ECHOEL_DATABASE_URL``); ``sqlite:///<file>`` by default.
    """

    def __init__(self, url: str | URL):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.path: Path | None = None  # the SQLite file, None for other databases and ":memory:"
        self.engine: Engine = self._create_engine()
        # The same pool, for statements that commit one by one (see ``connect``).
        self._autocommit = self.engine.execution_options(
            **({_AUTOCOMMIT: True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}))

    @classmethod
    def for_file(cls, path: Path | str) -> "Database":
        """A database on the SQLite file ``path`` (created with its folder), migrated to the newest
        schema: what a store made from a bare path (tests, the ``keys`` CLI) opens."""
        database = cls(sqlite_url(path))
        database.migrate()
        return database

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True)
        memory = self.url.database in (None, "", ":memory:")
        if memory:  # one connection, or each thread would see its own empty database
            engine = create_engine(self.url, poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            self.path = Path(self.url.database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Threads (API handlers, the worker, the webhook and SLA threads) each check out a
            # connection; SQLite connections are cheap, so the pool may grow well past its core.
            engine = create_engine(self.url, pool_size=8, max_overflow=56, pool_timeout=30,
                                   connect_args={"check_same_thread": False, "timeout": 5.0})

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # pysqlite never issues BEGIN/COMMIT on its own
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            if not connection.get_execution_options().get(_AUTOCOMMIT):
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write

        return engine

    # -- use ----------------------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection inside one transaction (SQLite: ``BEGIN IMMEDIATE``), committed when the
        block ends, rolled back when it raises."""
        with _storage_errors(), self.engine.begin() as connection:
            yield connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection whose statements each commit on their own (reads, one-statement writes):
        no transaction is held between them, so no lock either."""
        with _storage_errors(), self._autocommit.connect() as connection:
            yield connection

    def held(self) -> "HeldConnection":
        """One connection kept for a store that serialises its own use (see ``HeldConnection``)."""
        return HeldConnection(self)

    def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``), in one transaction.

        A database made before the studio used Alembic (its tables exist, no ``alembic_version``)
        is brought up to date by the baseline revision, which only adds what is missing."""
        from alembic import command

        if self.revision() == newest_revision():
            return  # the common case at every start: nothing to do, no write lock taken
        config = alembic_config()
        with self.transaction() as connection:
            if not self.is_sqlite:
                # Processes starting together (API replicas, workers) migrate one at a time; the
                # later ones find the schema current (SQLite's BEGIN IMMEDIATE already serialises).
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def revision(self) -> str | None:
        """The migration the database stands at (None: never migrated, e.g. a new or pre-Alembic file)."""
        from alembic.runtime.migration import MigrationContext

        with self.connect() as connection:
            heads = MigrationContext.configure(connection).get_current_heads()
        return heads[0] if heads else None

    def dispose(self) -> None:
        """Close every pooled connection (the stores using this database are done)."""
        self.engine.dispose()


class HeldConnection:
    """One connection kept checked out, for a store that serialises its own use with a lock (the
    task store: its statements are the hot path of every status poll and denoising step).

    On SQLite a pool checkout (with its events and reset) costs more than the indexed read it
    serves; keeping one connection halves a single-row read (bench/RESULTS.md, "Re-check after
    the database layer"), as the store's own connection did before ``studio.db``. Statements
    commit one by one (``connect``) unless inside ``transaction`` (``BEGIN IMMEDIATE`` ...
    ``COMMIT``). A connection that broke is replaced at its next use. Other databases use the
    pool (``Database.connect`` / ``transaction``): their connections are network sessions.

    Not thread-safe by itself: the owner holds its lock around every use."""

    def __init__(self, database: Database):
        self.database = database
        self._connection: Connection | None = None

    def _current(self) -> Connection:
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            self._connection = self.database._autocommit.connect()
        return self._connection

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """The held connection (SQLite), its statements each committing on their own."""
        if not self.database.is_sqlite:
            with self.database.connect() as connection:
                yield connection
            return
        with _storage_errors():
            yield self._current()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the held connection (SQLite: ``BEGIN IMMEDIATE``), committed when
        the block ends, rolled back when it raises."""
        if not self.database.is_sqlite:
            with self.database.transaction() as connection:
                yield connection
            return
        with _storage_errors():
            connection = self._current()
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.exec_driver_sql("COMMIT")
            except BaseException:
                if not connection.invalidated and connection.connection.dbapi_connection.in_transaction:
                    connection.exec_driver_sql("ROLLBACK")
                raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def alembic_config():
    """Alembic's configuration, built in code: no ``alembic.ini`` is needed at run time."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def newest_revision() -> str:
    """The newest migration this code knows (what ``migrate`` brings a database to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@contextmanager
def _storage_errors() -> Iterator[None]:
    """Driver errors leave the layer as the studio's: a full disk ``StorageFull``, a busy or
    failing database ``StoreUnavailable``; constraint violations and the like stay as they are."""
    try:
        yield
    except (exc.DBAPIError, sqlite3.Error) as error:
        fault = storage_fault(error)
        if fault is None:
            raise
        raise fault from error
