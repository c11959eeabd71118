"""The claim order of the task queue, as SQL expressions over ``tasks`` (``studio.db.schema``).

``TaskStore.claim_next`` takes the ready pending task of highest *effective priority* (its
priority plus one level per ``AGE_BOOST_SECONDS`` waited, so low never starves), oldest first at
equal values, alternating between two classes of owners (UI visitors, API keys). The queue
position and the tasks-ahead estimate count with the same expressions, so they can never
disagree with the order the worker really follows.
"""

from __future__ import annotations

import time

from sqlalchemy import ColumnElement, Connection, Row, and_, case, exists, func, literal, or_, select

from studio.db.schema import task_dependencies, tasks
from studio.jobs.task_row import COMPLETED, PENDING, RUNNING_STATUSES, TERMINAL_STATUSES

AGE_BOOST_SECONDS = 120.0  # waiting this long raises a task by one priority level


def ui_class() -> ColumnElement[int]:
    """1 for a task of a UI visitor (studio.ui_access: owners "ui" and "ui:..."), 0 for an API key's."""
    return case((or_(tasks.c.owner == "ui", tasks.c.owner.like("ui:%")), 1), else_=0)


def ready() -> ColumnElement[bool]:
    """A row of ``tasks`` none of whose dependencies is unfinished or missing: the only pending
    rows ``claim_next`` may take."""
    dependency = task_dependencies.alias("dep")
    parent = tasks.alias("parent")
    completed = exists().where(parent.c.id == dependency.c.depends_on, parent.c.status == COMPLETED)
    return ~exists().where(dependency.c.task_id == tasks.c.id, ~completed)


def effective_priority(now: float) -> ColumnElement[float]:
    """``priority + waited / AGE_BOOST_SECONDS`` at the instant ``now``."""
    return tasks.c.priority + (literal(now) - tasks.c.created_at) / AGE_BOOST_SECONDS


def starts_before(me: Row) -> ColumnElement[bool]:
    """Whether a pending row starts before task ``me`` (a row with ``priority``, ``created_at``,
    ``seq``): effective priority compared at any one instant reduces to this time-independent test."""
    lead = (tasks.c.priority - me.priority) * AGE_BOOST_SECONDS + (literal(me.created_at) - tasks.c.created_at)
    return or_(lead > 0, and_(lead == 0, tasks.c.seq < me.seq))


def place_columns():
    """What ``starts_before`` and the class test need to know of a task."""
    return select(tasks.c.status, tasks.c.priority, tasks.c.seq, tasks.c.created_at, ui_class().label("ui"))


# -- where a pending task stands (TaskStore.queue_position / tasks_ahead) ---------------------------
# ``last_claim_ui``: the class of the store's last claim (1 UI, 0 keyed, -1 none yet).

def position(db: Connection, task_id: str, last_claim_ui: int) -> int:
    """1 for the next task to start, 2 for the one after, ...; 0 when not pending.

    A task still waiting on dependencies is never counted ahead of another task; its own
    position is one more than the pending tasks of ``ahead`` (its unfinished dependencies and
    everything ahead of them included), so a stitch is not "1" while its shots are queued."""
    me = db.execute(place_columns().where(tasks.c.id == task_id)).first()
    if me is None or me.status != PENDING:
        return 0
    if unfinished_dependencies(db, task_id):
        return 1 + sum(r.status == PENDING for r in ahead(db, task_id, last_claim_ui).values())
    rank, others = fair_place(db, me, last_claim_ui)
    return rank + others


def unfinished_dependencies(db: Connection, task_id: str) -> list[Row]:
    """The rows of the tasks ``task_id`` waits on that have not ended yet, oldest first."""
    return db.execute(
        select(tasks).join(task_dependencies, tasks.c.id == task_dependencies.c.depends_on)
        .where(task_dependencies.c.task_id == task_id, tasks.c.status.not_in(TERMINAL_STATUSES))
        .order_by(tasks.c.seq)).all()


def fair_place(db: Connection, me: Row, last_claim_ui: int) -> tuple[int, int]:
    """(``me``'s place among the pending tasks of its class, how many tasks of the other class
    ``claim_next`` takes before it). While both classes wait the claims alternate, so the
    other class gets ``rank - 1`` claims before it (``rank`` if the other class is next)."""
    count = select(func.count()).select_from(tasks).where(tasks.c.status == PENDING, ready())
    rank = 1 + db.execute(count.where(ui_class() == me.ui, starts_before(me))).scalar_one()
    waiting = db.execute(count.where(ui_class() != me.ui)).scalar_one()
    if not waiting:
        return rank, 0
    next_class = 1 - last_claim_ui if last_claim_ui in (0, 1) else db.execute(
        select(ui_class()).where(tasks.c.status == PENDING, ready())
        .order_by(effective_priority(time.time()).desc(), tasks.c.seq).limit(1)).scalar_one()
    return rank, min(waiting, rank - 1 if next_class == me.ui else rank)


def ahead(db: Connection, task_id: str, last_claim_ui: int) -> dict[str, Row]:
    """The rows of the tasks ahead of ``task_id`` by id (each once: dependencies share what is
    ahead of them): running tasks, pending ready ones that start before it, and its unfinished
    dependencies with, recursively, what is ahead of them."""
    me = db.execute(place_columns().where(tasks.c.id == task_id)).one()
    rows = db.execute(select(tasks).where(
        tasks.c.status.in_(RUNNING_STATUSES)
        | ((tasks.c.status == PENDING) & ready() & (ui_class() == me.ui) & starts_before(me)))).all()
    _, others = fair_place(db, me, last_claim_ui)
    rows += db.execute(select(tasks).where(tasks.c.status == PENDING, ready(), ui_class() != me.ui)
                       .order_by(effective_priority(time.time()).desc(), tasks.c.seq).limit(others)).all()
    found = {r.id: r for r in rows}
    # Dependencies were created before their dependants, so this recursion has no cycles.
    for dependency in unfinished_dependencies(db, task_id):
        found[dependency.id] = dependency
        if dependency.status == PENDING:
            found.update(ahead(db, dependency.id, last_claim_ui))
    return found
