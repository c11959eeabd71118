"""The Python SDK (``sdk/python``, package ``echoelmusic``) against the live server, plus its error
mapping, retries and URL handling against a mock transport."""

from __future__ import annotations

import asyncio
import json

import echoelmusic
import httpx
import pytest
from echoelmusic import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    EchoelError,
    GenerationFailed,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    SyncVideoGenClient,
    TaskCancelled,
    VideoGenClient,
)
from echoelmusic._shared import Endpoint

from studio.engine.t2v import DENOISE_SHARE
from tests.conftest import SMALL

try:
    from tests.conftest import API_KEY
except ImportError:  # the server side of authentication is not there yet
    API_KEY = "test-key-1"

FIELDS = {k: v for k, v in SMALL.items() if k != "prompt"}
LONG = {**FIELDS, "num_inference_steps": 150}


def api_url(live_server) -> str:
    return live_server.url + "/v1"


def is_mp4(data: bytes) -> bool:
    """An ISO-BMFF file: a ``ftyp`` box within the first 12 bytes."""
    return b"ftyp" in data[:12]


# -- against the live server ---------------------------------------------------------------------


def test_generate_end_to_end_and_download(live_server, tmp_path):
    updates: list[tuple[float, str]] = []

    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server), timeout=60) as client:
            result = await client.generate(SMALL["prompt"], seed=5, on_progress=lambda f, s: updates.append((f, s)),
                                           timeout=120, **FIELDS)
            path = await client.download(result.video_url, tmp_path / "fox.mp4")
            by_id = await client.download(result.task_id, tmp_path)  # a task id into a folder
            return result, path, by_id

    result, path, by_id = asyncio.run(main())
    assert result.status == "completed" and result.task_id
    assert result.video_url == f"/v1/videos/{result.task_id}.mp4"
    assert result.thumbnail_url and result.resolution == "480p"
    assert result.duration_seconds == pytest.approx(1.0)
    assert result.generation_time_seconds > 0
    assert result.metadata.prompt == SMALL["prompt"] and result.metadata.model == "tiny"
    assert result.metadata.seed == 5 and result.metadata.num_inference_steps == 10

    data = path.read_bytes()
    assert is_mp4(data)
    assert result.file_size_mb == pytest.approx(len(data) / 2**20, abs=1e-3)
    assert by_id == tmp_path / f"{result.task_id}.mp4" and by_id.read_bytes() == data
    assert not list(tmp_path.glob("*.part"))

    fractions = [f for f, _ in updates]
    assert len(fractions) >= 3 and fractions == sorted(fractions)
    assert fractions[0] < 1.0 and fractions[-1] == 1.0
    assert any(step.startswith("Denoising step") for _, step in updates)


def test_submit_then_events(live_server):
    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            submission = await client.submit(SMALL["prompt"], **FIELDS)
            events = [event async for event in client.events(submission.task_id)]
            return submission, events

    submission, events = asyncio.run(main())
    assert submission.status == "pending" and submission.queue_position >= 1
    assert submission.estimated_time_seconds > 0 and submission.message
    types = [e["type"] for e in events]
    assert types[0] == "progress" and types[-1] == "complete"
    assert types.count("complete") == 1
    assert "Denoising step 10/10" in [e.get("step") for e in events if e["type"] == "progress"]
    assert events[-1]["video_url"] == f"/v1/videos/{submission.task_id}.mp4"


