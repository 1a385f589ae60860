#!/usr/bin/env bash
# Everything SceneRender needs on a bare Debian machine: ffmpeg, espeak-ng, a venv with
# the pinned dependencies and the package itself. Safe to run again: it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
# Captions and contact-sheet labels (libass, drawtext): DejaVu Sans, CJK from Droid Sans Fallback.
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
[ -f /usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf ] || need_apt+=(fonts-droid-fallback)
command -v tmux >/dev/null 2>&1 || need_apt+=(tmux)  # the CLI tests drive `watch` on a real terminal
# Debian's Chromium: the browser tests drive it with Playwright (never `playwright install`).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The Firebase Auth emulator (`scenerender dev up`) runs on Node from the pinned firebase-tools.
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements-stamp
want=$(cat requirements.txt requirements-cli.txt requirements-dev.txt requirements-tfschema.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt 2>&1 | grep -v "is ignored" || true
  # Schema data for the Terraform checks; --no-deps: nothing imports them (requirements-tfschema.txt).
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-tfschema.txt 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import scenerender.cli.app, google.cloud.firestore, functions_framework" 
  echo "$want" > "$stamp"
fi
# The pinned Firebase CLI (tools/firebase/package-lock.json) for the Auth emulator: npm ci, only
# when the lock file changed since the last install (the first takes minutes: re2 is compiled).
fb=tools/firebase
fb_want=$(sha256sum "$fb/package-lock.json" | cut -d' ' -f1)
if [ ! -x "$fb/node_modules/.bin/firebase" ] || [ "$(cat "$fb/node_modules/.scenerender-stamp" 2>/dev/null)" != "$fb_want" ]; then
  (cd "$fb" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$fb_want" > "$fb/node_modules/.scenerender-stamp"
fi
# The package's bytecode, compiled once here: an editable install leaves it to each run, and
# with PYTHONDONTWRITEBYTECODE set every `scenerender` start compiles the whole package again.
.venv/bin/python -m compileall -q scenerender
# The web client (web/): its pinned npm packages, then the bundle `dev up` serves (web/dist).
if command -v npm >/dev/null 2>&1; then
  web_want=$(sha256sum web/package-lock.json | cut -d' ' -f1)
  if [ ! -f web/node_modules/.lock-stamp ] || [ "$(cat web/node_modules/.lock-stamp)" != "$web_want" ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
    echo "$web_want" > web/node_modules/.lock-stamp
  fi
  (cd web && node build.mjs)
else
  echo "npm not found: the web client (web/) is not built" >&2
fi
