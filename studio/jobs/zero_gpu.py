"""Running tasks on a Hugging Face ZeroGPU Space.

On ZeroGPU a process has a GPU only inside a function decorated with ``spaces.GPU``. Each call
asks the platform for a GPU (charged to the visitor whose Gradio request is in the calling
context, through its ``X-IP-Token`` header; anonymous without one), runs the function in a forked
worker process that holds the GPU (its arguments and yielded values are pickled), and gives the
GPU back when the function returns. Off ZeroGPU the decorator is the identity, which is why this
gate exists only when ``SPACES_ZERO_GPU`` is set (``Settings.zero_gpu``). What it changes:

- The worker thread still claims tasks in queue order, then hands each claimed task to
  ``ZeroGpu.run``. That calls the decorated ``run_task_on_gpu`` in the context of the call that
  submitted the task (``remember_callers``, from ``TaskStore.on_created``), so the visitor who
  asked pays its GPU time.
- In the GPU process the task runs on a worker built for that process (its own database
  connections, locks and event bus: a fork copies locks other threads may hold). It writes the
  task row and media files itself (the same disk). What lived only in memory crosses back as the
  generator's yields: live events, Progressive Streaming frames, the SLA monitor's run times.
  The server delivers them to its own followers, as ``studio.jobs.live`` does between Celery
  workers and API processes.
- Cancel flags are read from the task row (``Studio.cancel`` sets it). A server that stops
  tells the GPU process through an inherited event, and the run goes back in the queue.
- A GPU the platform refuses (quota, a duration above its limit, no GPU in time) or a GPU
  process that dies ends the task ``failed`` with ``GpuUnavailable`` and the platform's words.

The requested duration is the task's own estimate with a margin for moving the model to the GPU,
at most ``Settings.zero_gpu_max_seconds`` (the platform refuses longer calls).
"""

from __future__ import annotations

import contextvars
import logging
import math
import multiprocessing
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from studio.db import Database
from studio.jobs import store as st
from studio.jobs.events import Event, EventBus
from studio.jobs.store import Task, TaskStore
from studio.media.frame_boards import StreamHub

if TYPE_CHECKING:
    from studio.jobs.worker import Worker

log = logging.getLogger(__name__)

GPU_UNAVAILABLE = "GpuUnavailable"
MOVE_TO_GPU_SECONDS = 20.0  # margin for the platform moving the packed model onto the GPU
ESTIMATE_MARGIN = 1.5  # our estimates are rough; a call that overruns its duration may be aborted
MIN_GPU_SECONDS = 15
REMEMBERED_CALLERS = 10_000  # callers of tasks still waiting; the oldest are forgotten beyond this
_DONE = ("done",)

#: The gate of this process, for ``run_task_on_gpu`` (a module-level function: the platform
#: registers decorated functions before the server starts, and the GPU process finds it here).
_gate: ZeroGpu | None = None


def run_task_on_gpu(task_id: str) -> Iterator[tuple]:
    """Run the claimed task ``task_id`` here, in the GPU process; yields what the server must
    deliver (see ``ChildRelay``). ``ZeroGpu`` calls it through ``spaces.GPU``."""
    if _gate is None:
        raise RuntimeError("no ZeroGPU gate is installed in this process")
    yield from _gate.run_here(task_id)


class ChildRelay:
    """The GPU process's side of the crossing: what its worker publishes goes into the outbox of
    the current call (yielded to the server); cancel flags come from the task row; Progressive
    Streaming counts a task as streamed when the server made its board (the board's folder)."""

    def __init__(self, store: TaskStore, streamed_root: Path):
        self.store = store
        self.streamed_root = streamed_root
        self.outbox: queue.Queue = queue.Queue()

    # EventBus.relay
    def send(self, event: Event) -> None:
        self.outbox.put(("event", event.task_id, event.type, event.data))

    # Worker.live (cancel flags)
    def flag_cancel(self, task_id: str) -> None:
        self.store.request_cancel(task_id)

    def cancel_flagged(self, task_id: str) -> bool:
        task = self.store.get(task_id)
        return task is not None and task.cancel_requested

    def forget_cancel(self, task_ids: list[str]) -> None:
        pass  # the rows keep their flags, as they do in one process

    # StreamHub.relay
    def mark_streamed(self, task_id: str, seconds: float) -> None:
        pass  # streams are opened in the server, never here

    def is_streamed(self, task_id: str) -> bool:
        return (self.streamed_root / task_id).is_dir()

    def send_stream_notice(self, notice: dict) -> None:
        self.outbox.put(("stream", notice))

    # Worker.on_generation (the SLA monitor lives in the server)
    def generation_done(self, seconds: float, ok: bool) -> None:
        self.outbox.put(("generation", seconds, ok))


