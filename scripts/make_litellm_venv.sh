#!/usr/bin/env bash
# Make .venv-litellm: a second environment for the LiteLLM tests only.
#
# Why a second one: litellm 1.x pins openai<3 and huggingface-hub<2, which the main .venv
# (openai 3.x, huggingface-hub 2.x) cannot hold. scripts/check.sh runs
# tests/llms/test_litellm.py and tests/llms/test_anthropic_litellm_proxy.py with this
# environment's python when it exists, and says how to make it when it does not.
# The one recipe: .ci/run calls this script too. Re-running it updates the environment
# in place. Override the interpreter with PYTHON=..., the folder with the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
LITELLM_VERSION=1.106.2
VENV="${1:-.venv-litellm}"
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# alambic (editable, so the tests see this checkout) with the extras the two test files
# import, the proxy at a pinned version, and pytest with the plugins pyproject's config uses.
"$VENV/bin/python" -m pip install --quiet -e ".[litellm,anthropic]" \
    "litellm[proxy]==${LITELLM_VERSION}" "pytest>=8" "pytest-timeout>=2.3"
# Without this, importing litellm spends ~9 s trying to download a price table.
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c "import litellm, anthropic, alambic
from importlib.metadata import version
print('$VENV ready: litellm', version('litellm'), 'openai', version('openai'))"
test -x "$VENV/bin/litellm"  # the proxy CLI that tests/llms/test_anthropic_litellm_proxy.py starts