def test_cancel_during_generation_raises_task_cancelled(live_server):
    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            submission = await client.submit(SMALL["prompt"], **LONG)
            cancelled = []

            async def on_progress(fraction: float, step: str) -> None:
                if step.startswith("Denoising step") and not cancelled:
                    cancelled.append(await client.cancel(submission.task_id))

            with pytest.raises(TaskCancelled) as caught:
                await client.wait(submission.task_id, on_progress=on_progress, timeout=120)
            status = await client.status(submission.task_id)
            with pytest.raises(ConflictError) as not_ready:
                await client.result(submission.task_id)
            return submission, cancelled, caught.value, status, not_ready.value

    submission, cancelled, error, status, not_ready = asyncio.run(main())
    assert cancelled and cancelled[0].status in ("generating_base", "cancelled")
    assert error.task_id == submission.task_id and error.type == "TaskCancelled"
    assert status.status == "cancelled" and status.is_terminal
    # Stopped within a step of the cancel: the run records each step before it checks the
    # flag, and the cancel reply is read after the flag is set (a cancelled task's progress
    # stays where the run stopped; its current_step is just "Cancelled").
    at_cancel, last = (round(s.progress / DENOISE_SHARE * LONG["num_inference_steps"]) for s in (cancelled[0], status))
    assert at_cancel < LONG["num_inference_steps"] and at_cancel <= last <= at_cancel + 1, (at_cancel, last)
    assert not_ready.status_code == 409 and not_ready.type == "TaskNotReady"


def test_result_of_an_unfinished_task_is_a_conflict(live_server):
    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            submission = await client.submit(SMALL["prompt"], **LONG)
            try:
                with pytest.raises(ConflictError) as caught:
                    await client.result(submission.task_id)
            finally:
                await client.cancel(submission.task_id)
            return caught.value

    error = asyncio.run(main())
    assert error.status_code == 409 and error.type == "TaskNotReady" and error.error and error.detail


def test_unknown_task_is_not_found(live_server):
    async def main():
        errors = []
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            for call in (client.status, client.result, client.cancel, client.wait):
                with pytest.raises(NotFoundError) as caught:
                    await call("00000000-0000-0000-0000-000000000000")
                errors.append(caught.value)
            with pytest.raises(NotFoundError) as caught:
                async for _ in client.events("no-such-task"):
                    pass
            errors.append(caught.value)
        return errors

    errors = asyncio.run(main())
    assert all(e.status_code == 404 and e.error for e in errors)
    assert errors[0].type == "TaskNotFound"


def test_validation_error_names_the_field(live_server):
    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            with pytest.raises(BadRequestError) as caught:
                await client.submit(SMALL["prompt"], **{**FIELDS, "duration_seconds": 100})
            return caught.value

    error = asyncio.run(main())
    assert error.status_code == 400
    assert "duration_seconds" in error.detail
    assert error.error == "Validation error" and error.type == "ValueError"
    assert "duration_seconds" in str(error)


def test_wrong_key_is_an_authentication_error(live_server):
    unauthenticated = httpx.get(live_server.url + "/v1/models", timeout=30)
    assert unauthenticated.status_code == 401, "the server must refuse requests without a key"

    async def main():
        async with VideoGenClient("definitely-not-a-key", api_url(live_server), max_retries=0) as client:
            errors = []
            with pytest.raises(AuthenticationError) as caught:
                await client.models()
            errors.append(caught.value)
            with pytest.raises(AuthenticationError) as caught:
                await client.submit(SMALL["prompt"], **FIELDS)
            errors.append(caught.value)
            with pytest.raises(AuthenticationError) as caught:  # refused at the websocket handshake
                async for _ in client.events("00000000-0000-0000-0000-000000000000"):
                    pass
            errors.append(caught.value)
            return errors

    errors = asyncio.run(main())
    assert all(e.status_code == 401 for e in errors)
    assert errors[0].error and errors[0].detail


def test_generate_falls_back_to_polling_without_the_websocket(live_server):
    class NoWebsocket(VideoGenClient):
        async def events(self, task_id):
            raise APIConnectionError("websocket blocked by a proxy")
            yield  # pragma: no cover

    updates = []

    async def main():
        async with NoWebsocket(API_KEY, api_url(live_server)) as client:
            return await client.generate(SMALL["prompt"], poll_interval=0.05,
                                         on_progress=lambda f, s: updates.append(f), timeout=120, **FIELDS)

    result = asyncio.run(main())
    assert result.status == "completed" and result.metadata.model == "tiny"
    assert updates and updates == sorted(updates) and updates[-1] == 1.0


def test_progress_callback_errors_propagate(live_server):
    def broken(fraction: float, step: str) -> None:
        raise ZeroDivisionError("a bug in the caller's callback")

    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            await client.generate(SMALL["prompt"], on_progress=broken, timeout=120, **FIELDS)

    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())


