"""Scale-out over worker processes (issue 12): throughput with 1 and with 2 Celery workers.

For each worker count W (1, then 2) the script starts a fresh distributed topology on loopback
(``tests.distributed.Topology``: PostgreSQL schema, Redis broker database, one API process
``python app.py --role api`` and W worker processes ``python -m studio worker``), in a data folder
of its own, with the offline tiny model on CPU. Once the workers' heartbeats are in it warms every
worker up (one task each, until the task rows show every worker ran one), then submits ``--tasks``
small text-to-video tasks at once (distinct prompts, fixed seeds) and measures

  wall s       first submit -> last task seen in a terminal state (client clock)
  tasks/min    tasks / wall
  API status   latency of ``GET /v1/status/{id}`` during the run: one thread, one keep-alive
               connection, a random unfinished task each time, paced at ``--poll-rate`` requests/s
               (0: back to back); the same polls detect the completions, so the last task is
               seen done within one poll

and prints them with the throughput ratio 2 workers / 1 worker. Extra columns: how many tasks each
worker ran (the claiming worker in the task rows), the mean run time of one task (started_at ->
finished_at), the CPU each process kept busy during the run (100% = one core; workers include
their ffmpeg children) and the same wall time on the database's clock (first created_at -> last
finished_at). Log lines worth a look (errors, warnings, reconciliation re-sends) are listed last.

Why one core and one torch thread per worker: each worker process is started under
``taskset -c <core>`` (worker i on core i of ``--cores``; its Celery prefork child inherits the
affinity) and with ``OMP_NUM_THREADS=1``/``MKL_NUM_THREADS=1`` (``Topology.env``; the tiny model's
loader also calls ``torch.set_num_threads(1)``). A worker can then use exactly one core, so a
second worker adds one core's worth of compute and nothing else, and the ratio measures scale-out
over processes (independent claims from the database queue, one model per process), not torch
using more threads inside one process. Unpinned, one worker's torch would spread over both cores
and the comparison would be threading against processes.

The API process is not pinned. On the 2-core VM it shares both cores with the workers (and with
this script's poller, PostgreSQL and Redis): with 2 workers every core is busy generating, so each
status request and each task's bookkeeping (claims, progress writes, events) competes with a
worker for CPU. That is why the ratio stays below 2 and why the status p99 rises with 2 workers;
on a machine with a core to spare for the API the ratio would be closer to 2.

    .venv/bin/python bench/bench_scale.py [--tasks 12] [--steps 10] [--poll-rate 50]
                                          [--workers 1,2] [--cores 0,1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from tests.conftest import AUTH  # noqa: E402
from tests.distributed import Topology, services_up  # noqa: E402
from machine import describe as machine  # noqa: E402  (bench/machine.py)

TERMINAL = ("completed", "failed", "cancelled")
PROMPTS = ["a red fox running through snow", "a lighthouse in a storm, waves crashing",
           "a paper boat drifting down a rain gutter", "a hot air balloon over a desert at dawn",
           "a cat chasing a laser dot across a wooden floor", "neon signs reflected in a wet street",
           "a hummingbird hovering at a red flower", "a train crossing a snowy mountain bridge",
           "waves rolling onto a black sand beach", "a candle flame flickering in the dark",
           "autumn leaves falling in a city park", "a jellyfish pulsing in deep blue water"]


def small_request(i: int, steps: int) -> dict:
    prompt = PROMPTS[i % len(PROMPTS)] + (f", take {i // len(PROMPTS) + 1}" if i >= len(PROMPTS) else "")
    return {"prompt": prompt, "duration_seconds": 1.0, "fps": 12, "resolution": "480p",
            "num_inference_steps": steps, "seed": 1000 + i, "model": "tiny"}


class PinnedTopology(Topology):
    """A Topology whose processes named in ``pins`` run under ``taskset -c <core>``."""

    def __init__(self, folder: Path, pins: dict[str, int]):
        super().__init__(folder)
        self.pins = pins

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        prefix = ["taskset", "-c", str(self.pins[name])] if name in self.pins else []
        log = open(self.folder / f"{name}.log", "ab")
        process = subprocess.Popen([*prefix, sys.executable, *argv], cwd=ROOT, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process


def affinity(pid: int) -> str:
    """The CPU affinity of ``pid`` and of its descendants (the Celery prefork child), e.g. '0 0'."""
    try:
        proc = psutil.Process(pid)
        return " ".join(",".join(map(str, p.cpu_affinity())) for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return "?"


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (live ones, and exited ones waited for)."""
    total = 0.0
    try:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()  # children_*: exited children it waited for (ffmpeg)
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000


