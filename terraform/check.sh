#!/usr/bin/env bash
# Static checks of the deployment (providers cannot be downloaded here, so no plan):
# terraform fmt, and checkov over the HCL and the renderer Dockerfile. checkov lives in its
# own venv (.venv-infra): its dependencies would otherwise pin the project's.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-infra/bin/checkov ]; then
  python3 -m venv .venv-infra
  .venv-infra/bin/python -m pip install -q --disable-pip-version-check -r requirements-infra.txt 2>&1 | grep -v "is ignored" || true
fi
terraform fmt -check -recursive terraform/
.venv-infra/bin/checkov --skip-download --quiet --compact -d terraform --framework terraform
.venv-infra/bin/checkov --skip-download --quiet --compact -f renderer_image/Dockerfile --framework dockerfile
