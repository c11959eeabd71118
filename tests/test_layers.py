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


def _contract_modules(contract: str, option: str) -> set[str]:
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return {line.split("#")[0].strip() for line in config[f"importlinter:contract:{contract}"][option].splitlines()
            if line.split("#")[0].strip()}


def _packages(under: Path) -> set[str]:
    return {".".join(p.parent.relative_to(ROOT).parts) for p in under.rglob("__init__.py")
            if p.parent != under and "migrations" not in p.parts}


def test_every_package_is_checked_for_cycles_and_every_feature_for_independence():
    """A package added later is covered by the contracts, not silently outside them."""
    packages = _packages(ROOT / "studio")
    assert packages - _contract_modules("acyclic", "ancestors") == set()
    features = {p for p in packages if p.count(".") == 2 and p.startswith("studio.genius.")}
    assert features == _contract_modules("features", "modules")
    assert len(features) == 11  # the ten genius features and text-to-video itself


def test_each_feature_is_one_package_named_after_its_route():
    routes = {path.stem.removeprefix("genius_") for path in (ROOT / "studio" / "api").glob("genius_*.py")}
    features = {p.rsplit(".", 1)[1] for p in _packages(ROOT / "studio" / "genius")}
    assert routes <= features and features - routes == {"generate"}
    assert [p.name for p in (ROOT / "studio" / "genius").glob("*.py") if p.name != "__init__.py"] \
        == ["edit_submit.py"]  # the one module the video-side features' submits share
