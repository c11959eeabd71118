"""The claim order of the task queue, as SQL over ``tasks`` (``studio.db.schema``).

``TaskStore.claim_next`` takes the ready pending task of highest *effective priority* (its
priority plus one level per ``AGE_BOOST_SECONDS`` waited, so low never starves), oldest first at
equal values, alternating between two classes of owners (UI visitors, API keys). The queue
position and the tasks-ahead estimate count with the same expressions, so they can never
disagree with the order the worker really follows.

The statements are built once, with bound parameters (``now``, ``task_id``, ...): building a
Core statement costs far more than running it on SQLite, and these run on every status poll.
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Float, Integer, Row, and_, bindparam, case, exists, func, or_, select

from studio.db.schema import task_dependencies, tasks
from studio.jobs.task_row import COMPLETED, PENDING, RUNNING_STATUSES, TERMINAL_STATUSES

AGE_BOOST_SECONDS = 120.0  # waiting this long raises a task by one priority level

# 1 for a task of a UI visitor (studio.ui_access: owners "ui" and "ui:..."), 0 for an API key's.
UI_CLASS = case((or_(tasks.c.owner == "ui", tasks.c.owner.like("ui:%")), 1), else_=0)


def _ready():
    dependency = task_dependencies.alias("dep")
    parent = tasks.alias("parent")
    completed = exists().where(parent.c.id == dependency.c.depends_on, parent.c.status == COMPLETED)
    return ~exists().where(dependency.c.task_id == tasks.c.id, ~completed)


# A row of ``tasks`` none of whose dependencies is unfinished or missing: the only pending rows
# claim_next may take.
READY = _ready()
PENDING_READY = and_(tasks.c.status == PENDING, READY)

# priority + waited / AGE_BOOST_SECONDS at the instant ``now``.
EFFECTIVE_PRIORITY = tasks.c.priority + (bindparam("now", type_=Float) - tasks.c.created_at) / AGE_BOOST_SECONDS


def _starts_before():
    """Whether a pending row starts before task "me" (``me_priority``, ``me_created_at``,
    ``me_seq``): effective priority compared at any one instant reduces to this time-independent test."""
    lead = ((tasks.c.priority - bindparam("me_priority", type_=Integer)) * AGE_BOOST_SECONDS
            + (bindparam("me_created_at", type_=Float) - tasks.c.created_at))
    return or_(lead > 0, and_(lead == 0, tasks.c.seq < bindparam("me_seq", type_=Integer)))


STARTS_BEFORE = _starts_before()
SAME_CLASS = UI_CLASS == bindparam("me_ui", type_=Integer)
OTHER_CLASS = UI_CLASS != bindparam("me_ui", type_=Integer)

# The next task to claim: ready, not of the class last claimed if the other has any, best first.
NEXT_TO_CLAIM = (select(tasks.c.id, UI_CLASS.label("ui")).where(PENDING_READY)
                 .order_by(UI_CLASS == bindparam("last_ui", type_=Integer), EFFECTIVE_PRIORITY.desc(), tasks.c.seq)
                 .limit(1))
# The same among the tasks announced on one Celery queue (``queue``): a worker's claim.
NEXT_TO_CLAIM_IN_QUEUE = NEXT_TO_CLAIM.where(tasks.c.queue == bindparam("queue"))

_PLACE = select(tasks.c.status, tasks.c.priority, tasks.c.seq, tasks.c.created_at, UI_CLASS.label("ui")) \
    .where(tasks.c.id == bindparam("task_id"))
_PENDING_COUNT = select(func.count()).select_from(tasks).where(PENDING_READY)
_RANK_IN_CLASS = _PENDING_COUNT.where(SAME_CLASS, STARTS_BEFORE)
_WAITING_IN_OTHER_CLASS = _PENDING_COUNT.where(OTHER_CLASS)
_BEST_CLASS = select(UI_CLASS).where(PENDING_READY).order_by(EFFECTIVE_PRIORITY.desc(), tasks.c.seq).limit(1)
_RUNNING_OR_BEFORE_IN_CLASS = select(tasks).where(
    tasks.c.status.in_(RUNNING_STATUSES) | (PENDING_READY & SAME_CLASS & STARTS_BEFORE))
_FIRST_OF_OTHER_CLASS = (select(tasks).where(PENDING_READY, OTHER_CLASS)
                         .order_by(EFFECTIVE_PRIORITY.desc(), tasks.c.seq).limit(bindparam("others", type_=Integer)))
_UNFINISHED_DEPENDENCIES = (select(tasks).join(task_dependencies, tasks.c.id == task_dependencies.c.depends_on)
                            .where(task_dependencies.c.task_id == bindparam("task_id"),
                                   tasks.c.status.not_in(TERMINAL_STATUSES))
                            .order_by(tasks.c.seq))


def _me(me: Row) -> dict:
    return {"me_priority": me.priority, "me_created_at": me.created_at, "me_seq": me.seq, "me_ui": me.ui}


# -- where a pending task stands (TaskStore.queue_position / tasks_ahead) ---------------------------
# ``last_claim_ui``: the class of the store's last claim (1 UI, 0 keyed, -1 none yet).

def position(db: Connection, task_id: str, last_claim_ui: int) -> int:
    """1 for the next task to start, 2 for the one after, ...; 0 when not pending.

    A task still waiting on dependencies is never counted ahead of another task; its own
    position is one more than the pending tasks of ``ahead`` (its unfinished dependencies and
    everything ahead of them included), so a stitch is not "1" while its shots are queued."""
    me = db.execute(_PLACE, {"task_id": task_id}).first()
    if me is None or me.status != PENDING:
        return 0
    if unfinished_dependencies(db, task_id):
        return 1 + sum(r.status == PENDING for r in ahead(db, task_id, last_claim_ui).values())
    rank, others = fair_place(db, me, last_claim_ui)
    return rank + others


def unfinished_dependencies(db: Connection, task_id: str) -> list[Row]:
    """The rows of the tasks ``task_id`` waits on that have not ended yet, oldest first."""
    return db.execute(_UNFINISHED_DEPENDENCIES, {"task_id": task_id}).all()


def fair_place(db: Connection, me: Row, last_claim_ui: int) -> tuple[int, int]:
    """(``me``'s place among the pending tasks of its class, how many tasks of the other class
    ``claim_next`` takes before it). While both classes wait the claims alternate, so the
    other class gets ``rank - 1`` claims before it (``rank`` if the other class is next)."""
    rank = 1 + db.execute(_RANK_IN_CLASS, _me(me)).scalar_one()
    waiting = db.execute(_WAITING_IN_OTHER_CLASS, {"me_ui": me.ui}).scalar_one()
    if not waiting:
        return rank, 0
    next_class = 1 - last_claim_ui if last_claim_ui in (0, 1) else \
        db.execute(_BEST_CLASS, {"now": time.time()}).scalar_one()
    return rank, min(waiting, rank - 1 if next_class == me.ui else rank)


def ahead(db: Connection, task_id: str, last_claim_ui: int) -> dict[str, Row]:
    """The rows of the tasks ahead of ``task_id`` by id (each once: dependencies share what is
    ahead of them): running tasks, pending ready ones that start before it, and its unfinished
    dependencies with, recursively, what is ahead of them."""
    me = db.execute(_PLACE, {"task_id": task_id}).one()
    rows = db.execute(_RUNNING_OR_BEFORE_IN_CLASS, _me(me)).all()
    _, others = fair_place(db, me, last_claim_ui)
    rows += db.execute(_FIRST_OF_OTHER_CLASS, {"me_ui": me.ui, "now": time.time(), "others": others}).all()
    found = {r.id: r for r in rows}
    # Dependencies were created before their dependants, so this recursion has no cycles.
    for dependency in unfinished_dependencies(db, task_id):
        found[dependency.id] = dependency
        if dependency.status == PENDING:
            found.update(ahead(db, dependency.id, last_claim_ui))
    return found
