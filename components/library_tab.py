"""The Library tab: everything this visitor made, newest first, kept across reloads (the owner is
the visitor's signed cookie, ``studio.ui_access``). Pick a video to play, download or delete it,
fill Generate with its settings again, or send it to a video tool: no task id is typed anywhere.

Thin over the core: ``Studio.library`` lists (the same call as ``GET /v1/tasks``), ``Studio.forget``
deletes (``DELETE /v1/tasks/{id}``), ``Studio.spec`` reads a task's typed request back.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from components.region_picker import source_frame
from components.scene_tab import append_shot
from components.session import owner_of, ui_file, ui_files, user_error
from studio.core import Studio
from studio.engine.request import GenerationSpec
from studio.errors import StudioError
from studio.views import TaskSummary

PAGE = 24  # tasks per page: four rows of six thumbnails
#: The video tools a finished video can be sent to: (button label, tab id).
SEND_TO = (("V2V", "v2v"), ("Inpaint", "inpaint"), ("Lip-Sync", "lipsync"), ("Consistency", "consistency"))


@dataclass
class LibraryTab:
    """The tab's components, for wiring and for tests."""

    gallery: gr.Gallery
    refresh: gr.Button
    older: gr.Button
    newest: gr.Button
    page_line: gr.Markdown
    video: gr.Video
    details: gr.Markdown
    download: gr.DownloadButton
    reuse: gr.Button
    delete: gr.Button
    send: dict[str, gr.Button]  # tab id -> its "Send to" button
    send_to_scenes: gr.Button  # a Generate video's prompt becomes a shot
    continue_video: gr.Button  # Generate, starting from the video's last frame
    entries: gr.JSON  # the shown page's task ids, in gallery order (hidden; part of the API's answer)
    cursor: gr.Textbox  # the shown page's next_cursor (hidden; part of the API's answer)
    selected: gr.Textbox


def create_ui(studio: Studio) -> LibraryTab:
    gr.Markdown("Everything you made here, newest first. It stays after a reload. Pick a video to play, "
                "download, reuse or send it on.")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Your videos", columns=6, height=420, object_fit="cover", allow_preview=False,
                                 elem_id="library-gallery")
            with gr.Row():
                newest = gr.Button("Newest", size="sm", elem_id="library-newest")
                older = gr.Button("Older", size="sm", elem_id="library-older")
                refresh = gr.Button("Refresh", size="sm", elem_id="library-refresh")
            page_line = gr.Markdown(elem_id="library-page")
        with gr.Column(scale=2):
            video = gr.Video(label="Video", interactive=False, elem_id="library-video")
            details = gr.Markdown("Pick a video.", elem_id="library-details")
            selected = gr.Textbox(label="Task id", interactive=False, elem_id="library-task-id")
            with gr.Row():
                download = gr.DownloadButton("Download", size="sm", elem_id="library-download")
                reuse = gr.Button("Reuse settings in Generate", size="sm", elem_id="library-reuse")
                delete = gr.Button("Delete", size="sm", variant="stop", elem_id="library-delete")
            with gr.Row():
                send = {tab: gr.Button(f"Send to {label}", size="sm", elem_id=f"library-send-{tab}")
                        for label, tab in SEND_TO}
                send_to_scenes = gr.Button("Send to Scenes", size="sm", elem_id="library-send-scene")
                continue_video = gr.Button("Continue video", size="sm", elem_id="library-continue")
    entries = gr.JSON([], visible=False, elem_id="library-entries")
    cursor = gr.Textbox(visible=False, elem_id="library-cursor")
    return LibraryTab(gallery, refresh, older, newest, page_line, video, details, download, reuse, delete, send,
                      send_to_scenes, continue_video, entries, cursor, selected)


def _caption(entry: TaskSummary) -> str:
    words = entry.title if len(entry.title) <= 48 else entry.title[:47] + "…"
    return words if entry.status == "completed" else f"{words} ({entry.status})"


