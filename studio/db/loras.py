"""The ``loras`` table: LoRA adapters registered per owner (Generate's ``loras``).

Rows in, rows out: ``studio.genius.generate.loras`` turns them into the API's shapes and errors;
the worker reads the rows of the adapters a task names. The files live beside the media
(``data_dir/loras/lora-<id>/``), never in the database: adapters are tens to hundreds of MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from studio.db.engine import Database
from studio.db.schema import loras

__all__ = ["LoraRow", "LoraRecords", "DuplicateLoraName"]


@dataclass(frozen=True)
class LoraRow:
    """One registered adapter."""

    id: str
    owner: str
    name: str
    model: str  # the model it was checked against at registration
    source: str  # "upload" or "hub"
    hub_id: str | None
    hub_filename: str | None
    rank: int | None
    size_bytes: int | None
    created_at: float
    targets: dict[str, list[int]] = field(default_factory=dict)  # module -> [in, out]; {}: not fetched yet


class DuplicateLoraName(Exception):
    """The owner already has an adapter of that name."""


_COLUMNS = (loras.c.id, loras.c.owner, loras.c.name, loras.c.model, loras.c.source, loras.c.hub_id,
            loras.c.hub_filename, loras.c.rank, loras.c.size_bytes, loras.c.created_at, loras.c.targets)


def _row(values) -> LoraRow:
    return LoraRow(*values[:-1], targets=json.loads(values[-1]))


class LoraRecords:
    """Reads and writes of the ``loras`` table on ``database``."""

    def __init__(self, database: Database):
        self.database = database

    def add(self, row: LoraRow) -> None:
        try:
            with self.database.transaction() as db:
                db.execute(insert(loras).values(
                    id=row.id, owner=row.owner, name=row.name, model=row.model, source=row.source, hub_id=row.hub_id,
                    hub_filename=row.hub_filename, rank=row.rank, size_bytes=row.size_bytes,
                    targets=json.dumps(row.targets), created_at=row.created_at))
        except IntegrityError:
            raise DuplicateLoraName(row.name) from None

    def owned(self, owner: str) -> list[LoraRow]:
        """``owner``'s adapters, oldest first."""
        with self.database.connect() as db:
            rows = db.execute(select(*_COLUMNS).where(loras.c.owner == owner)
                              .order_by(loras.c.created_at, loras.c.name)).all()
        return [_row(r) for r in rows]

    def get(self, lora_id: str) -> LoraRow | None:
        """The adapter ``lora_id`` (any owner's: callers check the owner)."""
        with self.database.connect() as db:
            found = db.execute(select(*_COLUMNS).where(loras.c.id == lora_id)).first()
        return _row(found) if found else None

    def set_targets(self, lora_id: str, targets: dict[str, list[int]], rank: int, size_bytes: int) -> None:
        """What a hub adapter's file holds, once a worker fetched it."""
        with self.database.transaction() as db:
            db.execute(loras.update().where(loras.c.id == lora_id).values(
                targets=json.dumps(targets), rank=rank, size_bytes=size_bytes))

    def delete(self, owner: str, lora_id: str) -> bool:
        """Delete one of ``owner``'s adapters; False when there is none of that id."""
        with self.database.transaction() as db:
            return db.execute(delete(loras).where(loras.c.id == lora_id, loras.c.owner == owner)).rowcount > 0
