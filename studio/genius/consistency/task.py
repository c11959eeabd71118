"""The Consistency Tracker's registered entities, in this feature's shapes and errors.

The ``entities`` table (the reference stored as PNG) of the studio's SQLite file;
:class:`EntityStore` turns its rows into :class:`~studio.genius.consistency.schema.EntityInfo`
and its limits and conflicts into the feature's errors. What a caller does with entities:
``studio.genius.consistency.entities``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from studio.errors import InvalidRequest
from studio.genius.consistency.schema import MAX_ENTITIES, EntityExists, EntityInfo

if TYPE_CHECKING:
    from studio.core import Studio


# -- the entity store ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    image BLOB NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (owner, name)
);
"""
_COLUMNS = "id, name, entity_type, width, height, created_at"


class EntityStore:
    """The ``entities`` table of one SQLite file: one connection, serialised by a lock."""

    def __init__(self, path: Path):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def add(self, owner: str, name: str, entity_type: str, size: tuple[int, int], png: bytes) -> EntityInfo:
        info = EntityInfo(entity_id=f"ent-{uuid.uuid4().hex[:16]}", name=name, entity_type=entity_type,
                          width=size[0], height=size[1], created_at=round(time.time(), 3))
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (count,) = self._db.execute("SELECT COUNT(*) FROM entities WHERE owner = ?", (owner,)).fetchone()
                if count >= MAX_ENTITIES:
                    raise InvalidRequest(f"name: you have {count} entities, the most one key may keep; "
                                         "delete one first")
                self._db.execute(
                    "INSERT INTO entities (id, owner, name, entity_type, width, height, image, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (info.entity_id, owner, name, entity_type, info.width, info.height, png, info.created_at))
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise EntityExists(f"name: you already have an entity named {name!r}; delete it first "
                                   "or pick another name") from None
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return info

    def owned(self, owner: str) -> list[EntityInfo]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM entities WHERE owner = ? ORDER BY created_at, name",
                                    (owner,)).fetchall()
        return [_info(row) for row in rows]

    def images(self, owner: str, names: list[str]) -> list[tuple[EntityInfo, bytes]]:
        """The named entities of ``owner`` with their reference PNGs, in ``names``' order."""
        marks = ", ".join("?" * len(names))
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS}, image FROM entities WHERE owner = ? AND name IN ({marks})",
                                    (owner, *names)).fetchall()
        found = {row[1]: (_info(row), row[6]) for row in rows}
        return [found[name] for name in names if name in found]

    def delete(self, owner: str, entity_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM entities WHERE id = ? AND owner = ?", (entity_id, owner)).rowcount > 0


def _info(row) -> EntityInfo:
    return EntityInfo(entity_id=row[0], name=row[1], entity_type=row[2], width=row[3], height=row[4],
                      created_at=row[5])


_stores: dict[Path, EntityStore] = {}
_stores_lock = threading.Lock()


def entity_store(studio: "Studio") -> EntityStore:
    """The entity store of ``studio``'s SQLite file, opened on first use."""
    path = Path(studio.settings.db_path).resolve()
    with _stores_lock:
        if path not in _stores:
            _stores[path] = EntityStore(path)
        return _stores[path]
