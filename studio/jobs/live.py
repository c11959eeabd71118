"""What processes share live through Redis: task events and cancel flags.

Events: every process sends the events it publishes to one Redis pub/sub channel and delivers to
its own followers (UI generators, websockets) what arrives on it, so a worker's progress and
previews reach a websocket held by any API process. The durable record stays in the database
(``events`` rows, task rows): a follower that joins late, or an event lost while Redis was down,
is made good from there (the websocket and the UI read the row's final state).

Cancel flags: ``POST /v1/cancel`` on any API process sets a key the worker running the task reads
at its next denoising step.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import redis

from studio.jobs.events import Event, EventBus

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "echoel:events"
CANCEL_KEY = "echoel:cancel:"
CANCEL_TTL_SECONDS = 7 * 24 * 3600  # longer than any task waits and runs
RECONNECT_SECONDS = 1.0


class RedisLive:
    """The Redis side of one process: sends its events, delivers others', and holds cancel flags."""

    def __init__(self, url: str, bus: EventBus):
        self.url = url
        self.bus = bus
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._subscribed = threading.Event()

    # -- events -----------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        """Publish ``event`` to every process (this one included, through ``_listen``). With
        Redis down it still reaches this process's own followers."""
        try:
            self.redis.publish(EVENTS_CHANNEL, json.dumps({"task_id": event.task_id, "type": event.type,
                                                           "data": event.data}, separators=(",", ":")))
        except redis.RedisError as error:
            log.warning("Redis is unreachable (%s): event %s of task %s reaches this process only",
                        error, event.type, event.task_id)
            self.bus.deliver(event)

    def start(self) -> None:
        """Deliver the events of every process to this process's followers (a thread), once
        subscribed: events sent after this returns are not missed."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._listen, name="studio-live-events", daemon=True)
        self._thread.start()
        self._subscribed.wait(5.0)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(3.0)
        self.redis.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(EVENTS_CHANNEL)
                self._subscribed.set()
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message["type"] == "message":
                        self._deliver(message["data"])
            except redis.RedisError as error:
                log.warning("live events from Redis interrupted (%s); reconnecting", error)
                self._stopping.wait(RECONNECT_SECONDS)
            finally:
                try:
                    pubsub.close()
                except redis.RedisError:
                    pass

    def _deliver(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            self.bus.deliver(Event(message["task_id"], message["type"], message.get("data") or {}))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed live event: %r", raw[:200])

    # -- cancel flags -----------------------------------------------------------------------

    def flag_cancel(self, task_id: str) -> None:
        self.redis.set(CANCEL_KEY + task_id, str(time.time()), ex=CANCEL_TTL_SECONDS)

    def cancel_flagged(self, task_id: str) -> bool:
        return bool(self.redis.exists(CANCEL_KEY + task_id))

    def forget_cancel(self, task_ids: list[str]) -> None:
        if task_ids:
            self.redis.delete(*(CANCEL_KEY + t for t in task_ids))
