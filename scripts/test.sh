#!/usr/bin/env bash
# Setup, then every check CI runs: lint, types, Terraform fmt + checkov, unit and integration
# tests (real ffmpeg, real emulators started by the test suite itself).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
terraform/check.sh
.venv/bin/python -m pytest "$@"