class ZeroGpu:
    """Runs each claimed task inside a ZeroGPU call (see the module docstring)."""

    def __init__(self, worker: Worker, make_worker: Callable[[TaskStore, EventBus], Worker], database_url: str,
                 streams: StreamHub, max_seconds: int, gpu: Callable[..., Callable]):
        """``make_worker(store, bus)``: a worker like ``worker`` over another store and bus (the GPU
        process's); ``gpu``: ``spaces.GPU``."""
        self.worker, self.make_worker, self.database_url = worker, make_worker, database_url
        self.streams, self.max_seconds = streams, max_seconds
        self._callers: OrderedDict[str, contextvars.Context] = OrderedDict()
        self._callers_lock = threading.Lock()
        # Created before any fork, so the GPU process inherits it (a pickled one could not cross).
        self._stopping = multiprocessing.get_context("fork").Event()
        self._server_pid = os.getpid()
        self._here: tuple[Worker, ChildRelay] | None = None  # the GPU process's worker
        self._call = gpu(duration=self.gpu_seconds)(run_task_on_gpu)

    def install(self) -> None:
        """Make this the gate ``run_task_on_gpu`` uses (one studio per server process)."""
        global _gate
        _gate = self

    # -- in the server ----------------------------------------------------------------------

    def remember_callers(self, task_ids: list[str]) -> None:
        """``TaskStore.on_created``: keep the context of the call that created these tasks (a
        Gradio handler's holds the visitor's request) until they run."""
        context = contextvars.copy_context()
        with self._callers_lock:
            for task_id in task_ids:
                self._callers[task_id] = context
            while len(self._callers) > REMEMBERED_CALLERS:
                self._callers.popitem(last=False)

    def gpu_seconds(self, task_id: str) -> int:
        """The GPU time to ask for: the task's estimate with margins, within the platform's limit."""
        task = self.worker.store.get(task_id)
        estimate = task.estimated_seconds if task is not None and task.estimated_seconds else 0.0
        return min(self.max_seconds, max(MIN_GPU_SECONDS, math.ceil(estimate * ESTIMATE_MARGIN + MOVE_TO_GPU_SECONDS)))

    def run(self, task: Task) -> None:
        """Run the claimed ``task`` in a ZeroGPU call, delivering what it sends; never raises."""
        with self._callers_lock:
            context = self._callers.pop(task.id, None)
        self.worker.current_task_ids = [task.id]  # what health reports, and what a stop requeues
        try:
            (context or contextvars.copy_context()).run(self._run_call, task)
        finally:
            self.worker.current_task_ids = []

    def begin_stop(self) -> None:
        """The server stops: the run in the GPU process stops at its next step and is requeued."""
        self._stopping.set()

    def _run_call(self, task: Task) -> None:
        refusal: str | None = None
        try:
            for message in self._call(task.id):
                self._deliver(message)
        except Exception as error:  # the platform refused the GPU, or the GPU process died
            refusal = str(error) or type(error).__name__
            log.warning("ZeroGPU call for task %s failed: %s", task.id, refusal)
        try:
            self._end_unfinished(refusal)
        except Exception:  # the store failed: the next start fails them as interrupted
            log.exception("could not end the tasks of the ZeroGPU call for task %s", task.id)

    def _end_unfinished(self, refusal: str | None) -> None:
        """This thread is the only runner: what still runs after the call was the call's, and
        nothing will ever end it but this."""
        detail = f"ZeroGPU: {refusal}" if refusal else "ZeroGPU: the GPU process ended without ending the task"
        for lost in filter(None, map(self.worker.store.get, self.worker.store.running_ids())):
            self.worker.end_failed(lost, detail, GPU_UNAVAILABLE, title="GPU unavailable")

    def _deliver(self, message: tuple) -> None:
        """Hand a message of the GPU process to this process's followers. A message that cannot be
        delivered costs its followers one update (the task row holds the truth), not the run."""
        try:
            self._deliver_one(message)
        except Exception:
            log.exception("a message from the ZeroGPU process could not be delivered: %r", message[:2])

    def _deliver_one(self, message: tuple) -> None:
        kind = message[0]
        if kind == "event":
            event = Event(message[1], message[2], message[3])
            self.worker.bus.publish(event)
            if event.is_final:
                self.streams.finish(event.task_id, event.to_message())
        elif kind == "stream":
            self.streams.apply(message[1])
        elif kind == "generation" and self.worker.on_generation is not None:
            self.worker.on_generation(message[1], message[2])

    # -- in the GPU process -----------------------------------------------------------------

    def run_here(self, task_id: str) -> Iterator[tuple]:
        """Run the claimed task on this process's worker; yield its messages as they come."""
        if os.getpid() == self._server_pid:
            raise RuntimeError("the ZeroGPU call ran in the server process: is `spaces` in ZeroGPU mode?")
        worker, relay = self._process_worker()
        task = worker.store.get(task_id)
        if task is None or task.status not in st.RUNNING_STATUSES:
            return  # cancelled between its claim and this call
        relay.outbox = outbox = queue.Queue()

        def run() -> None:
            try:
                worker.run_task(task)
            finally:
                outbox.put(_DONE)

        threading.Thread(target=run, name="studio-zerogpu-run", daemon=True).start()
        while (message := outbox.get()) is not _DONE:
            yield message

    def _process_worker(self) -> tuple[Worker, ChildRelay]:
        """This GPU process's worker, built on its first call (the platform reuses the process)."""
        if self._here is None:
            store = TaskStore(Database(self.database_url))  # the server's connections are not ours
            relay = ChildRelay(store, self.streams.root)
            bus = EventBus()
            bus.relay = relay
            worker = self.make_worker(store, bus)
            worker.live = relay
            worker.streams = StreamHub(self.streams.root.with_name(self.streams.root.name + "-gpu"), relay=relay)
            worker.on_generation = relay.generation_done
            threading.Thread(target=self._stop_when_server_stops, args=(worker,), name="studio-zerogpu-stop",
                             daemon=True).start()
            self._here = worker, relay
        return self._here

    def _stop_when_server_stops(self, worker: Worker) -> None:
        self._stopping.wait()
        worker.begin_stop()

