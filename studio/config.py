"""One Settings object for the whole process: environment variables, overridden by CLI flags.

Read once at start-up (``Settings.from_env`` / ``app.py``'s argument parser) and passed down;
nothing else in the code base reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

AUTO_MODEL = "auto"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() not in ("", "0", "false", "no")


# Per-key request limits, in the ``limits`` library's notation (a moving window). Each keeps the
# seed's burst and long-run rate: /generate 1 per 2 s with a burst of 5 = 5 per 10 s; batch
# 1 per 10 s, burst 2 = 2 per 20 s; everything else 10/s, burst 50 = 50 per 5 s.
DEFAULT_RATE_LIMITS = {"generate": "5 per 10 seconds", "batch": "2 per 20 seconds", "default": "50 per 5 seconds"}


def _env_rate_limits() -> dict[str, str]:
    """``ECHOEL_RATE_LIMITS="generate=5 per 10 seconds;default=1000 per 1 second"`` overrides."""
    limits = dict(DEFAULT_RATE_LIMITS)
    for part in os.environ.get("ECHOEL_RATE_LIMITS", "").split(";"):
        if "=" in part:
            name, value = part.split("=", 1)
            limits[name.strip()] = value.strip()
    return limits


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration.

    Attributes:
        host: interface the HTTP server binds to.
        port: HTTP port (UI at ``/``, REST at ``/v1``, OpenAPI docs at ``/docs``).
        model: default model id for requests that name none; ``auto`` picks ``tiny`` when no
            CUDA device is present and the smallest real Wan model otherwise.
        data_dir: where the task store, videos, previews and the offline tiny model live.
        production: hide internal error text from UI users (REST never leaks it anyway).
        preview_width: width in pixels of the live preview JPEGs.
        api_keys: keys accepted besides those created with ``python -m studio keys create``
            (``ECHOEL_API_KEYS``, comma-separated; for development and tests).
        rate_limits: per-key limits by endpoint class (``generate``, ``batch``, ``default``).
        max_body_bytes: larger request bodies are refused with 413.
        max_lora_mb: the largest LoRA file ``POST /v1/loras`` takes (``ECHOEL_MAX_LORA_MB``).
        upscaler_model: generate's learned upscaler (``ECHOEL_UPSCALER_MODEL``): an ESRGAN-family
            file, or ``hub:<owner>/<repository>/<file>``; None: ``upscaler: "learned"`` gets 503.
        mcp_server: serve the Gradio API's functions as MCP tools at ``/gradio_api/mcp/`` (``ECHOEL_MCP``,
            on unless ``0``).
        interpolator_model: generate's learned frame interpolator (``ECHOEL_INTERPOLATOR_MODEL``): a RIFE
            4.6 file, or ``hub:<owner>/<repository>/<file>``; None: ``interpolator: "learned"`` gets 503.
        allow_loopback_urls: let the URL fetcher reach 127.0.0.0/8 and ::1 (tests only; every
            other non-global address stays refused).
        webhook_retry_base_seconds: first retry delay of a failed webhook (x4 per attempt).
        sla_level: the SLA level /v1/genius/sla/status compares against by default.
        min_free_mb: below this much free space on the data folder's disk new work is refused
            (507 ``StorageFull``) and the worker starts no run; both resume once space is freed.
        database_url: the SQLAlchemy URL of the studio's database (``ECHOEL_DATABASE_URL``);
            None: the SQLite file ``db_path``. Read it as ``db_url``.
        broker_url: the Celery broker (``ECHOEL_BROKER_URL``, ``redis://...`` or ``amqp://...``);
            None: tasks run on the in-process worker thread (the embedded default).
        redis_url: Redis for what several processes share live (``ECHOEL_REDIS_URL``): events,
            rate-limit counters, cancel flags; None: kept in this process.
        role: ``all`` (HTTP and the in-process worker, or HTTP alone when a broker is set),
            ``api`` (HTTP only; tasks go to Celery workers) or ``worker`` (a Celery worker's
            process, no HTTP).
        media_url: object storage for media (``ECHOEL_MEDIA_URL``, ``s3://bucket/prefix``); None:
            the media folder alone (one machine, or a folder every process mounts).
        s3_endpoint_url: an S3-compatible service's endpoint (``ECHOEL_S3_ENDPOINT_URL``); None: AWS.
        worker_models: the models a Celery worker serves (``ECHOEL_WORKER_MODELS``,
            comma-separated; empty: every model in the catalog); its queues follow from them.
        zero_gpu: on a Hugging Face ZeroGPU Space (``SPACES_ZERO_GPU``): each task runs inside a
            ``spaces.GPU`` call charged to its submitter (``studio.jobs.zero_gpu``).
        zero_gpu_max_seconds: the longest GPU call to ask ZeroGPU for
            (``ECHOEL_ZERO_GPU_MAX_SECONDS``; the platform refuses longer ones).
    """

    host: str = "127.0.0.1"
    port: int = 7860
    model: str = AUTO_MODEL
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    production: bool = False
    preview_width: int = 256
    api_keys: tuple[str, ...] = ()
    rate_limits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    max_body_bytes: int = 16 * 2**20
    max_lora_mb: int = 1024
    upscaler_model: str | None = None
    interpolator_model: str | None = None
    mcp_server: bool = True
    allow_loopback_urls: bool = False
    webhook_retry_base_seconds: float = 5.0
    sla_level: str = "standard"
    min_free_mb: int = 256
    database_url: str | None = None
    broker_url: str | None = None
    redis_url: str | None = None
    role: str = "all"
    media_url: str | None = None
    s3_endpoint_url: str | None = None
    worker_models: tuple[str, ...] = ()
    zero_gpu: bool = False
    zero_gpu_max_seconds: int = 300

    @classmethod
    def from_env(cls) -> "Settings":
        """Settings from ``ECHOEL_*`` environment variables (defaults where unset)."""
        base = cls()
        # A Hugging Face Space routes outside traffic to port 7860 of any interface.
        on_space = os.environ.get("SYSTEM") == "spaces"
        return replace(
            base,
            host=os.environ.get("ECHOEL_HOST", "0.0.0.0" if on_space else base.host),
            port=_env_int("ECHOEL_PORT", base.port),
            model=os.environ.get("ECHOEL_MODEL", base.model),
            data_dir=Path(os.environ.get("ECHOEL_DATA_DIR", str(base.data_dir))).resolve(),
            production=_env_flag("ECHOEL_PRODUCTION"),
            api_keys=tuple(k.strip() for k in os.environ.get("ECHOEL_API_KEYS", "").split(",") if k.strip()),
            rate_limits=_env_rate_limits(),
            max_body_bytes=_env_int("ECHOEL_MAX_BODY_BYTES", base.max_body_bytes),
            max_lora_mb=_env_int("ECHOEL_MAX_LORA_MB", base.max_lora_mb),
            upscaler_model=os.environ.get("ECHOEL_UPSCALER_MODEL") or None,
            interpolator_model=os.environ.get("ECHOEL_INTERPOLATOR_MODEL") or None,
            mcp_server=os.environ.get("ECHOEL_MCP", "1").lower() not in ("0", "false", "no", "off"),
            allow_loopback_urls=_env_flag("ECHOEL_ALLOW_LOOPBACK_URLS"),
            webhook_retry_base_seconds=_env_float("ECHOEL_WEBHOOK_RETRY_BASE", base.webhook_retry_base_seconds),
            sla_level=os.environ.get("ECHOEL_SLA_LEVEL", base.sla_level),
            min_free_mb=_env_int("ECHOEL_MIN_FREE_MB", base.min_free_mb),
            database_url=os.environ.get("ECHOEL_DATABASE_URL") or None,
            broker_url=os.environ.get("ECHOEL_BROKER_URL") or None,
            redis_url=os.environ.get("ECHOEL_REDIS_URL") or None,
            media_url=os.environ.get("ECHOEL_MEDIA_URL") or None,
            s3_endpoint_url=os.environ.get("ECHOEL_S3_ENDPOINT_URL") or None,
            worker_models=tuple(m.strip() for m in os.environ.get("ECHOEL_WORKER_MODELS", "").split(",") if m.strip()),
            # Set by Hugging Face on ZeroGPU hardware; read as the ``spaces`` package reads it.
            zero_gpu=os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"),
            zero_gpu_max_seconds=_env_int("ECHOEL_ZERO_GPU_MAX_SECONDS", base.zero_gpu_max_seconds),
        )

    # Folders under data_dir, one job each.
    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.sqlite3"

    @property
    def db_url(self) -> str:
        """The database the studio connects to: ``database_url``, else the SQLite file ``db_path``."""
        return self.database_url or f"sqlite:///{self.db_path}"

    @property
    def distributed(self) -> bool:
        """Whether tasks run on Celery workers (a broker is set) instead of this process's thread."""
        return self.broker_url is not None

    @property
    def maintenance_flag(self) -> Path:
        """While this file exists the server drains: new work gets 503, running tasks finish."""
        return self.data_dir / "MAINTENANCE"
