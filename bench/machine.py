"""The machine a benchmark ran on, in one line for its printed table (figures are recorded with it)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil


def describe() -> str:
    """CPU count and model, memory, Python and OS, e.g. "2 CPUs (Intel Xeon ...), 24 GiB, Python 3.11.7, Linux"."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}, {platform.system()}"


def run_children(script: str, options: list[str], durations: str) -> list[dict]:
    """``script options --child D`` for each of the comma-separated ``durations``, each in a fresh
    child process (so its peak RSS is its own, offline); the JSON object each printed last."""
    import json
    import subprocess
    import sys

    rows = []
    for duration in durations.split(","):
        child = subprocess.run([sys.executable, script, *options, "--child", duration], capture_output=True, text=True,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if child.returncode:
            sys.exit(f"the {duration} s run failed:\n{child.stderr[-3000:]}")
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return rows
