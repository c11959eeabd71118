"""Where a task's files live on disk and the URLs they are served at (part of the API contract)."""

from __future__ import annotations

from pathlib import Path

# kind -> (sub-folder, file suffix); the URL is /v1/<kind>/<task_id><suffix>.
MEDIA_KINDS = {"videos": ".mp4", "thumbnails": ".jpg", "previews": ".jpg"}


class MediaPaths:
    """File locations under one media folder, one sub-folder per kind."""

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


def media_url(kind: str, task_id: str) -> str:
    """The URL path a file is served at, e.g. ``/v1/videos/<id>.mp4``."""
    return f"/v1/{kind}/{task_id}{MEDIA_KINDS[kind]}"
