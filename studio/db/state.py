"""Small named values every process of a studio must agree on (``studio_state``): the UI
owner-cookie secret, the maintenance switch. In the database rather than in a data folder, so
API processes on machines that share no folder still sign the same cookies and drain together.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from studio.db.engine import Database
from studio.db.schema import studio_state

MAINTENANCE = "maintenance"  # "on" while every API process refuses new work (python -m studio maintenance)


class StudioState:
    """Named text values in ``studio_state``."""

    def __init__(self, database: Database):
        self.database = database

    def get(self, name: str) -> str | None:
        with self.database.connect() as db:
            return db.execute(select(studio_state.c.value).where(studio_state.c.name == name)).scalar()

    def set(self, name: str, value: str) -> None:
        with self.database.transaction() as db:
            db.execute(delete(studio_state).where(studio_state.c.name == name))
            db.execute(insert(studio_state).values(name=name, value=value))

    def delete(self, name: str) -> None:
        with self.database.transaction() as db:
            db.execute(delete(studio_state).where(studio_state.c.name == name))

    def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The stored value, or ``make()`` stored now. Processes starting together agree: the
        first insert wins and the others read it."""
        value = self.get(name)
        if value is not None:
            return value
        try:
            with self.database.transaction() as db:
                db.execute(insert(studio_state).values(name=name, value=make()))
        except IntegrityError:  # another process stored it first
            pass
        return self.get(name)
