"""The durable uptime ledger: one row per process run in SQLite, heartbeats, clean stops, uptime.

Knows nothing of HTTP, latency or levels. Each ``start`` inserts ``(started_at, last_seen)``,
``heartbeat`` moves ``last_seen``, ``stop`` marks a clean (planned) stop; ``details`` computes
up time, unplanned and planned downtime over the period (formula in the ``studio.genius.sla``
package docstring).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, insert, select, update

from studio.db.schema import sla_uptime
from studio.genius.sla.schema import iso_utc
from studio.genius.sla.store import SlaStore

__all__ = ["UptimeLedger"]

class UptimeLedger:
    """The runs of the studio on one SQLite file, and the uptime they add up to.

    Args:
        store: the connection (shared with the violation log).
        window_seconds: the uptime period's maximum length (30 days, a monthly SLA period).
        clock: wall-clock source (``time.time``); tests inject their own.
    """

    def __init__(self, store: SlaStore, *, window_seconds: float = 30 * 86400,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.window_seconds = window_seconds
        self._clock = clock
        self._run_id: int | None = None  # this process's row; guarded by the store's lock

    def start(self) -> None:
        """Record this process's start (once); ``RuntimeError`` when the store was closed."""
        now = self._clock()
        with self.store.connection() as db:
            if db is None:
                raise RuntimeError("the SLA monitor was stopped")
            if self._run_id is None:
                inserted = db.execute(insert(sla_uptime).values(started_at=now, last_seen=now))
                self._run_id = inserted.inserted_primary_key[0]
                # Rows that ended before the period are of no use, except the first one (it
                # anchors the period's start, so a long outage before this start still counts)
                # and the last one to end (whether it stopped cleanly: planned downtime or not).
                first = select(sla_uptime.c.id).order_by(sla_uptime.c.started_at).limit(1).scalar_subquery()
                last_to_end = (select(sla_uptime.c.id).where(sla_uptime.c.id != self._run_id)
                               .order_by(sla_uptime.c.last_seen.desc(), sla_uptime.c.clean_stop).limit(1))
                db.execute(delete(sla_uptime).where(sla_uptime.c.last_seen < now - self.window_seconds,
                                                    sla_uptime.c.id > first, sla_uptime.c.id.not_in(last_to_end)))

    def heartbeat(self, clean_stop: bool = False) -> None:
        """Mark this process as up until now (and, with ``clean_stop``, as stopped on purpose)."""
        with self.store.connection() as db:
            if db is None or self._run_id is None:
                return
            db.execute(update(sla_uptime).where(sla_uptime.c.id == self._run_id)
                       .values(last_seen=self._clock(), clean_stop=int(clean_stop)))

    def stop(self) -> None:
        """A clean stop: the last heartbeat, marked planned; this process's run ends here."""
        self.heartbeat(clean_stop=True)
        with self.store.connection():
            self._run_id = None

    def intervals(self, now: float) -> list[tuple[float, float, bool]]:
        """``(start, end, ended by a clean stop)`` of every run started by ``now``; the running
        process is up until now."""
        with self.store.connection() as db:
            if db is None:
                return []
            rows = db.execute(select(sla_uptime.c.id, sla_uptime.c.started_at, sla_uptime.c.last_seen,
                                     sla_uptime.c.clean_stop)).all()
            run_id = self._run_id
        return [(start, now, False) if row_id == run_id else (start, min(last, now), bool(clean))
                for row_id, start, last, clean in rows if start <= now]

    def details(self, now: float | None = None) -> dict:
        """``{period_start, period_seconds, up_seconds, down_seconds, planned_down_seconds,
        planned_stops, runs, percent}``: ``down_seconds`` is unplanned downtime only, planned
        downtime (after clean stops) is reported apart and left out of ``percent``."""
        now = self._clock() if now is None else now
        intervals = sorted(self.intervals(now))
        if not intervals:
            return {"period_start": None, "period_seconds": 0.0, "up_seconds": 0.0, "down_seconds": 0.0,
                    "planned_down_seconds": 0.0, "planned_stops": 0, "runs": 0, "percent": 100.0}
        start = max(intervals[0][0], now - self.window_seconds)
        up = planned = 0.0
        planned_stops = 0
        cur_start, cur_end, cur_clean = None, None, False
        before = [(b, clean) for a, b, clean in intervals if b <= start]
        if before:  # the period starts inside a gap: planned if the run before it stopped cleanly
            cur_start = cur_end = start
            cur_clean = max(before, key=lambda e: (e[0], not e[1]))[1]  # at equal ends a crash wins
        for a, b, clean in intervals:  # union of the (sorted) intervals, clipped to [start, now]
            a, b = max(a, start), min(b, now)
            if b <= a:
                continue
            if cur_end is None or a > cur_end:
                if cur_end is not None:
                    up += cur_end - cur_start
                    if cur_clean:  # the gap [cur_end, a] follows a clean stop: planned
                        planned += a - cur_end
                        planned_stops += 1
                cur_start, cur_end, cur_clean = a, b, clean
            elif b > cur_end or (b == cur_end and not clean):  # at equal ends a crash wins
                cur_end, cur_clean = b, clean
        if cur_end is not None:
            up += cur_end - cur_start
        period = now - start
        counted = period - planned
        percent = 100.0 if counted <= 0 else min(100.0, 100.0 * up / counted)
        return {"period_start": iso_utc(start), "period_seconds": round(period, 3), "up_seconds": round(up, 3),
                "down_seconds": round(max(0.0, period - up - planned), 3),
                "planned_down_seconds": round(planned, 3), "planned_stops": planned_stops,
                "runs": len(intervals), "percent": percent}

    def percent(self, now: float | None = None) -> float:
        """Uptime over the period, in percent, planned downtime left out (100 with no history)."""
        return self.details(now)["percent"]
