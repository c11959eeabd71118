#!/usr/bin/env bash
# Set up everything on a fresh machine that has only Python 3.10+:
#   scripts/setup.sh          runtime: .venv with torch (CPU wheel) and requirements.txt
#   scripts/setup.sh --dev    also test tools, Debian's chromium + espeak-ng + nodejs (needs root or sudo)
#                             and the TypeScript SDK's dev dependencies (npm ci)
# Re-running is cheap: installs are skipped while the requirement files are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
dev=0; [[ "${1:-}" == "--dev" ]] && dev=1

if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }

stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt <(echo "$TORCH_VERSION $dev") | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  # torch first: with it present, nothing below pulls a CUDA build.
  .venv/bin/python -c "import torch" 2>/dev/null || pip install "torch==$TORCH_VERSION"
  pip install -r requirements.txt
  if (( dev )); then pip install -r requirements-dev.txt; fi
  touch "$stamp"
fi

if (( dev )); then
  missing=()
  [[ -x /usr/bin/chromium ]] || missing+=(chromium)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v node >/dev/null || missing+=(nodejs)  # the TypeScript SDK's build and tests
  command -v npm >/dev/null || missing+=(npm)
  if (( ${#missing[@]} )); then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The TypeScript SDK's dev dependencies (tsc, openapi-typescript, ws), again only when its lock changed.
  sdk_stamp=sdk/typescript/node_modules/.installed-$(sha256sum sdk/typescript/package-lock.json | cut -c1-16)
  if [[ ! -f $sdk_stamp ]]; then
    (cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    touch "$sdk_stamp"
  fi
fi
