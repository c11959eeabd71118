"""Media in S3-compatible object storage (``ECHOEL_MEDIA_URL=s3://bucket/prefix``), for API
processes and workers on machines that share no folder.

Every process keeps writing a task's files to its own media folder (``MediaPaths``); this adds
the crossing: a worker uploads a finished video and thumbnail before the task is recorded
completed (so a result never names a file that is not there), and previews as they are made;
the API process that submits an edit uploads the task's inputs folder before the task is
queued. Any process that needs a file another made fetches a local copy once (immutable files)
or every time (previews). API processes serve downloads from that copy, after the same owner
check as ever, so the contract (``/v1/videos/<id>.mp4``, ranges, caching headers) does not change.

Keys: ``<prefix>/<kind>/<task id><suffix>`` and ``<prefix>/inputs/<inputs id>/<file name>``.
Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
a profile, an instance role); ``ECHOEL_S3_ENDPOINT_URL`` points at any S3-compatible service.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlparse

from studio.errors import MediaUnavailable
from studio.media.paths import MEDIA_KINDS, MediaPaths

NOT_FOUND = ("404", "NoSuchKey", "NotFound")


def parse_media_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix); ``ValueError`` for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"ECHOEL_MEDIA_URL must look like s3://bucket/prefix, not {url!r}")
    return parsed.netloc, parsed.path.strip("/")


class ObjectMediaPaths(MediaPaths):
    """``MediaPaths`` whose files also live in an S3 bucket (see the module docstring)."""

    remote = True

    def __init__(self, media_dir: Path, url: str, endpoint_url: str | None = None):
        super().__init__(media_dir)
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = parse_media_url(url)
        self.url = url
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60)
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self._lock = threading.Lock()

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def _media_key(self, kind: str, task_id: str) -> str:
        return self._key(kind, self.path(kind, task_id).name)

    # -- task files -------------------------------------------------------------------------

    def publish(self, kind: str, task_id: str) -> None:
        try:
            self.client.upload_file(str(self.path(kind, task_id)), self.bucket, self._media_key(kind, task_id))
        except Exception as error:
            raise MediaUnavailable(f"could not upload the {kind[:-1]} of task {task_id} to {self.url}: "
                                   f"{_short(error)}") from error

    def fetch(self, kind: str, task_id: str, fresh: bool = False) -> Path:
        path = self.path(kind, task_id)
        if path.is_file() and not fresh:
            return path
        self._download(self._media_key(kind, task_id), path)
        return path

    def remove(self, task_id: str) -> None:
        super().remove(task_id)
        try:
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": self._media_key(kind, task_id)} for kind in MEDIA_KINDS], "Quiet": True})
        except Exception as error:
            raise MediaUnavailable(f"could not delete the files of task {task_id} from {self.url}: "
                                   f"{_short(error)}") from error

    # -- inputs folders ---------------------------------------------------------------------

    def publish_inputs(self, folder: Path) -> None:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = self._key("inputs", folder.name, file.relative_to(folder).as_posix())
            try:
                self.client.upload_file(str(file), self.bucket, key)
            except Exception as error:
                raise MediaUnavailable(f"could not upload the task's inputs to {self.url}: {_short(error)}") from error

    def fetch_inputs(self, folder: Path) -> None:
        if folder.is_dir():
            return  # submitted here, or fetched before
        prefix = self._key("inputs", folder.name) + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        if not keys:
            raise FileNotFoundError(f"no inputs {folder.name} in {self.url}")
        part = folder.with_name(folder.name + ".part")
        for key in keys:
            self._download(key, part / key[len(prefix):])
        os.replace(part, folder)  # all or nothing: a half-fetched folder is never used

    # -- helpers ----------------------------------------------------------------------------

    def _download(self, key: str, path: Path) -> None:
        """Download ``key`` to ``path`` through a temporary file (readers never see half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{threading.get_ident()}.download")
        try:
            self.client.download_file(self.bucket, key, str(part))
        except Exception as error:
            part.unlink(missing_ok=True)
            if any(code in str(error) for code in NOT_FOUND):
                raise FileNotFoundError(f"{key} is not in {self.url}") from error
            raise MediaUnavailable(f"could not download {key} from {self.url}: {_short(error)}") from error
        os.replace(part, path)


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
