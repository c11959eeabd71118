"""A daemon thread that calls a function every few seconds (heartbeats, reconciliation)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``function`` every ``seconds`` until stopped; an error is logged and the next call
    comes on time (a database or broker that is down now may be back then)."""

    def __init__(self, name: str, seconds: float, function: Callable[[], object], at_start: bool = False):
        self.name, self.seconds, self.function, self.at_start = name, seconds, function, at_start
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if self.at_start:
            self._call()
        while not self._stopping.wait(self.seconds):
            self._call()

    def _call(self) -> None:
        try:
            self.function()
        except Exception as error:
            log.warning("%s failed: %s", self.name, error)
