"""Each part of ``studio.genius.sla`` on its own: the window without SQLite, the ledger and the
violation log without HTTP, the exporter without a monitor."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from studio.errors import InvalidRequest
from studio.genius.sla import SLA_LEVELS, LatencyWindow, SlaExporter, SlaStatus, SlaStore, UptimeLedger, ViolationLog
from studio.genius.sla.levels import ERROR_RATE, LATENCY_P99, UPTIME, breaks, level_named, threshold

T0 = 1_750_000_000.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_levels_compare_uptime_from_below_and_the_others_from_above():
    premium = level_named("Premium ")
    assert threshold(premium, UPTIME) == 99.9 and threshold(premium, LATENCY_P99) == 1000.0
    assert breaks(premium, UPTIME, 99.0) and not breaks(premium, UPTIME, 99.95)
    assert breaks(premium, ERROR_RATE, 0.2) and not breaks(premium, LATENCY_P99, 1000.0)
    assert level_named(None, "critical") is SLA_LEVELS["critical"]
    with pytest.raises(InvalidRequest):
        level_named("gold")


def test_latency_window_alone_with_a_fake_clock():
    clock = Clock()
    window = LatencyWindow(window_seconds=10, throughput_seconds=4, clock=clock)
    for second in range(8):                  # 8 seconds of 5 requests, one 5xx and one 429 each
        clock.t = T0 + second
        for i, status in enumerate((200, 200, 500, 429, 404)):
            window.record((i + 1) / 1000, status)
    clock.t = T0 + 8
    snap = window.snapshot()
    assert snap.count == 40 and snap.errors == 8 and snap.throttled == 8 and snap.unavailable == 0
    assert snap.error_rate_percent == pytest.approx(20.0)           # 404 is the client's, 429 is not 5xx
    assert snap.latency_ms() == pytest.approx((3.0, 5.0, 5.0))      # nearest rank of 1..5 ms
    assert snap.throughput_rps == pytest.approx(5.0)                # the 4 complete seconds before now
    clock.t = T0 + 15                                               # seconds 0..5 slid out of the window
    assert window.snapshot().count == 10
    assert window.totals() == {"requests": 40, "errors": 8, "throttled": 8, "unavailable": 0}

    window.record_generation(4.0)
    window.record_generation(2.0)
    window.record_generation(9.0, ok=False)
    stats = window.generation_stats()
    assert stats["tasks"] == 3 and stats["failed"] == 1 and stats["p50_seconds"] == 2.0
    assert stats["max_seconds"] == 4.0 and stats["mean_seconds"] == 3.0


def test_uptime_ledger_alone_reports_planned_downtime_apart(tmp_path):
    clock = Clock()
    db = tmp_path / "ledger.sqlite3"
    first_store, second_store = SlaStore(db), SlaStore(db)   # two processes, one file
    first = UptimeLedger(first_store, clock=clock)
    assert first.details()["runs"] == 0 and first.percent() == 100.0  # no history yet
    first.start()
    clock.t = T0 + 100
    first.stop()                                             # a clean stop: planned
    clock.t = T0 + 160
    second = UptimeLedger(second_store, clock=clock)
    second.start()
    clock.t = T0 + 200
    details = second.details()
    assert details["runs"] == 2 and details["planned_stops"] == 1
    assert details["planned_down_seconds"] == pytest.approx(60.0) and details["down_seconds"] == 0.0
    assert details["up_seconds"] == pytest.approx(140.0) and second.percent() == 100.0
    second.heartbeat()                                       # then it dies: unplanned from here
    clock.t = T0 + 260
    assert first.details(now=T0 + 260)["down_seconds"] == pytest.approx(60.0)
    assert first.percent(now=T0 + 260) == pytest.approx(140 / 200 * 100)
    first_store.close()
    second_store.close()
    assert second.details()["runs"] == 0                     # a closed store reads as no history
    with pytest.raises(RuntimeError):
        UptimeLedger(first_store, clock=clock).start()


def test_violation_log_alone_is_edge_triggered_and_persisted(tmp_path):
    clock = Clock()
    db = tmp_path / "violations.sqlite3"
    store = SlaStore(db)
    log = ViolationLog(store, max_violations=2, clock=clock)
    critical = SLA_LEVELS["critical"]
    ok = {UPTIME: 100.0, LATENCY_P99: 10.0, ERROR_RATE: 0.0}
    log.evaluate(critical, {**ok, LATENCY_P99: 500.0}, T0)
    log.evaluate(critical, {**ok, LATENCY_P99: 900.0}, T0 + 1)   # still broken: no new violation
    assert [(v.metric, v.value, v.threshold) for v in log.recent()] == [(LATENCY_P99, 500.0, 200.0)]
    log.evaluate(critical, ok, T0 + 2)                           # recovers ...
    log.evaluate(critical, {**ok, ERROR_RATE: 1.0, LATENCY_P99: 300.0}, T0 + 3)  # ... breaks twice
    assert len(log.recent("critical", now=T0 + 3)) == 2          # the oldest beyond max_violations went
    assert log.recent("premium") == []
    store.close()
    reopened = ViolationLog(SlaStore(db), clock=clock)
    assert {v.metric for v in reopened.recent()} == {LATENCY_P99, ERROR_RATE}
    assert reopened.recent(now=T0 + 86400 + 10) == []           # older than the lookback


class FakeSource:
    """The exporter's view of a monitor, with fixed numbers."""

    default_level = "standard"
    window_seconds = 300.0

    def status(self, level=None, now=None) -> SlaStatus:
        return SlaStatus(target_level=level or self.default_level, meets_sla=True, uptime_percent=99.5,
                         latency_p50_ms=1.0, latency_p95_ms=2.0, latency_p99_ms=3.0, error_rate_percent=0.0,
                         current_throughput_rps=7.0, violations=[])

    def queue_depth(self) -> int:
        return 2

    def gpu_memory_bytes(self) -> int:
        return 0

    def workers(self) -> list:
        return []  # embedded: no Celery workers

    def ready_by_queue(self) -> dict[str, int]:
        return {}


def test_exporter_alone_counts_events_and_reads_gauges_at_scrape():
    exporter = SlaExporter(FakeSource())
    exporter.observe_request(0.02, 200, "/v1/x")
    exporter.observe_request(0.02, 429, "/v1/x")
    exporter.observe_generation(12.0, ok=False, kind="v2v")
    families = {f.name: f for f in text_string_to_metric_families(exporter.text().decode())}
    requests = {(s.labels["route"], s.labels["status_class"]): s.value
                for s in families["echoel_http_requests"].samples if s.name.endswith("_total")}
    assert requests == {("/v1/x", "2xx"): 1.0, ("/v1/x", "4xx"): 1.0}
    assert [s.labels["reason"] for s in families["echoel_http_requests_refused"].samples
            if s.name.endswith("_total")] == ["rate_limited"]
    assert any(s.labels.get("kind") == "v2v" and s.labels.get("outcome") == "failed"
               for s in families["echoel_task_generation_seconds"].samples)
    assert families["echoel_uptime_percent"].samples[0].value == 99.5
    assert families["echoel_sla_throughput_rps"].samples[0].value == 7.0
    assert families["echoel_queue_depth"].samples[0].value == 2
    bare = SlaExporter().text().decode()                        # events only: no scrape-time gauges
    assert "echoel_uptime_percent" not in bare and "echoel_http_requests" in bare
