"""The asynchronous client, ``VideoGenClient``."""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from pathlib import Path
from typing import Any, AsyncGenerator, Awaitable, Callable, Mapping
from urllib.parse import unquote, urlsplit

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from . import _shared as shared
from .errors import (
    APIConnectionError, APITimeoutError, EchoelError, GenerationFailed, GenerationTimeout, TaskCancelled,
)
from .models import GenreInfo, ModelInfo, Submission, TaskStatus, VideoResult

__all__ = ["VideoGenClient", "ProgressCallback"]

ProgressCallback = Callable[[float, str], "None | Awaitable[None]"]

_CHUNK = 1 << 16
_WS_MAX_MESSAGE = 4 * 2**20


class VideoGenClient:
    """Async client of the Echoelmusic video API.

    ``base_url`` includes the version prefix, e.g. ``http://127.0.0.1:7860/v1``. Every request and
    the websocket handshake carry ``Authorization: Bearer <api_key>`` (downloads only when the file
    is on the API's own origin). ``timeout`` is the per-request network timeout in seconds.
    ``max_retries`` retries requests the server answered with 429 or 503 (waiting ``Retry-After``,
    at most 60 s) and connections that could not be opened; 0 turns retries off.

    Use it as ``async with VideoGenClient(key) as client:`` or call ``aclose()`` when done.
    """

    def __init__(self, api_key: str, base_url: str = shared.DEFAULT_BASE_URL, timeout: float = 30.0, *,
                 max_retries: int = 2, transport: httpx.AsyncBaseTransport | None = None,
                 headers: Mapping[str, str] | None = None):
        if not api_key or not isinstance(api_key, str):
            raise ValueError("api_key must be a non-empty string")
        self._api_key = api_key
        self._endpoint = shared.Endpoint(base_url)
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        default = shared.default_headers(api_key)
        del default["Authorization"]  # added per request, only for the API's own origin
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport,
                                       headers={**default, **(headers or {})})

    @property
    def base_url(self) -> str:
        return self._endpoint.base_url

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> "VideoGenClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- core endpoints ----------------------------------------------------------------------

    async def submit(self, prompt: str, *, idempotency_key: str | None = None, **fields: Any) -> Submission:
        """``POST /generate``: queue a task. ``fields`` are the request's other fields
        (``negative_prompt``, ``duration_seconds``, ``fps``, ``resolution``, ``aspect_ratio``, ``genre``,
        ``seed``, ``guidance_scale``, ``num_inference_steps``, ``webhook_url``, ``model``); ``None``
        values are left out. ``idempotency_key`` is sent as the ``Idempotency-Key`` header."""
        body = shared.generate_body(prompt, fields)
        data = await self._json("POST", self._endpoint.url("generate"), json=body,
                                headers=shared.idempotency_headers(idempotency_key))
        return Submission.from_dict(data)

    async def status(self, task_id: str) -> TaskStatus:
        """``GET /status/{task_id}``."""
        return TaskStatus.from_dict(await self._json("GET", self._endpoint.url("status", task_id)))

    async def result(self, task_id: str) -> VideoResult:
        """``GET /result/{task_id}``; ``ConflictError`` until the task has completed."""
        return VideoResult.from_dict(await self._json("GET", self._endpoint.url("result", task_id)))

    async def cancel(self, task_id: str) -> TaskStatus:
        """``POST /cancel/{task_id}``: at once while pending, within a step while running."""
        return TaskStatus.from_dict(await self._json("POST", self._endpoint.url("cancel", task_id)))

    async def models(self) -> list[ModelInfo]:
        """``GET /models``: the catalog and what can run on this server."""
        return [ModelInfo.from_dict(m) for m in await self._json("GET", self._endpoint.url("models"))]

    async def genres(self) -> list[GenreInfo]:
        """``GET /genres``: the style presets accepted by ``genre``."""
        return [GenreInfo.from_dict(g) for g in await self._json("GET", self._endpoint.url("genres"))]

    async def health(self) -> dict[str, Any]:
        """``GET /health``."""
        return await self._json("GET", self._endpoint.url("health"))

    async def download(self, video_url_or_task_id: str, path: str | os.PathLike[str]) -> Path:
        """Stream a video to ``path`` and return the file's path.

        Accepts a task id, a result's ``video_url`` (``/v1/videos/<id>.mp4`` is resolved against the
        server of ``base_url``) or an absolute URL. When ``path`` is an existing folder the file
        keeps the URL's name. The file appears only once complete (written to ``*.part`` first).
        """
        url = self._endpoint.media_url(video_url_or_task_id)
        target = Path(path)
        if target.is_dir():
            target = target / (unquote(Path(urlsplit(url).path).name) or "video.mp4")
        part = target.with_name(target.name + ".part")
        try:
            response = await self._send("GET", url, stream=True, headers={"Accept": "*/*"})
            try:
                with open(part, "wb") as out:
                    async for chunk in response.aiter_bytes(_CHUNK):
                        out.write(chunk)
            except httpx.TimeoutException as exc:
                raise APITimeoutError(f"download of {url} timed out") from exc
            except httpx.TransportError as exc:
                raise APIConnectionError(f"download of {url} broke off: {exc}") from exc
            finally:
                await response.aclose()
            os.replace(part, target)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        return target

    # -- events ------------------------------------------------------------------------------

    async def events(self, task_id: str) -> AsyncGenerator[dict[str, Any], None]:
        """The task's events from ``WS {base_url}/ws/{task_id}``, as the server's JSON objects
        (``progress``, ``frame_available``, then one of ``complete``, ``error``, ``cancelled``),
        ending after the final one.

        A stream the server refuses raises the mapped error (``NotFoundError`` for an unknown task,
        ``AuthenticationError`` for a bad key); a connection that fails or ends before the final
        event raises ``APIConnectionError``.
        """
        url = self._endpoint.ws_url(task_id)
        try:
            async with ws_connect(url, additional_headers=shared.auth_headers(self._api_key),
                                  open_timeout=self.timeout, max_size=_WS_MAX_MESSAGE) as ws:
                while True:
                    try:
                        raw = await ws.recv()
                    except ConnectionClosed as exc:
                        raise APIConnectionError(
                            f"the event stream of task {task_id} closed before the task ended "
                            f"({_close_text(exc)})") from exc
                    event = shared.parse_event(raw)
                    kind = event.get("type")
                    if kind == "error":
                        refused = await self._refusal(ws, event)
                        if refused is not None:
                            raise refused
                    yield event
                    if kind in shared.FINAL_EVENTS:
                        return
        except InvalidStatus as exc:
            response = exc.response
            raise shared.error_from_handshake(response.status_code, response.headers, response.body) from exc
        except (WebSocketException, OSError, asyncio.TimeoutError) as exc:
            if isinstance(exc, EchoelError):
                raise
            raise APIConnectionError(f"websocket {url} failed: {exc or type(exc).__name__}") from exc

    async def _refusal(self, ws: Any, event: Mapping[str, Any]) -> EchoelError | None:
        """After an ``error`` event: whether the server then closed with a 4xxx code, meaning the
        stream itself was refused (unknown task, bad key) rather than the task having failed."""
        try:
            await asyncio.wait_for(ws.recv(), timeout=min(self.timeout, 5.0))
        except ConnectionClosed as exc:
            return shared.error_from_close(exc.rcvd.code if exc.rcvd else None, event)
        except asyncio.TimeoutError:
            return None
        return None

    # -- the whole flow ----------------------------------------------------------------------

    async def generate(self, prompt: str, *, on_progress: ProgressCallback | None = None,
                       poll_interval: float = 1.0, timeout: float | None = None,
                       idempotency_key: str | None = None, **fields: Any) -> VideoResult:
        """Submit a task, follow it to the end and return its result.

        ``on_progress(fraction, message)`` is called as the task advances (fractions never
        decrease; it may be a coroutine function). Progress comes from the websocket, or from
        polling ``/status`` every ``poll_interval`` seconds if the websocket fails. ``timeout``
        (seconds, whole flow) raises ``GenerationTimeout`` and leaves the task running.
        Without ``idempotency_key`` a random one is sent, so retried submissions never run twice.
        Raises ``GenerationFailed`` or ``TaskCancelled`` when the task ends that way.
        """
        # A key of our own makes the submission safe to retry after a dropped connection.
        idempotency_key = idempotency_key or f"echoelmusic-py-{uuid.uuid4()}"
        submission = await self.submit(prompt, idempotency_key=idempotency_key, **fields)
        return await self.wait(submission.task_id, on_progress=on_progress, poll_interval=poll_interval,
                               timeout=timeout)

    async def wait(self, task_id: str, *, on_progress: ProgressCallback | None = None,
                   poll_interval: float = 1.0, timeout: float | None = None) -> VideoResult:
        """Follow an existing task to the end, like ``generate`` after its submission."""
        try:
            final = await asyncio.wait_for(self._follow(task_id, _Progress(on_progress), poll_interval),
                                           timeout)
        except asyncio.TimeoutError:
            if timeout is None:
                raise
            raise GenerationTimeout(task_id, timeout) from None
        kind = final.get("type")
        if kind == "complete":
            return await self.result(task_id)
        if kind == "cancelled":
            raise TaskCancelled(task_id, final.get("detail"))
        raise GenerationFailed(task_id, error=final.get("error"), detail=final.get("detail"),
                               error_type=final.get("error_type"))

    async def _follow(self, task_id: str, progress: "_Progress", poll_interval: float) -> dict[str, Any]:
        """The task's final event: from the websocket, else by polling ``/status``."""
        stream = self.events(task_id)
        try:
            while True:
                try:
                    event = await stream.__anext__()
                except (StopAsyncIteration, EchoelError):
                    break  # polling below gives the authoritative answer (or the real error)
                kind = event.get("type")
                if kind in shared.PROGRESS_EVENTS:  # the callback's own errors propagate
                    await progress.report(event.get("progress"), event.get("step") or event.get("status"))
                elif kind in shared.FINAL_EVENTS:
                    if kind == "complete":
                        await progress.report(1.0, "completed")
                    return event
        finally:
            await stream.aclose()
        while True:
            status = await self.status(task_id)
            if status.is_terminal:
                if status.status == "completed":
                    await progress.report(1.0, "completed")
                return _final_from_status(status)
            await progress.report(status.progress, status.current_step or status.status)
            await asyncio.sleep(poll_interval)

    # -- transport ---------------------------------------------------------------------------

    async def _json(self, method: str, url: str, *, json: Any = None,
                    headers: Mapping[str, str] | None = None) -> Any:
        response = await self._send(method, url, json=json, headers=headers)
        return shared.parse_json(response)

    async def _send(self, method: str, url: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
                    stream: bool = False) -> httpx.Response:
        """Send with retries; returns a successful response, raises the mapped error otherwise."""
        all_headers = dict(headers or {})
        if self._endpoint.same_origin(url):
            all_headers.update(shared.auth_headers(self._api_key))
        request = self._http.build_request(method, url, json=json, headers=all_headers)
        # A request that may have reached the server is only repeated when repeating is harmless.
        idempotent = method in ("GET", "HEAD") or "Idempotency-Key" in all_headers
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                # ConnectError/ConnectTimeout: nothing was sent, so any method may be retried.
                unsent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if (unsent or idempotent) and attempt < self.max_retries:
                    attempt += 1
                    await asyncio.sleep(shared.retry_delay(None, attempt))
                    continue
                if isinstance(exc, httpx.TimeoutException):
                    raise APITimeoutError(f"{method} {url} timed out after {self.timeout:g} s") from exc
                if unsent:
                    raise APIConnectionError(f"could not connect to {self._endpoint.origin}: {exc}") from exc
                raise APIConnectionError(f"{method} {url} failed: {exc}") from exc
            if not response.is_error:
                return response
            try:
                await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            error = shared.error_from_response(response)
            if shared.is_retryable_status(response.status_code) and attempt < self.max_retries:
                attempt += 1
                await asyncio.sleep(shared.retry_delay(error, attempt))
                continue
            raise error


class _Progress:
    """Calls the user's progress callback with fractions that never decrease, once per change."""

    def __init__(self, callback: ProgressCallback | None):
        self.callback = callback
        self.fraction = 0.0
        self.last: tuple[float, str] | None = None

    async def report(self, fraction: Any, message: Any) -> None:
        if self.callback is None:
            return
        if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
            self.fraction = min(1.0, max(self.fraction, float(fraction)))
        current = (self.fraction, str(message or ""))
        if current == self.last:
            return
        self.last = current
        outcome = self.callback(*current)
        if inspect.isawaitable(outcome):
            await outcome


def _final_from_status(status: TaskStatus) -> dict[str, Any]:
    """A websocket-style final event for a terminal status."""
    if status.status == "completed":
        return {"type": "complete", "task_id": status.task_id}
    if status.status == "cancelled":
        return {"type": "cancelled", "task_id": status.task_id, "detail": status.error}
    return {"type": "error", "task_id": status.task_id, "error": status.error, "detail": status.error,
            "error_type": status.error_type}


def _close_text(exc: ConnectionClosed) -> str:
    frame = exc.rcvd or exc.sent
    return f"close code {frame.code}" if frame else "no close frame"
