"""Load on ``GET /v1/status/{task_id}``: latency and throughput at rising request rates.

Starts ``python app.py`` (tiny model, a temp data dir) as a separate process with one API key
(``ECHOEL_API_KEYS=bench-key``) and the default rate limit raised to 100000 per second, so
authentication and rate limiting stay in the path. Submits one small task, waits until it has
completed, then polls its status with the key at each target rate for ``--duration`` seconds.

The load is open-loop: request i is due at ``start + i / rate`` whether or not earlier ones
have answered (a client that waits for answers would hide server queueing). Latency is measured
from that due time to the end of the response, so time a request spent waiting in the client
(for a connection, or for the event loop) counts too; ``lag p99`` says how late requests were
actually sent. Errors are non-200 answers, timeouts (``--timeout`` for the whole request) and
connection errors.

The load generator runs on the same cores as the server, and its CPU time is printed next to
the server's and to that of everything else on the machine ("other"). Two clients:

  httpx  httpx.AsyncClient, one event loop, <= 64 keep-alive connections (the default)
  raw    a minimal HTTP/1.1 keep-alive client on asyncio streams, <= 64 connections: ~0.3 ms
         of CPU per request against ~3 ms for httpx on the 2-vCPU VM, where one httpx event loop
         saturates its core at about 250 requests/s and then measures itself; the goal verdict
         says INCONCLUSIVE when that happens

    .venv/bin/python bench/bench_status_load.py [--client httpx|raw] [--rates 50,100,200,300,400]
                                                [--duration 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from machine import describe as machine  # bench/machine.py

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SMALL = {"prompt": "a red fox running through snow", "duration_seconds": 1, "fps": 12,
         "resolution": "480p", "num_inference_steps": 10, "model": "tiny"}
GOAL_RATE, GOAL_P99_MS = 300, 25.0
MAX_CONNECTIONS = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "ECHOEL_API_KEYS": KEY, "ECHOEL_RATE_LIMITS": "default=100000 per 1 second",
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", "tiny",
                                 "--data-dir", str(data_dir)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", headers=AUTH, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not start")


def completed_task(base: str) -> str:
    with httpx.Client(base_url=base, headers=AUTH, timeout=60) as http:
        reply = http.post("/v1/generate", json=SMALL)
        reply.raise_for_status()
        task_id = reply.json()["task_id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            body = http.get(f"/v1/status/{task_id}").json()
            if body["status"] in ("completed", "failed", "cancelled"):
                if body["status"] != "completed":
                    raise RuntimeError(f"task ended {body['status']}: {body.get('error')}")
                return task_id
            time.sleep(0.2)
    raise TimeoutError("the task did not complete")


# -- clients: `async with Client(host, port) as c: status = await c.get(path)` ---------------------

class HttpxClient:
    name = "httpx.AsyncClient"

    def __init__(self, host: str, port: int):
        limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS)
        self._client = httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=AUTH, limits=limits,
                                         timeout=None)  # the caller bounds each request as a whole

    async def __aenter__(self) -> "HttpxClient":
        await self._client.__aenter__()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._client.__aexit__(*exc)

    async def get(self, path: str) -> int:
        return (await self._client.get(path)).status_code


class RawClient:
    """HTTP/1.1 GETs with keep-alive over a pool of asyncio stream connections; reads exactly
    Content-Length bytes of body (uvicorn always sends it for these JSON answers)."""

    name = "raw asyncio HTTP/1.1"

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._all: set[asyncio.StreamWriter] = set()
        self._head = (f"Host: {host}:{port}\r\nAuthorization: {AUTH['Authorization']}\r\n"
                      "Accept: application/json\r\n\r\n").encode()

    async def __aenter__(self) -> "RawClient":
        return self

    async def __aexit__(self, *exc) -> None:
        for writer in self._all:
            writer.close()

    async def get(self, path: str) -> int:
        async with self._slots:
            if self._idle:
                try:
                    return await self._get(path, *self._idle.pop())
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    # A pooled connection the server closed while idle (uvicorn's keep-alive
                    # timeout is 5 s): retry once on a fresh one, as any HTTP client does.
                    if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                        raise
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.add(writer)
            return await self._get(path, reader, writer)

    async def _get(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        try:
            writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._head)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            await reader.readexactly(length)
        except BaseException:
            writer.close()
            self._all.discard(writer)
            raise
        if close:
            writer.close()
            self._all.discard(writer)
        else:
            self._idle.append((reader, writer))
        return status


CLIENTS = {"httpx": HttpxClient, "raw": RawClient}


# -- the load --------------------------------------------------------------------------------------

@dataclass
class Stage:
    rate: float
    duration: float
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, due time -> 200 response end
    lags: list[float] = field(default_factory=list)  # seconds, due time -> request started
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0  # first due time -> last answer
    client_cpu: float = 0.0  # cores (1.0 = one core busy all the time)
    server_cpu: float = 0.0
    other_cpu: float = 0.0  # everything on the machine but server and client
    server_cpu_ms: float = 0.0  # server CPU time per 200 answer

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @staticmethod
    def pct(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def run_stage(client, path: str, stage: Stage, timeout: float) -> None:
    count = int(stage.rate * stage.duration)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()
    last_end = 0.0

    async def one(due: float) -> None:
        nonlocal last_end
        stage.lags.append(loop.time() - due)
        try:
            status = await asyncio.wait_for(client.get(path), timeout)
            if status == 200:
                stage.latencies.append(loop.time() - due)
            else:
                stage.error(f"HTTP {status}")
        except asyncio.TimeoutError:
            stage.error("timeout")
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            stage.error(type(exc).__name__)
        last_end = max(last_end, loop.time())

    start = loop.time() + 0.05
    for i in range(count):
        due = start + i / stage.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due))
        pending.add(task)
        task.add_done_callback(pending.discard)
        stage.sent += 1
    if pending:
        await asyncio.wait(pending)  # each one ends within `timeout`
    stage.elapsed = max(last_end - start, 1e-9)


def busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all cores) since boot."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


def process_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def run_all(client_kind: str, port: int, task_id: str, rates: list[float], duration: float,
                  timeout: float, server: psutil.Process) -> list[Stage]:
    me = psutil.Process()
    async with CLIENTS[client_kind]("127.0.0.1", port) as client:
        path = f"/v1/status/{task_id}"
        await run_stage(client, path, Stage(rate=50, duration=2), timeout)  # warm-up: connections, caches
        stages = []
        for rate in rates:
            stage = Stage(rate=rate, duration=duration)
            c0, s0, a0, t0 = process_seconds(me), process_seconds(server), busy_seconds(), time.monotonic()
            await run_stage(client, path, stage, timeout)
            c1, s1, a1, wall = process_seconds(me), process_seconds(server), busy_seconds(), time.monotonic() - t0
            stage.client_cpu = (c1 - c0) / wall
            stage.server_cpu = (s1 - s0) / wall
            stage.other_cpu = max(0.0, (a1 - a0) / wall - stage.client_cpu - stage.server_cpu)
            stage.server_cpu_ms = (s1 - s0) * 1000 / max(len(stage.latencies), 1)
            stages.append(stage)
            await asyncio.sleep(1.0)  # let the server drain between stages
        return stages


def other_load(seconds: float = 2.0) -> float:
    """Cores kept busy by other processes right now (this process is idle while measuring)."""
    a0, t0 = busy_seconds(), time.monotonic()
    time.sleep(seconds)
    return (busy_seconds() - a0) / (time.monotonic() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx")
    parser.add_argument("--rates", default="50,100,200,300,400", help="target requests/s, comma-separated")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    parser.add_argument("--timeout", type=float, default=5.0, help="limit for each whole request, seconds")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    port = args.port or free_port()

    idle_before = other_load()
    if idle_before > 0.1:
        print(f"warning: other processes keep {idle_before:.0%} of a core busy before the run; "
              "the figures below are not those of a quiet machine", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", port, Path(tmp) / "server.log")
        try:
            task_id = completed_task(f"http://127.0.0.1:{port}")
            stages = asyncio.run(run_all(args.client, port, task_id, rates, args.duration, args.timeout,
                                         psutil.Process(server.pid)))
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()

    print(f"machine: {machine()}")
    print("server: python app.py (uvicorn, 1 worker, tiny model), key auth + rate limiting on; "
          "GET /v1/status/<completed task> over loopback")
    print(f"client: {CLIENTS[args.client].name}, open loop, {args.duration:g} s per rate, "
          f"<= {MAX_CONNECTIONS} connections, timeout {args.timeout:g} s; NOTE: the load generator shares "
          f"the {os.cpu_count()} cores with the server")
    print(f"other load before the run: {idle_before:.0%} of a core. CPU columns: cores busy (100% = one core), "
          "from /proc; 'other' = everything but server and client")
    print()
    print("| offered req/s | sent | achieved req/s | p50 ms | p99 ms | max ms | errors | lag p99 ms "
          "| server CPU | server CPU ms/req | client CPU | other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in stages:
        errors = str(s.error_count) + (f" ({', '.join(f'{k}: {v}' for k, v in s.errors.items())})" if s.errors else "")
        print(f"| {s.rate:g} | {s.sent} | {s.throughput:.0f} | {s.pct(s.latencies, 50):.1f} | "
              f"{s.pct(s.latencies, 99):.1f} | {s.pct(s.latencies, 100):.1f} | {errors} | "
              f"{s.pct(s.lags, 99):.1f} | {s.server_cpu:.0%} | {s.server_cpu_ms:.2f} | "
              f"{s.client_cpu:.0%} | {s.other_cpu:.0%} |")
    print()
    goal = next((s for s in stages if s.rate == GOAL_RATE), None)
    if goal is None:
        print(f"goal: p99 under {GOAL_P99_MS:g} ms at {GOAL_RATE} requests/s with zero errors: not measured "
              f"({GOAL_RATE} is not among --rates)")
        return
    p99 = goal.pct(goal.latencies, 99)
    kept_up = goal.throughput >= 0.95 * GOAL_RATE
    met = p99 < GOAL_P99_MS and goal.error_count == 0 and kept_up
    if met:
        verdict = "MET"
    elif goal.client_cpu >= 0.9:
        # One event loop cannot use more than one core: past that, the client measures itself.
        verdict = (f"INCONCLUSIVE: the load generator itself saturated a core ({goal.client_cpu:.0%}); "
                   "rerun with --client raw")
    else:
        verdict = "MISSED"
    print(f"goal: p99 under {GOAL_P99_MS:g} ms at {GOAL_RATE} requests/s with zero errors: {verdict} "
          f"(p99 {p99:.1f} ms, {goal.error_count} errors, achieved {goal.throughput:.0f} req/s, "
          f"server CPU {goal.server_cpu:.0%}, client CPU {goal.client_cpu:.0%})")


if __name__ == "__main__":
    main()