@dataclass
class Run:
    workers: int
    tasks: int
    wall: float = 0.0
    submit_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds per 200 status answer
    errors: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # terminal status -> count
    per_worker: dict[str, int] = field(default_factory=dict)  # worker name -> measured tasks run
    affinity: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> cores busy during the run
    server_wall: float | None = None  # first created_at -> last finished_at (database clock)
    task_seconds: float | None = None  # mean started_at -> finished_at of one task
    log_errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def per_minute(self) -> float:
        return self.tasks / self.wall * 60 if self.wall else 0.0


class Poller(threading.Thread):
    """Status polls of random unfinished tasks; records latencies and when each task ended."""

    def __init__(self, url: str, rate: float, run: Run):
        super().__init__(daemon=True)
        self.url, self.rate, self.run_ = url, rate, run
        self.ids: list[str] = []  # appended by the submitter
        self.done: dict[str, tuple[str, float]] = {}  # task id -> (terminal status, monotonic time seen)
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=30) as http:
            due = time.monotonic()
            while not self.stopping.is_set():
                with self.lock:
                    pending = [i for i in self.ids if i not in self.done]
                if not pending:
                    time.sleep(0.005)
                    due = time.monotonic()
                    continue
                if self.rate > 0:
                    due += 1 / self.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        due = time.monotonic()  # fell behind: do not burst to catch up
                task_id = random.choice(pending)
                started = time.perf_counter()
                try:
                    reply = http.get(f"/v1/status/{task_id}")
                except httpx.HTTPError as exc:
                    self._error(type(exc).__name__)
                    continue
                elapsed = time.perf_counter() - started
                if reply.status_code != 200:
                    self._error(f"HTTP {reply.status_code}")
                    continue
                self.run_.latencies.append(elapsed)
                status = reply.json()["status"]
                if status in TERMINAL:
                    with self.lock:
                        self.done.setdefault(task_id, (status, time.monotonic()))

    def _error(self, kind: str) -> None:
        self.run_.errors[kind] = self.run_.errors.get(kind, 0) + 1

    def all_done(self) -> bool:
        with self.lock:
            return bool(self.ids) and all(i in self.done for i in self.ids)


def worker_names(topology: Topology) -> dict[int, str]:
    """pid of each worker process and of its descendants -> its topology name."""
    names = {}
    for name, process in topology.processes.items():
        if name.startswith("worker"):
            try:
                proc = psutil.Process(process.pid)
                for p in [proc, *proc.children(recursive=True)]:
                    names[p.pid] = name
            except psutil.Error:
                pass
    return names


def worker_ids(topology: Topology) -> dict[str, str]:
    """Registry id of each live worker -> its topology name."""
    names = worker_names(topology)
    return {w.id: names.get(w.pid, w.id) for w in topology.alive_workers()}


def task_rows(topology: Topology) -> dict[str, tuple]:
    """task id -> (status, worker_id, created_at, started_at, finished_at), from the database."""
    from studio.db import Database

    database = Database(topology.database_url)
    try:
        with database.connect() as db:
            rows = db.exec_driver_sql("SELECT id, status, worker_id, created_at, started_at, finished_at "
                                      "FROM tasks").all()
        return {r[0]: tuple(r[1:]) for r in rows}
    finally:
        database.dispose()


