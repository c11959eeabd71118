"""The Consistency Tracker's registered entities, in this feature's shapes and errors.

The rows live in the studio's database (``studio.db.entities``); :class:`EntityStore` turns
them into :class:`~studio.genius.consistency.schema.EntityInfo` and its limits and conflicts into
the feature's errors. What a caller does with entities: ``studio.genius.consistency.entities``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from studio.db import Database
from studio.db.entities import DuplicateEntityName, EntityRecords, EntityRow, TooManyEntities
from studio.errors import InvalidRequest
from studio.genius.consistency.schema import MAX_ENTITIES, EntityExists, EntityInfo

# -- the entity store ---------------------------------------------------------------------------

class EntityStore:
    """Registered entities of the studio's database (``studio.db.entities``), in this feature's
    shapes and errors. ``database``: the studio's ``Database``, or a SQLite file to open."""

    def __init__(self, database: Database | Path):
        self._records = EntityRecords(database if isinstance(database, Database) else Database.for_file(database))

    def add(self, owner: str, name: str, entity_type: str, size: tuple[int, int], png: bytes) -> EntityInfo:
        row = EntityRow(id=f"ent-{uuid.uuid4().hex[:16]}", name=name, entity_type=entity_type,
                        width=size[0], height=size[1], created_at=round(time.time(), 3))
        try:
            self._records.add(owner, row, png, max_per_owner=MAX_ENTITIES)
        except TooManyEntities as full:
            raise InvalidRequest(f"name: you have {full.count} entities, the most one key may keep; "
                                 "delete one first") from None
        except DuplicateEntityName:
            raise EntityExists(f"name: you already have an entity named {name!r}; delete it first "
                               "or pick another name") from None
        return _info(row)

    def owned(self, owner: str) -> list[EntityInfo]:
        return [_info(row) for row in self._records.owned(owner)]

    def images(self, owner: str, names: list[str]) -> list[tuple[EntityInfo, bytes]]:
        """The named entities of ``owner`` with their reference PNGs, in ``names``' order."""
        return [(_info(row), png) for row, png in self._records.images(owner, names)]

    def delete(self, owner: str, entity_id: str) -> bool:
        return self._records.delete(owner, entity_id)


def _info(row: EntityRow) -> EntityInfo:
    return EntityInfo(entity_id=row.id, name=row.name, entity_type=row.entity_type, width=row.width,
                      height=row.height, created_at=row.created_at)

