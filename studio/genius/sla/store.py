"""The SLA monitor's access to the studio's database, shared by the uptime ledger and the violation log.

The tables (``sla_uptime``, ``sla_violations``) are part of ``studio.db.schema`` and created by
its migrations. Statements run one by one behind one lock (each commits on its own). Once
closed, ``connection()`` yields None and readers answer "no history" instead of failing, because
the status must still answer while the process shuts down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection

from studio.db import Database

__all__ = ["SlaStore"]


class SlaStore:
    """Thread-safe access to the SLA tables.

    ``database``: the studio's ``Database`` (its owner disposes of it), or a SQLite file
    (``":memory:"`` for a private one) that this store opens and closes itself.
    """

    def __init__(self, database: Database | Path | str):
        self._lock = threading.Lock()
        self._owns_database = not isinstance(database, Database)
        self._database = Database.for_file(database) if self._owns_database else database
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection | None]:
        """Hold the lock and yield a connection (None once closed)."""
        with self._lock:
            if self._closed:
                yield None
                return
            with self._database.connect() as db:
                yield db

    def close(self) -> None:
        """Stop using the database; later reads see no history, later writes are dropped."""
        with self._lock:
            if not self._closed and self._owns_database:
                self._database.dispose()
            self._closed = True
