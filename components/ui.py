"""The whole Gradio UI: a header and one tab per feature, each built by its own module."""

from __future__ import annotations

import gradio as gr

from components import (
    batch_tab,
    consistency_tab,
    generate_tab,
    inpaint_tab,
    library_tab,
    lipsync_tab,
    monitor_tab,
    orchestrator_tab,
    scene_tab,
    v2v_tab,
)
from studio.core import Studio

TITLE = "Echoelmusic Video Studio"


def build_ui(studio: Studio) -> gr.Blocks:
    """The Blocks app for ``studio`` (tabs are added here as features land)."""
    # delete_cache: Gradio copies every preview and video it serves; drop copies older than a day.
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# {TITLE}\nText-to-video with Wan 2.x through diffusers. "
                    "REST API at [/docs](/docs); Gradio API under \"Use via API\" below.")
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                generate = generate_tab.create_ui(studio)
            with gr.Tab("Library", id="library") as library_page:
                library = library_tab.create_ui(studio)
            with gr.Tab("Batch", id="batch"):
                batch = batch_tab.create_ui(studio)
            with gr.Tab("Scenes", id="scene"):
                scene = scene_tab.create_ui(studio)
            with gr.Tab("Inpaint", id="inpaint"):
                inpaint = inpaint_tab.create_ui(studio)
            with gr.Tab("Lip-Sync", id="lipsync"):
                lipsync = lipsync_tab.create_ui(studio)
            with gr.Tab("Consistency", id="consistency"):
                consistency = consistency_tab.create_ui(studio)
            with gr.Tab("V2V", id="v2v"):
                v2v = v2v_tab.create_ui(studio)
            # The operator's tools, out of the creators' way: which model fits a budget, and the SLA.
            with gr.Tab("Admin", id="admin"):
                with gr.Tabs():
                    with gr.Tab("Model Orchestrator", id="orchestrator"):
                        orchestrator = orchestrator_tab.create_ui(studio)
                    with gr.Tab("Monitor", id="monitor"):
                        monitor = monitor_tab.create_ui(studio, decoder_stats=studio.decoder_stats.snapshot)
        generate_tab.create_event_handlers(generate, studio, demo)
        batch_tab.create_event_handlers(batch, studio)
        orchestrator_tab.create_event_handlers(orchestrator, studio)
        inpaint_tab.create_event_handlers(inpaint, studio)
        lipsync_tab.create_event_handlers(lipsync, studio)
        consistency_tab.create_event_handlers(consistency, studio, demo)
        v2v_tab.create_event_handlers(v2v, studio)
        scene_tab.create_event_handlers(scene, studio)
        monitor_tab.create_event_handlers(monitor, studio)
        sources = {"v2v": v2v.source, "inpaint": inpaint.source, "lipsync": lipsync.source,
                   "consistency": consistency.source}
        library_tab.create_event_handlers(library, studio, demo, tabs, library_page, generate.inputs,
                                          {tab: picker.task_id for tab, picker in sources.items()},
                                          generate.first_image, generate.images, scene.inputs[0])
    return demo