@pytest.mark.usefixtures("cpu_host")  # a hub model on a server without CUDA
def test_failed_task_raises_generation_failed(live_server):
    """A hub model on a GPU-less server fails with ModelUnavailable."""

    async def main():
        async with VideoGenClient(API_KEY, api_url(live_server)) as client:
            with pytest.raises(GenerationFailed) as caught:
                await client.generate(SMALL["prompt"], model="wan2.1-t2v-1.3b", timeout=120, **FIELDS)
            return caught.value

    error = asyncio.run(main())
    assert error.error_type == "ModelUnavailable" == error.type
    assert error.task_id and error.detail and "CUDA" in error.detail


def test_sync_client_full_generate(live_server, tmp_path):
    updates = []
    with SyncVideoGenClient(API_KEY, api_url(live_server)) as client:
        assert any(m.id == "tiny" and m.available for m in client.models())
        assert "cinematic" in [g.name for g in client.genres()]
        result = client.generate(SMALL["prompt"], on_progress=lambda f, s: updates.append(f), timeout=120, **FIELDS)
        path = client.download(result.video_url, tmp_path / "sync.mp4")
        assert client.status(result.task_id).status == "completed"
        assert client.result(result.task_id).video_url == result.video_url
        events = list(client.events(result.task_id))  # a finished task: its state, then the end
        submission = client.submit(SMALL["prompt"], **FIELDS)
        for event in client.events(submission.task_id):  # leaving early closes the stream
            break
        with pytest.raises(NotFoundError):
            client.status("00000000-0000-0000-0000-000000000000")
    assert result.status == "completed" and result.metadata.model == "tiny"
    assert is_mp4(path.read_bytes())
    assert updates == sorted(updates) and updates[-1] == 1.0
    assert [e["type"] for e in events] == ["progress", "complete"]
    with pytest.raises(RuntimeError):
        client.status(result.task_id)  # closed


# -- error mapping, retries and URLs, against a mock transport --------------------------------------


def mock_client(handler, **kwargs) -> VideoGenClient:
    return VideoGenClient("k-123", "https://api.example.test/v1", transport=httpx.MockTransport(handler), **kwargs)


def call(handler, method: str, *args, **kwargs):
    async def main():
        async with mock_client(handler, **kwargs) as client:
            return await getattr(client, method)(*args)

    return asyncio.run(main())


def error_of(handler, method: str = "status", *args, **kwargs) -> EchoelError:
    with pytest.raises(EchoelError) as caught:
        call(handler, method, *(args or ("t1",)), **kwargs)
    return caught.value


@pytest.mark.parametrize("status, cls", [
    (400, BadRequestError), (413, BadRequestError), (422, BadRequestError), (401, AuthenticationError),
    (403, PermissionDeniedError), (404, NotFoundError), (409, ConflictError), (429, RateLimitError),
    (500, ServerError), (502, ServerError), (503, ServiceUnavailableError), (418, EchoelError),
])
def test_status_codes_map_to_exceptions(status, cls):
    body = {"error": "Some title", "detail": "what went wrong", "type": "SomeType"}
    error = error_of(lambda request: httpx.Response(status, json=body), max_retries=0)
    assert type(error) is cls
    assert (error.status_code, error.error, error.detail, error.type) == (status, "Some title", "what went wrong",
                                                                           "SomeType")
    assert issubclass(ServiceUnavailableError, ServerError)


def test_non_json_error_bodies_map_cleanly():
    error = error_of(lambda r: httpx.Response(502, text="<html><body>Bad gateway</body></html>"), max_retries=0)
    assert type(error) is ServerError and error.status_code == 502
    assert error.error == "Bad Gateway" and "Bad gateway" in error.detail and error.type is None
    empty = error_of(lambda r: httpx.Response(404), max_retries=0)
    assert type(empty) is NotFoundError and empty.detail is None and "404" in str(empty)


