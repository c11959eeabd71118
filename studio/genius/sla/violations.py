"""The violation log: edge-triggered threshold crossings of a level's metrics, persisted in SQLite.

Given a level and the current values of its three metrics, records a violation when a metric
*goes from* within its limit *to* beyond it (a metric that stays broken is one violation), keeps
the newest ``max_violations`` rows, and lists those of a lookback period, newest first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, func, insert, select

from studio.db.schema import sla_violations
from studio.genius.sla.levels import SlaLevel, breaks, threshold
from studio.genius.sla.schema import SlaViolation, iso_utc
from studio.genius.sla.store import SlaStore

log = logging.getLogger("studio.genius.sla")  # the name the warnings had before the split

__all__ = ["ViolationLog"]

class ViolationLog:
    """Edge detection per (level, metric) in memory; the crossings themselves on disk.

    Args:
        store: the connection (shared with the uptime ledger).
        max_violations: rows kept (the oldest are deleted).
        lookback_seconds: how far back ``recent`` looks (24 h).
        clock: wall-clock source (``time.time``); tests inject their own.
    """

    def __init__(self, store: SlaStore, *, max_violations: int = 1000, lookback_seconds: float = 86400,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.max_violations = max_violations
        self.lookback_seconds = lookback_seconds
        self._clock = clock
        self._violating: dict[tuple[str, str], bool] = {}
        self._lock = threading.Lock()  # two evaluations at once must not both see the same edge

    def evaluate(self, level: SlaLevel, values: dict[str, float], now: float) -> None:
        """Compare each metric's value with the level's limit; record the new crossings."""
        new = []
        with self._lock:
            for metric, value in values.items():
                broken = breaks(level, metric, value)
                if broken and not self._violating.get((level.name, metric), False):
                    new.append((now, level.name, metric, value, threshold(level, metric)))
                self._violating[(level.name, metric)] = broken
        if new:
            with self.store.connection() as db:
                if db is None:
                    return
                db.execute(insert(sla_violations), [dict(zip(("at", "level", "metric", "value", "threshold"), row))
                                                    for row in new])
                newest = select(func.max(sla_violations.c.id)).scalar_subquery()
                db.execute(delete(sla_violations).where(sla_violations.c.id <= newest - self.max_violations))
            for _, level_name, metric, value, limit in new:
                log.warning("SLA violation (%s): %s = %.4g, threshold %.4g", level_name, metric, value, limit)

    def recent(self, level: str | None = None, limit: int = 100, now: float | None = None) -> list[SlaViolation]:
        """Recorded violations of ``level`` (all levels when None) from the lookback period,
        newest first."""
        now = self._clock() if now is None else now
        since = now - self.lookback_seconds
        v = sla_violations.c
        query = select(v.at, v.level, v.metric, v.value, v.threshold).where(v.at >= since)
        if level is not None:
            query = query.where(v.level == level)
        query = query.order_by(v.id.desc()).limit(int(limit))
        with self.store.connection() as db:
            if db is None:
                return []
            rows = db.execute(query).all()
        return [SlaViolation(timestamp=iso_utc(at), metric=metric, value=round(value, 4), threshold=thr,
                             level=lvl) for at, lvl, metric, value, thr in rows]
