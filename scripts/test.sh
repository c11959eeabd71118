#!/usr/bin/env bash
# Set up (first time, test tools and the browser included) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k rest
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/services.sh  # PostgreSQL, Redis, RabbitMQ for the distributed tests, where installed and down
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -q --timeout=300 "$@"
