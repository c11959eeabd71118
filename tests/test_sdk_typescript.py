"""The TypeScript SDK (``sdk/typescript``, issue 14, part 5): its types are generated from the
app's OpenAPI document and may not drift from it; it type-checks and builds with tsc; its own
tests (node's test runner) drive a launched studio on the tiny model end to end.

``scripts/setup.sh --dev`` installs Node (Debian's) and the SDK's dev dependencies (``npm ci``);
without them these tests skip, except in CI, where a missing toolchain is a failure."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import API_KEY, LiveServer

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "sdk" / "typescript"
BIN = SDK / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def node() -> str:
    why = None
    if shutil.which("node") is None:
        why = "node is not installed (scripts/setup.sh --dev installs Debian's nodejs)"
    elif not (BIN / "tsc").exists():
        why = "the SDK's dev dependencies are missing (scripts/setup.sh --dev runs npm ci in sdk/typescript)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return shutil.which("node")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=SDK, capture_output=True, text=True, timeout=300, **kwargs)


def test_the_committed_openapi_document_is_the_apps():
    """``sdk/typescript/openapi.json`` is what the app serves at /openapi.json (regenerate with
    ``.venv/bin/python scripts/openapi.py sdk/typescript/openapi.json``)."""
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "openapi.py")], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert made.returncode == 0, made.stderr[-2000:]
    assert json.loads(made.stdout) == json.loads((SDK / "openapi.json").read_text()), \
        "the API changed: run scripts/openapi.py sdk/typescript/openapi.json, then npm run generate in sdk/typescript"


def test_the_sdks_types_are_generated_from_that_document(node, tmp_path):
    generated = _run([str(BIN / "openapi-typescript"), "./openapi.json", "-o", str(tmp_path / "schema.ts")])
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert (tmp_path / "schema.ts").read_text() == (SDK / "src" / "schema.ts").read_text(), \
        "src/schema.ts is stale: run npm run generate in sdk/typescript"


def _signed_webhook() -> dict:
    """A webhook body signed the way the studio signs (standardwebhooks, studio.jobs.webhooks)."""
    from standardwebhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"sdk-test-secret-0123456789abcdef").decode()
    body = json.dumps({"type": "task.completed", "data": {"task_id": "t-1", "status": "completed"}})
    now = datetime.now(timezone.utc)
    signature = Webhook(secret).sign("msg_sdk_test", now, body)
    headers = {"webhook-id": "msg_sdk_test", "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature}
    return {"secret": secret, "headers": headers, "body": body}


def test_the_sdk_builds_and_drives_the_studio_end_to_end(node, tmp_path):
    built = _run([str(BIN / "tsc"), "-p", "tsconfig.json"])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-2000:]
    limits = {"generate": "8 per 60 seconds", "batch": "1000 per 1 second", "default": "10000 per 1 second"}
    with LiveServer(tmp_path / "data", rate_limits=limits) as server:
        env = {**os.environ, "ECHOEL_URL": server.url, "ECHOEL_KEY": API_KEY,
               "ECHOEL_WEBHOOK": json.dumps(_signed_webhook())}
        tests = _run([node, "--test", "--test-reporter=spec", "test/"], env=env)
    assert tests.returncode == 0, tests.stdout[-6000:] + tests.stderr[-2000:]
    assert "# fail 0" in tests.stdout or "ℹ fail 0" in tests.stdout, tests.stdout[-3000:]
