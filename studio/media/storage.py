"""Free space on the data folder's disk: checked before work is accepted and before a run starts.

A full disk is an ordinary fault, not a crash: submissions get 507 ``StorageFull``, the worker
leaves queued tasks queued (it starts no run it could not write), health reports the condition,
and all of it clears by itself once space is freed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from studio.errors import StorageFull


@dataclass(frozen=True)
class StorageGuard:
    """Watches the filesystem that holds ``root`` (the data folder)."""

    root: Path
    min_free_bytes: int

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer can still use on ``root``'s filesystem."""
        return shutil.disk_usage(self.root).free

    def low(self) -> bool:
        """True while less than ``min_free_bytes`` is free (or the folder cannot be read)."""
        try:
            return self.free_bytes() < self.min_free_bytes
        except OSError:
            return True

    def require_space(self) -> None:
        """Raise ``StorageFull`` (507) unless there is room for new work."""
        if self.low():
            raise StorageFull(f"the server's disk is almost full (under {self.min_free_bytes // 2**20} MiB free); "
                              "new tasks are refused until space is freed; retry later")
