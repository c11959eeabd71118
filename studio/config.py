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
    """

    host: str = "127.0.0.1"
    port: int = 7860
    model: str = AUTO_MODEL
    data_dir: Path = field(default_factory=lambda: Path("data").resolve())
    production: bool = False
    preview_width: int = 256

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
            production=os.environ.get("ECHOEL_PRODUCTION", "") not in ("", "0", "false"),
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
