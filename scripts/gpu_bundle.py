"""Build ``.gpu/``: what a lent GPU machine needs beyond its image to run the GPU benchmarks
(``bench/gpu_session.sh``), small enough to travel with the working tree (64 MiB a call).

Those machines reach no package registry; their image has PyTorch, transformers, accelerate and
peft but not diffusers, torchao, PyAV or the studio's service libraries. This script, run here
with the project's ``.venv``, puts in ``.gpu/whl`` the CPython 3.12 manylinux wheels, at the
versions installed here, of every distribution the studio's import path needs (the roots below
and what they require) that the image lacks, and in ``.gpu/site`` imageio-ffmpeg's Python package
without its 172 MB ffmpeg build (``bench/pyav_ffmpeg.py`` stands in for it there).

The image's package list is read from the device tool's notes (``KINDS.md``, beside this
project) when they are there; without them every required distribution is bundled.

    .venv/bin/python scripts/gpu_bundle.py          # then run bench/gpu_session.sh on the device
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".gpu"
#: The distributions the studio's engine and the benchmarks import (their requirements follow).
ROOTS = ("diffusers", "torchao", "pydantic", "SQLAlchemy", "alembic", "celery", "redis", "standardwebhooks",
         "librosa", "soundfile", "av", "prometheus-client", "peft", "opencv-python-headless")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64")
ENVIRONMENT = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
               "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
KINDS = ROOT.parent / ".library" / "device" / "KINDS.md"
LIMIT_BYTES = 56 * 2**20  # the bundle's share of the 64 MiB that travel (the working tree takes ~4)


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def on_the_image() -> set[str]:
    """The distributions the GPU image already has (empty when its notes are not here)."""
    if not KINDS.exists():
        return set()
    line = next((l for l in KINDS.read_text().splitlines() if "Packages: " in l), "")
    return {normal(name.strip().rstrip(".")) for name in line.split("Packages: ", 1)[-1].split(",") if name.strip()}


def needed(present: set[str]) -> dict[str, str]:
    """name -> version installed here, for every distribution the roots need that the image lacks."""
    wanted: dict[str, str] = {}
    queue = list(ROOTS)
    seen: set[str] = set()
    while queue:
        name = queue.pop()
        if normal(name) in seen:
            continue
        seen.add(normal(name))
        if normal(name) in present:
            continue  # the image has it (its version, whichever it is)
        dist = metadata.distribution(name)
        wanted[dist.metadata["Name"]] = dist.version
        for spec in dist.requires or ():
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate(ENVIRONMENT):
                queue.append(requirement.name)
    return wanted


def download(wanted: dict[str, str]) -> None:
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(BUNDLE / "whl"),
                    *(f"{name}=={version}" for name, version in sorted(wanted.items()))], check=True)


def imageio_ffmpeg_without_its_binary() -> None:
    import imageio_ffmpeg

    source = Path(imageio_ffmpeg.__file__).parent
    shutil.copytree(source, BUNDLE / "site" / "imageio_ffmpeg",
                    ignore=shutil.ignore_patterns("ffmpeg-*", "__pycache__"))


def main() -> int:
    shutil.rmtree(BUNDLE, ignore_errors=True)
    (BUNDLE / "whl").mkdir(parents=True)
    present = on_the_image()
    wanted = needed(present)
    print(f"image's packages: {len(present) or 'unknown (bundling everything)'}; bundling {len(wanted)}: "
          + ", ".join(f"{n}=={v}" for n, v in sorted(wanted.items())))
    download(wanted)
    imageio_ffmpeg_without_its_binary()
    size = sum(f.stat().st_size for f in BUNDLE.rglob("*") if f.is_file())
    print(f".gpu: {size / 2**20:.1f} MiB")
    if size > LIMIT_BYTES:
        print(f"too big to travel with the working tree (limit {LIMIT_BYTES / 2**20:.0f} MiB)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
