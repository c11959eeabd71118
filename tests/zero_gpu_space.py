"""Run ``app.py`` as a Hugging Face ZeroGPU Space would, on a CPU (tests/test_zero_gpu.py).

The real ``spaces`` package runs in ZeroGPU mode (``SPACES_ZERO_GPU=true``): it registers the
GPU function at start-up, asks the device API named by ``SPACES_ZERO_DEVICE_API_URL`` (the test
serves it) for a GPU per call with the visitor's token and a duration, forks the GPU process,
pickles arguments and yields, and releases the GPU. Only its torch part is replaced by no-ops,
the part that packs tensors and moves them onto the GPU it was given: a CPU has none. That part
is the same fallback ``spaces`` itself uses where torch is missing.

    python tests/zero_gpu_space.py [app.py arguments]
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _no_gpu_torch() -> types.ModuleType:
    torch_part = types.ModuleType("spaces.zero.torch")
    for name in ("enter_mode", "patch", "unpatch", "init", "move"):
        setattr(torch_part, name, lambda *args, **kwargs: None)
    torch_part.pack = torch_part.size = lambda *args, **kwargs: 0
    torch_part.is_in_bad_fork = lambda *args, **kwargs: False
    return torch_part


if __name__ == "__main__":
    sys.modules["spaces.zero.torch"] = _no_gpu_torch()  # before app.py imports spaces
    sys.path.insert(0, str(ROOT))
    sys.argv = [str(ROOT / "app.py"), *sys.argv[1:]]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
