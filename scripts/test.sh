#!/usr/bin/env bash
# Set up (first time, test tools and the browser included) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k rest (add -n 0 for one process).
# Two processes (pytest-xdist): on two cores the suite takes about 12 minutes instead of 20, as
# much of it waits on servers, browsers and subprocesses. The distributed tests give every
# topology its own PostgreSQL schema and Redis database, so two can run at once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
scripts/services.sh  # PostgreSQL, Redis, RabbitMQ for the distributed tests, where installed and down
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -q --timeout=300 -n 2 "$@"
