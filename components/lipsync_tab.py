"""The Lip-Sync tab: make the face in a video speak an audio clip.

A thin adapter over ``studio.genius.lipsync.submit`` (api name ``/lipsync``). "Use the model" also
repaints the face with Wan Animate, driven by the lip-synced face crops.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from components import examples
from components.edit_common import SourcePicker, ends_truthfully, or_skip, source_of, source_picker, submit_and_follow
from components.region_picker import RegionPicker
from components.region_picker import attach as region_picker_events
from components.region_picker import region_picker
from components.session import user_error
from components.widgets import bounds, choices, default
from studio.core import Studio
from studio.engine.request import parse_model
from studio.genius.lipsync.schema import LipSyncRequest
from studio.genius.lipsync.submit import submit


@dataclass
class LipSyncTab:
    inputs: list
    run_button: gr.Button
    outputs: list
    source: SourcePicker  # where the Library sends a video
    region: RegionPicker  # the face box drawn on a frame instead of typed


def create_ui(studio: Studio) -> LipSyncTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            source = source_picker("lipsync")
            audio = gr.Audio(label="Speech", type="filepath", sources=["upload", "microphone"],
                             elem_id="lipsync-audio")
            expression = gr.Radio(choices(LipSyncRequest, "expression"), value=default(LipSyncRequest, "expression"),
                                  label="Expression")
            intensity = gr.Slider(**bounds(LipSyncRequest, "intensity"), step=0.05, label="Intensity")
            face_region = gr.Textbox(label="Face region x1, y1, x2, y2 (optional)", elem_id="lipsync-face",
                                     placeholder="empty: the face is detected")
            region = region_picker("lipsync", "face")
            with gr.Accordion("Model path (Wan Animate)", open=False):
                use_model = gr.Checkbox(False, label="Repaint the face with Wan Animate, driven by the lip-synced "
                                                     "face crops")
                model = gr.Dropdown(choices(LipSyncRequest, "model"), value=None,
                                    label="Model (empty: the server default)")
            run_button = gr.Button("Lip-sync", variant="primary", elem_id="lipsync-run")
            gr.Examples([[examples.CLIP, examples.SPEECH, "happy", "200, 20, 300, 120"]],
                        inputs=[source.upload, audio, expression, face_region], label=examples.LABEL)
        with gr.Column(scale=1):
            status = gr.Markdown("Ready.", elem_id="lipsync-status")
            video = gr.Video(label="Result", interactive=False, elem_id="lipsync-video")
            timeline = gr.LinePlot(x="time", y="viseme", label="Viseme timeline", x_title="time (s)",
                                   elem_id="lipsync-timeline")
            details = gr.JSON(label="Result metadata")
    inputs = [source.upload, source.task_id, audio, expression, intensity, face_region, use_model, model]
    return LipSyncTab(inputs, run_button, [status, video, timeline, details], source, region)


def viseme_timeline(segments: list[dict]) -> pd.DataFrame:
    """The track as a step line: each segment's start and end at its viseme."""
    return pd.DataFrame([{"time": s[edge], "viseme": s["viseme"]}
                         for s in segments for edge in ("start_seconds", "end_seconds")],
                        columns=["time", "viseme"])


def _face_region(text: str) -> list[float] | None:
    if not text.strip():
        return None
    try:
        return [float(v) for v in re.split(r"[\s,;]+", text.strip().strip("[]()")) if v]
    except ValueError:
        raise user_error("face_region: give four numbers x1, y1, x2, y2 in pixels", title="Validation error") from None


def make_handler(studio: Studio):
    def lipsync_video(video: str | None, task_id: str = "", audio: str | None = None, expression: str = "neutral",
                      intensity: float = 1.0, face_region: str = "", use_model: bool = False,
                      model: str | None = None, request: gr.Request = None) -> Iterator[tuple]:
        """Lip-sync a video to speech: the mouth follows visemes read from the audio.

        Args:
            video: input video file (or leave empty and give task_id).
            task_id: a finished task whose video is lip-synced.
            audio: the speech (wav, mp3, flac, ogg, m4a); the output is as long as it.
            expression: neutral, happy, sad, surprised or angry.
            intensity: scale of the mouth movement, 0 to 2.
            face_region: "x1, y1, x2, y2" of the face in pixels; empty to detect it.
            use_model: also repaint the face with Wan Animate (the model path).
            model: the model path's Animate model (empty: the server default).

        Returns:
            Per update: status text, result video, viseme timeline, result metadata.
        """
        source_task, upload = source_of(task_id, video)
        if not audio:
            raise user_error("audio: upload or record the speech to sync to", title="Validation error")
        body = {"task_id": source_task, "audio_base64": base64.b64encode(Path(audio).read_bytes()).decode(),
                "expression": expression, "intensity": float(intensity), "face_region": _face_region(face_region)}
        if use_model:
            body.update(use_model=True, model=model or None)
        updates = submit_and_follow(studio, request, lambda owner: submit(
            studio.services, parse_model(LipSyncRequest, body), owner, upload=upload))
        for status, path, result in updates:
            timeline = viseme_timeline(result["metadata"]["details"]["viseme_track"]) if result else None
            yield or_skip(status, path, timeline, result)

    return lipsync_video


def create_event_handlers(tab: LipSyncTab, studio: Studio) -> None:
    region_picker_events(tab.region, studio, tab.source, fill=lambda box, frame: [", ".join(map(str, box))],
                         outputs=[tab.inputs[5]])  # the face region box
    tab.run_button.click(ends_truthfully(make_handler(studio), status=0, outputs=4), tab.inputs, tab.outputs,
                         api_name="lipsync", concurrency_limit=None)
