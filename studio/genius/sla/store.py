"""The SLA monitor's own SQLite connection, shared by the uptime ledger and the violation log.

One connection per monitor (WAL, autocommit) behind one lock; each user creates its own tables.
Once closed, ``connection()`` yields None and readers answer "no history" instead of failing,
because the status must still answer while the process shuts down.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["SlaStore"]


class SlaStore:
    """A thread-safe SQLite connection to the studio's file (or ``":memory:"``)."""

    def __init__(self, db_path: Path | str):
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost heartbeat costs at most 15 s of recorded uptime

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection | None]:
        """Hold the lock and yield the connection (None once closed)."""
        with self._lock:
            yield self._db

    def create(self, schema: str) -> None:
        """Run a ``CREATE ... IF NOT EXISTS`` script (each user owns its tables)."""
        with self.connection() as db:
            if db is not None:
                db.executescript(schema)

    def close(self) -> None:
        """Close the connection; later reads see no history, later writes are dropped."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
