"""The distributed topology on loopback, every part its own process: API processes
(``python app.py --role api``), Celery workers (``python -m studio worker``), PostgreSQL (a schema
of its own), Redis (a database number of its own as the broker; live events and flags).

Used by the tests of issue 12 (tests/test_distributed_*.py). Each process writes its log to the
topology's folder; ``Topology.logs()`` returns them for a failing test's message.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, AUTH, OTHER_KEY, free_port

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
START_SECONDS = 90


def _next_broker_db() -> int:
    """A Redis database number (1-15) for this topology's broker, taken in turn so that two
    topologies running at once (two test sessions) do not share one."""
    import redis

    return int(redis.Redis.from_url(f"{REDIS}/0").incr("echoel:test-broker-db")) % 15 + 1


def services_up(rabbitmq: bool = False) -> str | None:
    """Why the topology cannot run here (None: PostgreSQL, Redis, RabbitMQ when asked, and the
    drivers are there)."""
    import importlib.util

    for module in ("psycopg", "redis", "celery"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed"
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) + ((("RabbitMQ", 5672),) if rabbitmq else ()):
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return f"no {name} on 127.0.0.1:{port}"
    return None


def require_services(rabbitmq: bool = False) -> None:
    """Skip outside CI when a service is missing; in CI (.ci/run starts them) that is a failure."""
    why = services_up(rabbitmq)
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the distributed topology needs its services in CI: {why}")
        pytest.skip(why)


def _run_sql(statement: str) -> None:
    from studio.db import Database

    database = Database(PG_BASE)
    try:
        with database.transaction() as db:
            db.exec_driver_sql(statement)
    finally:
        database.dispose()


class Topology:
    """PostgreSQL schema + Redis database + any number of API and worker processes."""

    def __init__(self, folder: Path, rate_limits: str = "generate=1000 per 1 second;batch=1000 per 1 second;"
                                                         "default=10000 per 1 second", broker: str = "redis",
                 extra_env: dict[str, str] | None = None, shared_data: bool = True):
        self.folder = folder
        self.data_dir = folder / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.schema = "echoel_dist_" + uuid.uuid4().hex[:10]
        self.database_url = f"{PG_BASE}?options=-csearch_path%3D{self.schema}"
        self.broker_db = _next_broker_db()
        self.rate_limits = rate_limits
        # RabbitMQ: the default vhost, shared with any other topology running at once; a message
        # another topology's worker takes is made good by this one's reconciliation.
        self.broker_url = RABBITMQ if broker == "amqp" else f"{REDIS}/{self.broker_db}"
        self.extra_env = dict(extra_env or {})
        # False: every process its own data folder, as on machines that share none (media then
        # cross through object storage, ECHOEL_MEDIA_URL in extra_env).
        self.shared_data = shared_data
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self._create_schema()

    # -- environment ------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ECHOEL_")}
        env.update({
            "ECHOEL_DATABASE_URL": self.database_url,
            "ECHOEL_BROKER_URL": self.broker_url,
            "ECHOEL_REDIS_URL": f"{REDIS}/0",
            "ECHOEL_DATA_DIR": str(self.data_dir),
            "ECHOEL_MODEL": "tiny",
            "ECHOEL_API_KEYS": f"{API_KEY},{OTHER_KEY}",
            "ECHOEL_ALLOW_LOOPBACK_URLS": "1",
            "ECHOEL_WEBHOOK_RETRY_BASE": "0.2",
            "ECHOEL_RATE_LIMITS": self.rate_limits,
            "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            # One torch thread per worker: two workers on two cores measure scale-out, not threading.
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
            **self.extra_env,
        })
        return env

    def data_dir_of(self, name: str) -> Path:
        """The data folder process ``name`` uses."""
        return self.data_dir if self.shared_data else self.folder / f"{name}-data"

    def _create_schema(self) -> None:
        _run_sql(f"CREATE SCHEMA {self.schema}")
        import redis

        redis.Redis.from_url(f"{REDIS}/{self.broker_db}").flushdb()

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")
        env = {**self.env, "ECHOEL_DATA_DIR": str(self.data_dir_of(name))}
        process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def start_api(self, name: str = "api") -> str:
        """Start an API process; returns its base URL once it answers /health."""
        port = free_port()
        self.ports[name] = port
        self._spawn(name, ["app.py", "--role", "api", "--host", "127.0.0.1", "--port", str(port)])
        url = f"http://127.0.0.1:{port}"
        self._wait(name, lambda: httpx.get(f"{url}/v1/health", headers=AUTH, timeout=2).status_code == 200)
        return url

    def start_worker(self, name: str, models: str | None = None) -> None:
        """Start a Celery worker process serving ``models`` (comma-separated; None: every model,
        as the embedded worker); returns once its heartbeat is in."""
        argv = ["-m", "studio", "worker", "--hostname", f"{name}@%h", "--loglevel", "warning"]
        started = time.time()
        self._spawn(name, argv + (["--models", models] if models else []))
        self._wait(name, lambda: any(w.started_at >= started for w in self.alive_workers()))

    def alive_workers(self) -> list:
        from studio.db import Database
        from studio.jobs.workers import WorkerRegistry

        database = Database(self.database_url)
        try:
            return WorkerRegistry(database).alive()
        except Exception:  # not migrated yet
            return []
        finally:
            database.dispose()

    def url(self, name: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def _wait(self, name: str, ready) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited ({self.processes[name].returncode}):\n{self.log(name)}")
            try:
                if ready():
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready in {START_SECONDS} s:\n{self.log(name)}")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group of ``name`` (a Celery worker's children too)."""
        process = self.processes[name]
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(30)

    def stop(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for name, process in self.processes.items():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill(name)
        _run_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Stop every process and drop the schema; when starting failed, print every log first."""
        if error is not None:
            print(self.logs())
        self.stop()

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.processes)
