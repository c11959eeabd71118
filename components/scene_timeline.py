"""The Scenes tab's timeline strip and shot thumbnails.

The strip shows the shots as planned, each as wide as its share of the edit, with the transition
between neighbours; it follows the shot table as it is edited. The thumbnails are the shots'
first frames, added as each shot task finishes during the edit.
"""

from __future__ import annotations

import html

from components.session import ui_file
from studio.core import Studio
from studio.jobs import store as st

MAX_LABEL_CHARS = 60  # a segment's title; the full prompt is its tooltip


def timeline_html(rows: list[list], transition: str) -> str:
    """The strip for shot rows [prompt, seconds] joined by ``transition`` (a type or ``auto``)."""
    shots = [(str(prompt or "").strip(), _seconds(seconds)) for prompt, seconds in rows]
    if not shots:
        return '<div class="scene-timeline scene-timeline-empty">No shots yet: add one.</div>'
    total = sum(seconds for _, seconds in shots) or 1.0
    parts = []
    for index, (prompt, seconds) in enumerate(shots):
        if index:
            parts.append(f'<div class="scene-cut" title="{html.escape(transition)} transition">'
                         f'{html.escape(_short(transition, 10))}</div>')
        label = html.escape(_short(prompt, MAX_LABEL_CHARS) or "(empty prompt)")
        parts.append(f'<div class="scene-shot" style="flex-grow: {seconds / total:.4f}" '
                     f'title="{html.escape(prompt)}"><b>{index + 1}</b> · {seconds:g} s<br>{label}</div>')
    return (f'<div class="scene-timeline" aria-label="Timeline: {len(shots)} shots, {total:g} s">'
            + "".join(parts) + "</div>")


def finished_shots(studio: Studio, shot_ids: list[str]) -> list[int]:
    """The places (0-based) of the shots of ``shot_ids`` that have completed: a cheap check, made
    at every poll of an edit."""
    return [index for index, shot_id in enumerate(shot_ids)
            if (task := studio.store.get(shot_id)) is not None and task.status == st.COMPLETED]


def shot_gallery(studio: Studio, shot_ids: list[str], prompts: list[str], finished: list[int]
                 ) -> list[tuple[str, str]]:
    """(thumbnail file, caption) of each ``finished`` shot, in order; each thumbnail is handed to
    Gradio (a copy), so this runs only when the gallery changes."""
    shown = []
    for index in finished:
        try:
            thumbnail = ui_file(studio.paths.fetch("thumbnails", shot_ids[index]))
        except FileNotFoundError:
            continue
        shown.append((thumbnail, f"{index + 1} · {_short(prompts[index], MAX_LABEL_CHARS)}"))
    return shown


def _seconds(value) -> float:
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        return 0.0


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
