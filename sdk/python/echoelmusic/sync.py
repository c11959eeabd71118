"""``SyncVideoGenClient``: the async client driven from blocking code.

It owns a private event loop on a daemon thread and runs each call of a ``VideoGenClient`` there,
so requests, parsing, retries and the websocket/polling logic are the async client's own.
``on_progress`` callbacks run on that thread; they must not call back into this client.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Iterator, Mapping, TypeVar

import httpx

from . import _shared as shared
from .client import VideoGenClient
from .models import GenreInfo, ModelInfo, Submission, TaskStatus, VideoResult

__all__ = ["SyncVideoGenClient"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="echoelmusic-sync", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a SyncVideoGenClient cannot be called from its own callbacks")
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("this SyncVideoGenClient is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the async work too
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class SyncVideoGenClient:
    """Blocking client with the same methods as ``VideoGenClient``.

    ``with SyncVideoGenClient(key, base_url) as client: result = client.generate("a fox")``
    """

    def __init__(self, api_key: str, base_url: str = shared.DEFAULT_BASE_URL, timeout: float = 30.0, *,
                 max_retries: int = 2, transport: httpx.AsyncBaseTransport | None = None,
                 headers: Mapping[str, str] | None = None):
        shared.Endpoint(base_url)  # fail fast, before starting a thread
        self._runner = _LoopThread()

        async def make() -> VideoGenClient:
            return VideoGenClient(api_key, base_url, timeout, max_retries=max_retries, transport=transport,
                                  headers=headers)

        try:
            self._client = self._runner.run(make())
        except BaseException:
            self._runner.stop()
            raise

    @property
    def base_url(self) -> str:
        return self._client.base_url

    @property
    def async_client(self) -> VideoGenClient:
        """The underlying async client (bound to this facade's private loop)."""
        return self._client

    def __enter__(self) -> "SyncVideoGenClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool and stop the private loop."""
        if not self._runner.loop.is_closed():
            try:
                self._runner.run(self._client.aclose())
            finally:
                self._runner.stop()

    def submit(self, prompt: str, *, idempotency_key: str | None = None, **fields: Any) -> Submission:
        return self._runner.run(self._client.submit(prompt, idempotency_key=idempotency_key, **fields))

    def status(self, task_id: str) -> TaskStatus:
        return self._runner.run(self._client.status(task_id))

    def result(self, task_id: str) -> VideoResult:
        return self._runner.run(self._client.result(task_id))

    def cancel(self, task_id: str) -> TaskStatus:
        return self._runner.run(self._client.cancel(task_id))

    def models(self) -> list[ModelInfo]:
        return self._runner.run(self._client.models())

    def genres(self) -> list[GenreInfo]:
        return self._runner.run(self._client.genres())

    def health(self) -> dict[str, Any]:
        return self._runner.run(self._client.health())

    def download(self, video_url_or_task_id: str, path: str | os.PathLike[str]) -> Path:
        return self._runner.run(self._client.download(video_url_or_task_id, path))

    def generate(self, prompt: str, *, on_progress: Callable[[float, str], "None | Awaitable[None]"] | None = None,
                 poll_interval: float = 1.0, timeout: float | None = None,
                 idempotency_key: str | None = None, **fields: Any) -> VideoResult:
        return self._runner.run(self._client.generate(
            prompt, on_progress=on_progress, poll_interval=poll_interval, timeout=timeout,
            idempotency_key=idempotency_key, **fields))

    def wait(self, task_id: str, *, on_progress: Callable[[float, str], "None | Awaitable[None]"] | None = None,
             poll_interval: float = 1.0, timeout: float | None = None) -> VideoResult:
        return self._runner.run(self._client.wait(task_id, on_progress=on_progress, poll_interval=poll_interval,
                                                  timeout=timeout))

    def events(self, task_id: str) -> Iterator[dict[str, Any]]:
        stream = self._client.events(task_id)
        try:
            while True:
                try:
                    event = self._runner.run(stream.__anext__())
                except StopAsyncIteration:
                    return
                yield event
        finally:
            if not self._runner.loop.is_closed():
                self._runner.run(stream.aclose())