def ran_by(topology: Topology, ids: list[str]) -> dict[str, int]:
    """Worker name -> how many of ``ids`` it ran (the claiming worker the task row records)."""
    names, rows = worker_ids(topology), task_rows(topology)
    counts = {name: 0 for name in names.values()}
    for task_id in ids:
        worker = rows.get(task_id, (None, None))[1]
        name = names.get(worker, worker or "?")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def wait_terminal(http: httpx.Client, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        for task_id in ids:
            if task_id not in states:
                status = http.get(f"/v1/status/{task_id}").json()["status"]
                if status in TERMINAL:
                    states[task_id] = status
        if len(states) == len(ids):
            return states
        time.sleep(0.2)
    raise TimeoutError(f"{len(ids) - len(states)} of {len(ids)} tasks did not end in {timeout:g} s")


def warm_up(topology: Topology, http: httpx.Client, workers: int, steps: int, timeout: float) -> None:
    """One task per worker, until every worker has run at least one (model loaded, caches warm)."""
    warm_ids: list[str] = []
    for round_ in range(4):
        done = ran_by(topology, warm_ids)
        if len(done) >= workers and all(n >= 1 for name, n in done.items() if name.startswith("worker")):
            return
        ids = [http.post("/v1/generate", json={**small_request(900 + round_ * workers + i, steps),
                                                "prompt": f"warm-up {round_} {i}"}).json()["task_id"]
               for i in range(workers)]
        warm_ids += ids
        states = wait_terminal(http, ids, timeout)
        if any(s != "completed" for s in states.values()):
            raise RuntimeError(f"a warm-up task did not complete: {states}\n{topology.logs()}")
    print(f"warning: not every worker ran a warm-up task: {ran_by(topology, warm_ids)}", file=sys.stderr)


NOTABLE = ("Traceback", "ERROR", "Error", "CRITICAL", "WARNING", "re-announced")


def log_errors(topology: Topology) -> dict[str, list[str]]:
    """Process name -> its log lines worth a look (errors, warnings, reconciliation re-sends)."""
    found = {}
    for name in topology.processes:
        path = topology.folder / f"{name}.log"
        if not path.exists():
            continue
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
                 if any(word in line for word in NOTABLE)]
        if lines:
            found[name] = lines
    return found


def run_once(workers: int, tasks: int, steps: int, poll_rate: float, cores: list[int], timeout: float,
             keep: bool) -> Run:
    run = Run(workers=workers, tasks=tasks)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-scale-{workers}w-"))
    names = [f"worker{i + 1}" for i in range(workers)]
    topology = PinnedTopology(folder, pins={name: cores[i % len(cores)] for i, name in enumerate(names)})
    poller = None
    try:
        started = time.monotonic()
        url = topology.start_api("api")
        for name in names:
            topology.start_worker(name)
        print(f"[{workers} worker(s)] topology up in {time.monotonic() - started:.1f} s ({folder})", file=sys.stderr)
        run.affinity = {name: affinity(topology.processes[name].pid) for name in ["api", *names]}
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as http:
            warm_up(topology, http, workers, steps, timeout)
            poller = Poller(url, poll_rate, run)
            poller.start()
            pids = {name: topology.processes[name].pid for name in ["api", *names]}
            cpu0 = {name: process_tree_cpu(pid) for name, pid in pids.items()}
            t_cpu = time.monotonic()
            first_submit = time.monotonic()
            for i in range(tasks):
                reply = http.post("/v1/generate", json=small_request(i, steps))
                if reply.status_code != 202:
                    raise RuntimeError(f"submit {i}: HTTP {reply.status_code} {reply.text}")
                with poller.lock:
                    poller.ids.append(reply.json()["task_id"])
            run.submit_seconds = time.monotonic() - first_submit
            deadline = time.monotonic() + timeout
            while not poller.all_done():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{workers} worker(s): tasks still running after {timeout:g} s\n"
                                       f"{topology.logs()}")
                time.sleep(0.05)
            poller.stopping.set()
            poller.join(30)
            run.wall = max(t for _, t in poller.done.values()) - first_submit
            span = time.monotonic() - t_cpu
            run.cpu = {name: (process_tree_cpu(pid) - cpu0[name]) / span for name, pid in pids.items()}
            for status, _ in poller.done.values():
                run.outcomes[status] = run.outcomes.get(status, 0) + 1
            run.per_worker = ran_by(topology, poller.ids)
            run.server_wall, run.task_seconds = server_times(topology, poller.ids)
    except BaseException:
        print(topology.logs(), file=sys.stderr)
        raise
    finally:
        if poller is not None:
            poller.stopping.set()
        topology.stop()
        run.log_errors = log_errors(topology)
        if keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return run


