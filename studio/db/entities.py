"""The ``entities`` table: reference images registered per owner (``studio.genius.consistency``).

Rows in, rows out: the consistency feature turns them into its API shapes and its errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from studio.db.engine import Database
from studio.db.schema import entities

__all__ = ["EntityRow", "EntityRecords", "DuplicateEntityName", "TooManyEntities"]


@dataclass(frozen=True)
class EntityRow:
    """One registered entity, without its image."""

    id: str
    name: str
    entity_type: str
    width: int
    height: int
    created_at: float


class DuplicateEntityName(Exception):
    """The owner already has an entity of that name."""


class TooManyEntities(Exception):
    """The owner already keeps the most entities allowed; ``count`` is how many."""

    def __init__(self, count: int):
        super().__init__(f"{count} entities")
        self.count = count


_COLUMNS = (entities.c.id, entities.c.name, entities.c.entity_type, entities.c.width, entities.c.height,
            entities.c.created_at)


class EntityRecords:
    """Reads and writes of the ``entities`` table on ``database``."""

    def __init__(self, database: Database):
        self.database = database

    def add(self, owner: str, row: EntityRow, png: bytes, *, max_per_owner: int) -> None:
        """Insert ``row`` for ``owner``; the count check and the insert are one transaction, so
        concurrent registrations cannot pass the limit or both take one name."""
        try:
            with self.database.transaction() as db:
                count = db.execute(select(func.count()).select_from(entities)
                                   .where(entities.c.owner == owner)).scalar_one()
                if count >= max_per_owner:
                    raise TooManyEntities(count)
                db.execute(insert(entities).values(
                    id=row.id, owner=owner, name=row.name, entity_type=row.entity_type, width=row.width,
                    height=row.height, image=png, created_at=row.created_at))
        except IntegrityError:
            raise DuplicateEntityName(row.name) from None

    def owned(self, owner: str) -> list[EntityRow]:
        """``owner``'s entities, oldest first."""
        with self.database.connect() as db:
            rows = db.execute(select(*_COLUMNS).where(entities.c.owner == owner)
                              .order_by(entities.c.created_at, entities.c.name)).all()
        return [EntityRow(*row) for row in rows]

    def images(self, owner: str, names: list[str]) -> list[tuple[EntityRow, bytes]]:
        """The named entities of ``owner`` with their reference PNGs, in ``names``' order."""
        with self.database.connect() as db:
            rows = db.execute(select(*_COLUMNS, entities.c.image)
                              .where(entities.c.owner == owner, entities.c.name.in_(names))).all()
        found = {row.name: (EntityRow(*row[:6]), bytes(row.image)) for row in rows}
        return [found[name] for name in names if name in found]

    def delete(self, owner: str, entity_id: str) -> bool:
        """Delete one of ``owner``'s entities; False when there is none of that id."""
        with self.database.connect() as db:
            return db.execute(delete(entities).where(entities.c.id == entity_id,
                                                     entities.c.owner == owner)).rowcount > 0
