#!/usr/bin/env bash
# Setup, then the main job: `scenerender demo` (sample media -> local cloud -> MP4).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/scenerender demo "$@"