def server_times(topology: Topology, ids: list[str]) -> tuple[float | None, float | None]:
    """(first created_at -> last finished_at, mean started_at -> finished_at) of ``ids`` as the
    database recorded them; None where a row or a time is missing."""
    rows = task_rows(topology)
    mine = [rows[i] for i in ids if i in rows]
    if len(mine) != len(ids) or any(r[4] is None for r in mine):
        return None, None
    runs = [r[4] - r[3] for r in mine if r[3] is not None]
    return max(r[4] for r in mine) - min(r[2] for r in mine), (sum(runs) / len(runs) if runs else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=12, help="tasks per run (default 12)")
    parser.add_argument("--steps", type=int, default=10, help="num_inference_steps of each task (default 10)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated (default 1,2)")
    parser.add_argument("--cores", default="0,1", help="cores the workers are pinned to, worker i on the "
                                                       "i-th (default 0,1)")
    parser.add_argument("--poll-rate", type=float, default=50.0,
                        help="status requests/s of the poller during a run (0: back to back; default 50)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a run may take (default 900)")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder (logs, data)")
    args = parser.parse_args()
    why = services_up()
    if why is not None:
        sys.exit(f"the distributed topology cannot run here: {why}")
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    cores = [int(c) for c in args.cores.split(",") if c.strip()]
    if max(cores) >= (os.cpu_count() or 1):
        sys.exit(f"--cores {args.cores}: this machine has {os.cpu_count()} CPUs")

    runs = [run_once(w, args.tasks, args.steps, args.poll_rate, cores, args.timeout, args.keep) for w in counts]

    print(f"machine: {machine()}")
    print(f"load: {args.tasks} tiny-model tasks per run (1 s, 12 fps, 480p, {args.steps} steps, distinct prompts, "
          "fixed seeds), submitted at once after a warm-up task per worker")
    print(f"workers: `taskset -c <core> python -m studio worker`, cores {args.cores}, OMP_NUM_THREADS=1; "
          "API process (app.py --role api) unpinned; PostgreSQL + Redis on loopback")
    print(f"API status: GET /v1/status/<random unfinished task>, one thread, one keep-alive connection, "
          f"{'back to back' if args.poll_rate <= 0 else f'{args.poll_rate:g} req/s'}; NOTE: the API, the "
          f"poller, PostgreSQL and Redis share the {os.cpu_count()} cores with the workers")
    print()
    print("| workers | tasks | wall s | tasks/min | API status p50 ms | p99 ms | status reqs | errors "
          "| tasks per worker | run s/task | CPU (cores busy) | server wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        errors = str(sum(r.errors.values())) + (f" ({', '.join(f'{k}: {v}' for k, v in r.errors.items())})"
                                                 if r.errors else "")
        outcome = "" if r.outcomes.get("completed", 0) == r.tasks else f" ({r.outcomes})"
        per_worker = ", ".join(f"{k}: {v}" for k, v in r.per_worker.items())
        cpu = ", ".join(f"{k} {v:.0%}" for k, v in r.cpu.items())
        server = f"{r.server_wall:.1f}" if r.server_wall is not None else "?"
        task_s = f"{r.task_seconds:.2f}" if r.task_seconds is not None else "?"
        print(f"| {r.workers} | {r.tasks}{outcome} | {r.wall:.1f} | {r.per_minute:.1f} | {pct(r.latencies, 50):.1f} | "
              f"{pct(r.latencies, 99):.1f} | {len(r.latencies)} | {errors} | {per_worker} | {task_s} | {cpu} | {server} |")
    print()
    by_count = {r.workers: r for r in runs}
    if 1 in by_count and 2 in by_count and by_count[1].per_minute:
        print(f"throughput ratio 2 workers / 1 worker: {by_count[2].per_minute / by_count[1].per_minute:.2f}")
    for r in runs:
        print(f"{r.workers} worker(s): affinity {', '.join(f'{k} [{v}]' for k, v in r.affinity.items())}; "
              f"submits took {r.submit_seconds:.2f} s")
        for name, lines in r.log_errors.items():
            print(f"  {name}.log: {len(lines)} notable line(s), e.g. {lines[-1][:200]}")


if __name__ == "__main__":
    main()
