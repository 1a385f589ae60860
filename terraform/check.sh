#!/usr/bin/env bash
# Static checks of the deployment (providers cannot be downloaded here, so no init or plan):
# terraform fmt, checkov over the HCL and over the renderer Dockerfile, then the provider
# schema test (every resource, argument and block against the google/google-beta/time/archive
# schemas, and their versions against versions.tf: tests/unit/test_terraform_schema.py). Quiet
# on success apart from checkov's counts; prints the failures and exits non-zero otherwise.
#
# checkov lives in its own venv (.venv-infra, or $INFRA_VENV): its many dependencies would
# otherwise fight the project's pins. The venv is (re)made when requirements-infra.txt changes.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${INFRA_VENV:-.venv-infra}"
stamp="$venv/.requirements-stamp"
want=$(sha256sum requirements-infra.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
  if ! log=$("$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-infra.txt 2>&1); then
    echo "$log" >&2
    echo "check.sh: installing requirements-infra.txt failed" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi

if command -v terraform >/dev/null 2>&1; then
  # A TF_CLI_CONFIG_FILE naming a missing file only adds a warning to every run.
  if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi
  terraform fmt -check -recursive -diff terraform/
else
  # Not on PyPI or Debian; the HCL tests still parse every file.
  echo "check.sh: terraform not installed, fmt check skipped" >&2
fi

# --skip-download: no network for guideline metadata; --quiet: only failed checks are printed.
checkov=("$venv/bin/checkov" --skip-download --quiet --compact)
"${checkov[@]}" -d terraform/ --framework terraform
"${checkov[@]}" -f renderer_image/Dockerfile --framework dockerfile

# The schema test needs the project's venv (scripts/setup.sh installs the CDKTF schema wheels).
if [ ! -x .venv/bin/python ]; then
  echo "check.sh: .venv missing: run scripts/setup.sh first (the schema test runs in it)" >&2
  exit 1
fi
if ! out=$(.venv/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_terraform_schema.py 2>&1); then
  echo "$out" >&2
  echo "check.sh: the provider schema test failed" >&2
  exit 1
fi