def make_handlers(studio: Studio):
    """The tab's functions (also its Gradio API: ``/library``, ``/library_item``, ``/delete_from_library``)."""

    def library(cursor: str | None = None, request: gr.Request = None) -> tuple:
        """Your videos, newest first, one page at a time.

        Args:
            cursor: where the page starts: empty for the newest, else the cursor a page returned.

        Returns:
            Gallery items (thumbnail, caption), the page's task ids, the next page's cursor and
            a line saying what is shown.
        """
        owner = owner_of(studio, request)
        try:
            page = studio.library(owner, limit=PAGE, cursor=cursor or None)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        shown = [entry for entry in page.tasks if entry.thumbnail_url]
        thumbnails = ui_files([studio.media_file("thumbnails", e.task_id, owner) for e in shown]) if shown else []
        items = list(zip(thumbnails, [_caption(e) for e in shown]))
        unfinished = len(page.tasks) - len(shown)
        line = (f"{len(shown)} video(s)" + (f"; {unfinished} task(s) without a video yet (running, failed or "
                                            "cancelled)" if unfinished else "")
                + ("; older ones on the next page" if page.next_cursor else "")) if page.tasks else \
            "Nothing here yet: make a video in Generate."
        return items, [e.task_id for e in shown], page.next_cursor or "", line

    def library_item(task_id: str, request: gr.Request = None) -> tuple:
        """One of your videos: the file, what it is and how it was made.

        Args:
            task_id: the task's id (from /library).

        Returns:
            The video file, a description, and the file again for download.
        """
        owner = owner_of(studio, request)
        try:
            status = studio.status(task_id, owner)
            spec = studio.spec(task_id, owner)
            video = ui_file(studio.media_file("videos", task_id, owner))
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        lines = [f"**{status.status}** ({status.elapsed_seconds:.0f} s of work)"]
        if isinstance(spec, GenerationSpec):
            lines.insert(0, f"“{spec.prompt}”")
            lines.append(f"`{spec.model}`, seed {spec.seed}, {spec.duration_seconds:g} s at {spec.fps} fps, "
                         f"{spec.resolution} {spec.aspect_ratio}, {spec.num_inference_steps} steps")
        return video, "\n\n".join(lines), video

    def delete_from_library(task_id: str, request: gr.Request = None) -> str:
        """Delete one of your finished tasks and its files.

        Args:
            task_id: the task's id (from /library).

        Returns:
            What happened.
        """
        try:
            studio.forget(task_id, owner_of(studio, request))
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        return f"Deleted {task_id}."

    return library, library_item, delete_from_library


def create_event_handlers(tab: LibraryTab, studio: Studio, demo: gr.Blocks, tabs: gr.Tabs, page: gr.Tab,
                          generate_inputs: list, sources: dict[str, gr.Textbox], start_image: gr.Image,
                          start_images: gr.Accordion, scenes: gr.Dataframe) -> None:
    """Wire the tab. ``tabs``: the page's tab set (send-to switches to the tool); ``page``: this
    tab (opening it shows what was made since); ``generate_inputs``:
    the Generate tab's inputs, in its handler's order (Reuse fills them); ``sources``: each video
    tool's source task id box, by tab id (Send to fills it); ``start_image`` and ``start_images``:
    Generate's first frame and its accordion (Continue video); ``scenes``: the Scenes shot table."""
    library, library_item, delete_from_library = make_handlers(studio)
    page_outputs = [tab.gallery, tab.entries, tab.cursor, tab.page_line]
    tab.refresh.click(library, None, page_outputs, api_name="library")  # first: the public one keeps the name
    demo.load(library, None, page_outputs, api_visibility="private")  # after a reload: still there
    page.select(library, None, page_outputs, api_visibility="private")  # and what was made since
    tab.newest.click(library, None, page_outputs, api_visibility="private")

    def older(cursor: str | None, request: gr.Request) -> tuple:
        return library(cursor, request) if cursor else (gr.skip(),) * 4

    tab.older.click(older, tab.cursor, page_outputs, api_visibility="private")

    def pick(entries: list[str], event: gr.SelectData) -> str:
        return entries[event.index] if 0 <= event.index < len(entries) else ""

    tab.gallery.select(pick, tab.entries, tab.selected, api_visibility="private").then(
        library_item, tab.selected, [tab.video, tab.details, tab.download], api_name="library_item")
    tab.delete.click(delete_from_library, tab.selected, tab.details, api_name="delete_from_library").then(
        library, None, page_outputs, api_visibility="private").then(
        lambda: (None, None, ""), None, [tab.video, tab.download, tab.selected], api_visibility="private")
    tab.reuse.click(_reuse(studio, len(generate_inputs)), tab.selected, [*generate_inputs, tabs],
                    api_visibility="private")
    for tab_id, button in tab.send.items():
        button.click(_send(tab_id), tab.selected, [sources[tab_id], tabs], api_visibility="private")
    tab.send_to_scenes.click(_send_to_scenes(studio), [tab.selected, scenes], [scenes, tabs],
                             api_visibility="private")
    tab.continue_video.click(_continue(studio, generate_inputs, start_image), tab.selected,
                             [*generate_inputs, start_images, tabs], api_visibility="private")