def test_rate_limit_error_carries_the_headers():
    headers = {"Retry-After": "7", "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": "1703059200"}
    body = {"error": "Rate limited", "detail": "slow down", "type": "RateLimited"}
    error = error_of(lambda r: httpx.Response(429, json=body, headers=headers), max_retries=0)
    assert isinstance(error, RateLimitError)
    assert (error.retry_after, error.limit, error.remaining, error.reset) == (7.0, 5, 0, 1703059200)


def test_429_and_503_are_retried_after_retry_after():
    replies = iter([httpx.Response(429, json={"error": "x"}, headers={"Retry-After": "0"}),
                    httpx.Response(503, text="maintenance", headers={"Retry-After": "0"}),
                    httpx.Response(200, json={"task_id": "t1", "status": "pending", "progress": 0.0, "new": 1})])
    status = call(lambda r: next(replies), "status", "t1", max_retries=2)
    assert status.task_id == "t1" and status.progress == 0.0 and status.extra == {"new": 1}


def test_connection_failures_are_api_connection_errors():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    error = error_of(refuse, max_retries=0)
    assert isinstance(error, APIConnectionError) and isinstance(error, ConnectionError)
    assert error.status_code is None


def test_requests_carry_the_key_and_the_idempotency_key():
    seen = []

    def handler(request: httpx.Request):
        seen.append(request)
        return httpx.Response(202, json={"task_id": "t1", "status": "pending", "message": "queued",
                                         "estimated_time_seconds": 3.0, "queue_position": 1})

    async def main():
        async with mock_client(handler) as client:
            return await client.submit("a fox", idempotency_key="abc", seed=None, fps=12, genre="fantasy")

    submission = asyncio.run(main())
    assert submission.task_id == "t1" and submission.queue_position == 1
    request = seen[0]
    assert request.url == "https://api.example.test/v1/generate"
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.headers["idempotency-key"] == "abc"
    assert json.loads(request.content) == {"prompt": "a fox", "fps": 12, "genre": "fantasy"}  # None left out


def test_download_resolves_urls_and_keeps_the_key_on_the_api_origin(tmp_path):
    seen = []

    def handler(request: httpx.Request):
        seen.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)

    async def main():
        async with mock_client(handler) as client:
            await client.download("/v1/videos/abc.mp4", tmp_path / "a.mp4")
            await client.download("/videos/abc.mp4", tmp_path / "b.mp4")
            await client.download("abc", tmp_path / "c.mp4")
            await client.download("https://cdn.example.test/abc.mp4", tmp_path / "d.mp4")

    asyncio.run(main())
    assert seen == [("https://api.example.test/v1/videos/abc.mp4", "Bearer k-123")] * 3 + [
        ("https://cdn.example.test/abc.mp4", None)]
    assert all(is_mp4((tmp_path / f"{n}.mp4").read_bytes()) for n in "abcd")


def test_failed_download_leaves_no_file(tmp_path):
    with pytest.raises(NotFoundError):
        call(lambda r: httpx.Response(404, json={"error": "Task not found", "detail": "no", "type": "TaskNotFound"}),
             "download", "abc", tmp_path / "x.mp4")
    assert list(tmp_path.iterdir()) == []


def test_endpoint_urls():
    endpoint = Endpoint("http://127.0.0.1:7860/v1/")
    assert endpoint.url("status", "a/b") == "http://127.0.0.1:7860/v1/status/a%2Fb"
    assert endpoint.ws_url("t1") == "ws://127.0.0.1:7860/v1/ws/t1"
    assert Endpoint("https://api.echoelmusic.com/v1").ws_url("t1") == "wss://api.echoelmusic.com/v1/ws/t1"
    with pytest.raises(ValueError):
        Endpoint("ftp://example.com/v1")
    with pytest.raises(ValueError):
        VideoGenClient("", "http://127.0.0.1/v1")


def test_results_tolerate_extra_and_missing_fields():
    result = echoelmusic.VideoResult.from_dict({"task_id": "t", "video_url": "/v.mp4", "future": True,
                                                "metadata": {"prompt": "p", "model": "m", "seed": 1, "more": 2}})
    assert result.metadata.seed == 1 and result.metadata.extra == {"more": 2}
    assert result.extra == {"future": True} and result.file_size_mb is None
    assert result.to_dict()["future"] is True
