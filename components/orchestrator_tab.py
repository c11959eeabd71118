"""The Model Orchestrator tab: which model to run for a prompt, duration, resolution and GPU budget.

A thin adapter over ``studio.genius.orchestrator.selection.select_model`` (formulas and rules documented
there), the twin of ``POST /v1/genius/orchestrator/select-model``; its Gradio API name is
``/select_model``. ``attach_auto_hint`` lets the Generate tab show the recommendation and its
reasons while its model dropdown is on "Auto".
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr
from pydantic import ValidationError

from components.session import user_error
from components.widgets import bounds, choices, default
from studio.engine.request import GenerationRequest, describe_validation_error, parse_model
from studio.errors import StudioError
from studio.genius.orchestrator.schema import SelectModelRequest, SelectModelResponse
from studio.genius.orchestrator.selection import choose_model, select_model

AUTO_MODEL = "auto"
#: The Generate tab's dropdown entry for ``model="auto"``: (label, value).
AUTO_CHOICE = ("Auto (Model Orchestrator picks)", AUTO_MODEL)
ALTERNATIVE_COLUMNS = ["model", "vram_gb", "speed_factor"]


@dataclass
class OrchestratorTab:
    """The tab's components, for wiring and for tests."""

    inputs: list[gr.components.Component]
    button: gr.Button
    recommendation: gr.Markdown
    reasons: gr.Markdown
    alternatives: gr.Dataframe
    details: gr.JSON


def create_ui(studio) -> OrchestratorTab:
    """Lay out the tab (call inside a ``gr.Tab``)."""
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", lines=3, max_length=2000, elem_id="orch-prompt",
                                placeholder="A knight rides through a forest, then the camera pans to a castle")
            duration = gr.Slider(**bounds(SelectModelRequest, "duration_seconds"), step=0.5,
                                 label="Duration (seconds)", elem_id="orch-duration")
            resolution = gr.Dropdown(choices(SelectModelRequest, "target_resolution"),
                                     value=default(SelectModelRequest, "target_resolution"),
                                     label="Target resolution", elem_id="orch-resolution")
            # minimum 0, not the field's 1: the widget's 0 means "no budget given" (sent as None)
            max_vram = gr.Number(value=None, minimum=0, label="Max VRAM (GiB; 0 = this server's free GPU memory)",
                                 elem_id="orch-vram")
            prefer_quality = gr.Checkbox(value=default(SelectModelRequest, "prefer_quality"),
                                         label="Prefer quality (largest model that fits and finishes within 30 min)",
                                         elem_id="orch-quality")
            button = gr.Button("Recommend a model", variant="primary", elem_id="orch-run")
        with gr.Column(scale=1):
            recommendation = gr.Markdown("Enter a prompt and press *Recommend a model*.", elem_id="orch-result")
            alternatives = gr.Dataframe(headers=ALTERNATIVE_COLUMNS, label="Alternatives (speed_factor > 1: faster)",
                                        interactive=False, elem_id="orch-alternatives")
            with gr.Accordion("Reasons", open=True):
                reasons = gr.Markdown(elem_id="orch-reasons")
            details = gr.JSON(label="Response (as REST returns it)", elem_id="orch-json")
    return OrchestratorTab([prompt, duration, resolution, max_vram, prefer_quality], button, recommendation,
                           reasons, alternatives, details)


def _headline(answer: SelectModelResponse) -> str:
    return (f"**Recommended: `{answer.recommended_model}`** — {answer.complexity} prompt "
            f"(confidence {answer.confidence:.2f}), about {answer.estimated_time_seconds:.0f} s, "
            f"{answer.vram_required_gb:.1f} GiB peak GPU memory.")


def _reasons_markdown(reasons: list[str]) -> str:
    return "\n".join(f"- {html.escape(reason)}" for reason in reasons)


def make_handlers(studio):
    """The tab's function, bound to ``studio``; its docstring becomes the API docs."""

    def select_model_ui(prompt: str, duration_seconds: float = 4.0, target_resolution: str = "720p",
                        max_vram_gb: float | None = None, prefer_quality: bool = False):
        """Recommend a model for a prompt on a GPU budget, with time, memory and reasons.

        Args:
            prompt: text description (1-2000 characters).
            duration_seconds: video length, 1-60 s.
            target_resolution: 480p, 720p, 1080p, 1440p, 4k or 8k.
            max_vram_gb: GPU memory budget in GiB; empty or 0 for this server's free GPU memory.
            prefer_quality: pick the largest model that fits and finishes within 30 minutes.

        Returns:
            Headline, alternatives table, reasons, and the full response (the REST body).
        """
        try:
            request = parse_model(SelectModelRequest, {
                "prompt": prompt or "", "duration_seconds": duration_seconds, "target_resolution": target_resolution,
                "max_vram_gb": max_vram_gb if max_vram_gb else None, "prefer_quality": bool(prefer_quality)})
        except StudioError as error:  # the core's InvalidRequest names the field and its bound
            raise user_error(error.detail, title=error.title) from None
        answer = select_model(studio.services.costs, request)
        rows = [[a.model, a.vram_gb, a.speed_factor] for a in answer.alternatives]
        return _headline(answer), rows, _reasons_markdown(answer.reasons), answer.model_dump()

    return select_model_ui


def create_event_handlers(tab: OrchestratorTab, studio) -> None:
    """Wire the button; the function is the Gradio API endpoint ``/select_model``."""
    handler = make_handlers(studio)
    tab.button.click(handler, tab.inputs, [tab.recommendation, tab.alternatives, tab.reasons, tab.details],
                     api_name="select_model", concurrency_limit=None)


# -- the Generate tab's "Auto" choice -----------------------------------------------------------

def auto_recommendation(studio, model: str, prompt: str, duration_seconds: float, resolution: str,
                        guidance_scale: float, num_inference_steps: int) -> str:
    """Markdown naming the model ``model="auto"`` would run and why; empty unless ``model`` is
    ``auto``. Uses the same ``choose_model`` as the generate path."""
    if model != AUTO_MODEL:
        return ""
    if not (prompt or "").strip():
        return "*Auto:* enter a prompt to see which model will run."
    try:
        request = GenerationRequest(prompt=prompt, duration_seconds=duration_seconds, resolution=resolution,
                                    guidance_scale=guidance_scale, num_inference_steps=int(num_inference_steps))
    except ValidationError as exc:
        return f"*Auto:* {html.escape(describe_validation_error(GenerationRequest, exc.errors()))}"
    model_id, reasons = choose_model(studio.services.costs, request)
    return f"**Auto will run `{model_id}`**\n\n{_reasons_markdown(reasons)}"


def attach_auto_hint(studio, *, model: gr.Dropdown, prompt: gr.Textbox, duration: gr.Slider,
                     resolution: gr.Dropdown, guidance: gr.Slider, steps: gr.Slider, output: gr.Markdown) -> None:
    """Refresh ``output`` (hidden unless "Auto" is chosen) when any input of the choice changes.
    Private UI plumbing: not an API endpoint."""

    def hint(model_value, prompt_value, duration_value, resolution_value, guidance_value, steps_value):
        text = auto_recommendation(studio, model_value, prompt_value, duration_value, resolution_value,
                                   guidance_value, steps_value)
        return gr.update(value=text, visible=bool(text))

    gr.on([model.change, prompt.blur, duration.release, resolution.change, guidance.release, steps.release], hint,
          [model, prompt, duration, resolution, guidance, steps], output,
          api_visibility="private", show_progress="hidden", concurrency_limit=None)
