"""The architecture is enforced, not described: import-linter's contracts (``.importlinter``)
hold — the layers of DESIGN.md import only downwards and ``studio`` has no import cycles — and
nothing under ``studio/`` finds code by building a module name from a string."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    linter = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_code_is_found_by_module_name_strings():
    users = [str(path.relative_to(ROOT)) for path in (ROOT / "studio").rglob("*.py")
             if "importlib" in path.read_text()]
    assert users == []
