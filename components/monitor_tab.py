"""The Monitor tab: live SLA status, latency / queue / GPU memory / throughput plots, recent
violations and decoder (step-cache) stats.

Everything shown comes from the process's ``SlaMonitor`` (``studio.sla``; formulas in
``studio.genius.sla``). A ``gr.Timer`` refreshes the tab every ``REFRESH_SECONDS`` while "Live" is
on. ``sla_status`` is also a Gradio API endpoint (api name ``/sla_status``), the twin of
``GET /v1/genius/sla/status``.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from components.session import user_error
from studio.errors import StudioError
from studio.genius.sla import SLA_LEVELS, HistoryPoint, SlaMonitor, SlaStatus

REFRESH_SECONDS = 2.0
VIOLATION_COLUMNS = ["timestamp", "level", "metric", "value", "threshold"]


@dataclass
class MonitorTab:
    """The tab's components, for wiring and for tests."""

    level: gr.Dropdown
    live: gr.Checkbox
    timer: gr.Timer
    badge: gr.HTML
    latency_plot: gr.LinePlot
    queue_plot: gr.LinePlot
    gpu_plot: gr.LinePlot
    throughput_plot: gr.LinePlot
    violations: gr.Dataframe
    details: gr.Markdown
    decoder: gr.JSON | gr.Markdown
    decoder_stats: Callable[[], dict] | None


def create_ui(studio, decoder_stats: Callable[[], dict] | None = None) -> MonitorTab:
    """Lay out the tab (call inside a ``gr.Tab``). ``decoder_stats`` returns the step-cache
    stats to show (steps computed / reused, measured speedup); None shows a placeholder."""
    monitor: SlaMonitor = studio.sla
    with gr.Row():
        level = gr.Dropdown(list(SLA_LEVELS), value=monitor.default_level, label="SLA level", scale=1,
                            elem_id="sla-level")
        live = gr.Checkbox(value=True, label=f"Live (refresh every {REFRESH_SECONDS:g} s)", scale=1,
                           elem_id="sla-live")
    badge = gr.HTML(_badge(None), elem_id="sla-badge")
    timer = gr.Timer(REFRESH_SECONDS, active=True)
    with gr.Row():
        latency_plot = gr.LinePlot(None, x="time", y="ms", color="percentile", height=260, y_lim=[0, None],
                                   title="Request latency (sliding-window percentiles)", y_title="ms",
                                   x_title="time (UTC)", elem_id="sla-latency-plot")
        throughput_plot = gr.LinePlot(None, x="time", y="rps", title="Throughput", height=260, y_lim=[0, None],
                                      y_title="requests / s", x_title="time (UTC)", elem_id="sla-throughput-plot")
    with gr.Row():
        queue_plot = gr.LinePlot(None, x="time", y="tasks", title="Queue depth (pending + running)", height=220,
                                 y_lim=[0, None], y_axis_format="d", y_title="tasks", x_title="time (UTC)",
                                 elem_id="sla-queue-plot")
        gpu_plot = gr.LinePlot(None, x="time", y="MiB", title="GPU memory allocated (0 = no CUDA device)",
                               height=220, y_lim=[0, None], y_axis_format=",.0f", y_title="MiB",
                               x_title="time (UTC)", elem_id="sla-gpu-plot")
    gr.Markdown("#### Recent violations (last 24 h, newest first)")
    violations = gr.Dataframe(pd.DataFrame(columns=VIOLATION_COLUMNS), interactive=False, wrap=True,
                              elem_id="sla-violations")
    with gr.Accordion("Window, uptime and generation details", open=False):
        details = gr.Markdown(elem_id="sla-details")
    gr.Markdown("#### Decoder (step cache) stats")
    if decoder_stats is None:
        decoder = gr.Markdown("Decoder stats are not available in this build.", elem_id="sla-decoder")
    else:
        decoder = gr.JSON(label="Step cache", elem_id="sla-decoder")
    return MonitorTab(level, live, timer, badge, latency_plot, queue_plot, gpu_plot, throughput_plot,
                      violations, details, decoder, decoder_stats)


def _badge(status: SlaStatus | None) -> str:
    if status is None:
        return '<div class="sla-badge">SLA: waiting for the first sample...</div>'
    ok = status.meets_sla
    color = "#15803d" if ok else "#b91c1c"
    verdict = "MEETS" if ok else "VIOLATES"
    level = SLA_LEVELS[status.target_level]
    return (
        f'<div class="sla-badge" data-meets="{str(ok).lower()}" style="display:flex;gap:1em;align-items:center;'
        f'flex-wrap:wrap"><span style="background:{color};color:white;padding:0.3em 0.8em;border-radius:0.5em;'
        f'font-weight:700">{verdict} {html.escape(status.target_level)} SLA</span>'
        f"<span>uptime <b>{status.uptime_percent:.3f}%</b> (&ge; {level.uptime_percent:g}%)</span>"
        f"<span>p99 <b>{status.latency_p99_ms:.1f} ms</b> (&le; {level.latency_p99_ms:g} ms)</span>"
        f"<span>errors <b>{status.error_rate_percent:.3f}%</b> (&le; {level.error_rate_percent:g}%)</span>"
        f"<span>p50 {status.latency_p50_ms:.1f} ms &middot; p95 {status.latency_p95_ms:.1f} ms &middot; "
        f"{status.current_throughput_rps:.2f} req/s</span></div>")


