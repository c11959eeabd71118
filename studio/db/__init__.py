"""The studio's one persistence layer: the connection pool, the schema and its migrations.

- ``studio.db.engine``: ``Database`` (one engine for the process, SQLite set up for durability).
- ``studio.db.schema``: every table, as SQLAlchemy Core ``Table`` objects.
- ``studio.db.migrations``: Alembic revisions, run by ``Database.migrate()`` at start-up.
- ``studio.db.entities``: the registered-entities table's reads and writes.

Above ``studio.config`` / ``studio.errors`` only: the stores in ``studio.jobs``, ``studio.keys``
and ``studio.genius`` use it; it knows none of them.
"""

from studio.db.engine import Database, sqlite_url

__all__ = ["Database", "sqlite_url"]
