"""Write the REST API's OpenAPI document (what /openapi.json serves) to a file or stdout.

The TypeScript SDK's types are generated from it (sdk/typescript: ``npm run generate``), and
tests/test_sdk_typescript.py checks the committed copy against the app, so the SDK cannot drift.

    .venv/bin/python scripts/openapi.py sdk/typescript/openapi.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def openapi_document() -> dict:
    """The app's OpenAPI document, built on a throwaway data folder with the offline defaults."""
    from app import build_app
    from studio.config import Settings

    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), model="tiny", mcp_server=False)
        return build_app(settings).openapi()


def main() -> None:
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