def _frames(points: list[HistoryPoint]) -> tuple[pd.DataFrame | None, ...]:
    # None, not an empty frame, until there is data: Gradio builds a plot's colour encoding from
    # the first non-empty value it gets, and an empty first frame leaves the lines invisible.
    if not points:
        return None, None, None, None
    times = pd.to_datetime([p.t for p in points], unit="s", utc=True)
    latency = pd.DataFrame({
        "time": list(times) * 3,
        "percentile": ["p50"] * len(points) + ["p95"] * len(points) + ["p99"] * len(points),
        "ms": [p.p50_ms for p in points] + [p.p95_ms for p in points] + [p.p99_ms for p in points],
    })
    queue = pd.DataFrame({"time": times, "tasks": [p.queue_depth for p in points]})
    gpu = pd.DataFrame({"time": times, "MiB": [p.gpu_memory_bytes / 2**20 for p in points]})
    throughput = pd.DataFrame({"time": times, "rps": [p.throughput_rps for p in points]})
    return latency, queue, gpu, throughput


def _details_markdown(details: dict) -> str:
    up, gen, totals = details["uptime"], details["generation"], details["totals_since_start"]
    return "\n".join([
        f"- **Window:** last {details['window_seconds']:g} s: {details['requests_in_window']} requests, "
        f"{details['errors_in_window']} 5xx, {details['throttled_in_window']} rate-limited (429), "
        f"{details['unavailable_in_window']} unavailable (503); {details['latency_samples']} latency samples.",
        f"- **Since this process started:** {totals['requests']} requests, {totals['errors']} 5xx, "
        f"{totals['throttled']} 429, {totals['unavailable']} 503.",
        f"- **Uptime:** {up['percent']:.4f}% of {up['period_seconds']:.0f} s since {up['period_start'] or 'now'} "
        f"({up['down_seconds']:.0f} s unplanned downtime over {up['runs']} recorded runs; planned downtime "
        f"{up.get('planned_down_seconds', 0):.0f} s after {up.get('planned_stops', 0)} clean stops, not counted).",
        f"- **Generation (last {gen['tasks']} finished tasks, not API latency):** {gen['failed']} failed; "
        f"p50 {gen['p50_seconds']:.2f} s, p95 {gen['p95_seconds']:.2f} s, max {gen['max_seconds']:.2f} s.",
    ])


def make_handlers(studio, decoder_stats: Callable[[], dict] | None = None):
    """The tab's functions bound to ``studio.sla``. Their docstrings become the API docs."""
    monitor: SlaMonitor = studio.sla

    def sla_status(level: str = "") -> dict:
        """SLA status: uptime, p50/p95/p99 latency, error rate, throughput, whether the level is
        met and its recent violations (same body as GET /v1/genius/sla/status).

        Args:
            level: best_effort, standard, premium or critical; empty for the server default.
        """
        try:
            return monitor.status(level or None).model_dump()
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None

    def refresh(level: str):
        try:
            status = monitor.status(level or None)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        points = monitor.history()
        if not points or monitor.now() - points[-1].t > 2 * monitor.sample_seconds:
            monitor.sample()  # the background sampler is not running (or lagging): sample now
            points = monitor.history()
        rows = pd.DataFrame([v.model_dump() for v in status.violations] or None, columns=VIOLATION_COLUMNS)
        if decoder_stats is None:
            decoder = gr.skip()
        else:
            try:
                decoder = decoder_stats()
            except Exception as error:  # another feature's bug must not stop the monitor
                decoder = {"error": f"decoder stats unavailable: {type(error).__name__}"}
        return (_badge(status), *_frames(points), rows, _details_markdown(monitor.details()), decoder)

    return sla_status, refresh


def create_event_handlers(tab: MonitorTab, studio) -> None:
    """Wire the timer, the level picker and the Live switch; expose ``sla_status`` to the API."""
    sla_status, refresh = make_handlers(studio, tab.decoder_stats)
    outputs = [tab.badge, tab.latency_plot, tab.queue_plot, tab.gpu_plot, tab.throughput_plot,
               tab.violations, tab.details, tab.decoder]
    common = dict(inputs=[tab.level], outputs=outputs, show_progress="hidden", api_visibility="private",
                  concurrency_limit=None, trigger_mode="always_last")
    tab.timer.tick(refresh, **common)
    tab.level.change(refresh, **common)
    tab.live.change(lambda on: gr.Timer(active=bool(on)), [tab.live], [tab.timer], api_visibility="private",
                    show_progress="hidden")
    gr.api(sla_status, api_name="sla_status")
