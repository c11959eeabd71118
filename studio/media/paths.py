"""Where a task's files live on disk and the URLs they are served at (part of the API contract).

``MediaPaths`` is the media folder of one process. Every process writes a task's files here
first; with object storage (``studio.media.object_store``), a worker then ``publish``es them
and any process ``fetch``es a local copy of a file another process made. On one machine (or a
shared folder) both are no-ops.
"""

from __future__ import annotations

from pathlib import Path

# kind -> (sub-folder, file suffix); the URL is /v1/<kind>/<task_id><suffix>.
MEDIA_KINDS = {"videos": ".mp4", "thumbnails": ".jpg", "previews": ".jpg"}


class MediaPaths:
    """File locations under one media folder, one sub-folder per kind."""

    remote = False  # whether files live in object storage besides this folder

    def __init__(self, media_dir: Path):
        self.root = Path(media_dir)
        for kind in MEDIA_KINDS:
            (self.root / kind).mkdir(parents=True, exist_ok=True)

    def path(self, kind: str, task_id: str) -> Path:
        return self.root / kind / f"{task_id}{MEDIA_KINDS[kind]}"

    def video(self, task_id: str) -> Path:
        return self.path("videos", task_id)

    def thumbnail(self, task_id: str) -> Path:
        return self.path("thumbnails", task_id)

    def preview(self, task_id: str) -> Path:
        return self.path("previews", task_id)

    def publish(self, kind: str, task_id: str) -> None:
        """The file ``kind`` of ``task_id`` is complete here: make it reachable from every process."""

    def fetch(self, kind: str, task_id: str, fresh: bool = False) -> Path:
        """A local copy of a task's file, wherever it was made (``fresh``: not an older copy; for
        previews, which change during a run). Raises ``FileNotFoundError`` when it exists nowhere."""
        path = self.path(kind, task_id)
        if not path.is_file():
            raise FileNotFoundError(path)
        return path

    def remove(self, task_id: str) -> None:
        """Delete every file of ``task_id`` (a task forgotten from the Library), wherever it lives."""
        for kind in MEDIA_KINDS:
            self.path(kind, task_id).unlink(missing_ok=True)

    def publish_inputs(self, folder: Path) -> None:
        """A task's inputs folder (``data_dir/inputs/<id>``) is complete: make it reachable from every process."""

    def fetch_inputs(self, folder: Path) -> None:
        """Make sure a task's inputs folder is here (a worker on another machine than the submit)."""


def media_url(kind: str, task_id: str) -> str:
    """The URL path a file is served at, e.g. ``/v1/videos/<id>.mp4``."""
    return f"/v1/{kind}/{task_id}{MEDIA_KINDS[kind]}"
