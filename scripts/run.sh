#!/usr/bin/env bash
# Set up (first time) and start the studio: UI at http://127.0.0.1:7860, REST at /v1, docs at /docs.
# Extra arguments go to app.py, e.g. scripts/run.sh --port 8000 --model tiny
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python app.py "$@"
