#!/usr/bin/env bash
# Set up (test extras, Chromium) and run the lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest -q "$@"