#: Generate's inputs, in its handler's order, that a task's settings fill (the rest keep their values).
REUSED = ("prompt", "negative_prompt", "duration_seconds", "fps", "resolution", "aspect_ratio", "genre", "seed",
          "guidance_scale", "num_inference_steps", "model", "preview_every_n_steps")


def _reuse(studio: Studio, inputs: int):
    def reuse(task_id: str, request: gr.Request = None) -> list:
        spec = _generation_spec(studio, task_id, request)
        if spec is None:
            raise user_error("Only a Generate video has settings to reuse; send this one to a video tool instead.")
        values = [getattr(spec, name) for name in REUSED]
        return values + [gr.skip()] * (inputs - len(values)) + [gr.Tabs(selected="generate")]

    return reuse


def _generation_spec(studio: Studio, task_id: str, request: gr.Request | None) -> GenerationSpec | None:
    """The picked task's stored request if it is a generation (None for the video tools' results)."""
    if not task_id:
        raise user_error("Pick a video first.")
    try:
        spec = studio.spec(task_id, owner_of(studio, request))
    except StudioError as error:
        raise user_error(error.detail, title=error.title) from None
    return spec if isinstance(spec, GenerationSpec) else None


def _send_to_scenes(studio: Studio):
    def send_to_scenes(task_id: str, table, request: gr.Request = None) -> tuple:
        spec = _generation_spec(studio, task_id, request)
        if spec is None:
            raise user_error("Only a Generate video has a prompt to add as a shot.")
        return append_shot(table, spec.prompt, spec.duration_seconds), gr.Tabs(selected="scene")

    return send_to_scenes


def _continue(studio: Studio, inputs: list, start_image: gr.Image):
    """Continue video: Generate starts from the picked video's last frame (image-to-video; a
    text-only model gives way to one that takes it), with a generation's settings and a new seed."""
    image_at = next(i for i, component in enumerate(inputs) if component is start_image)

    def continue_video(task_id: str, request: gr.Request = None) -> list:
        spec = _generation_spec(studio, task_id, request)
        try:
            last_frame = source_frame(studio, owner_of(studio, request), None, task_id, 1.0)
        except StudioError as error:
            raise user_error(error.detail, title=error.title) from None
        values = [gr.skip()] * len(inputs)
        if spec is not None:
            values[:len(REUSED)] = [getattr(spec, name) for name in REUSED]
            values[REUSED.index("seed")] = -1  # what comes next is a new take, not the same one
        values[image_at] = last_frame
        return values + [gr.Accordion(open=True), gr.Tabs(selected="generate")]

    return continue_video


def _send(tab_id: str):
    def send(task_id: str) -> tuple:
        if not task_id:
            raise user_error("Pick a video first.")
        return task_id, gr.Tabs(selected=tab_id)

    return send
