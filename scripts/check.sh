#!/usr/bin/env bash
# The one check command: lint, types, then the whole test suite (slow tests included), then
# the LiteLLM tests in .venv-litellm when that environment exists.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check src tests benchmarks examples
ruff format --check src tests benchmarks examples
echo "== mypy (strict, src/)"
mypy
echo "== pytest"
python -m pytest -n 2 --dist loadgroup -q -m "not ray" "$@"
# The Ray tests (a real local cluster: a dozen processes of its own) run after the rest, on a
# machine they have to themselves: beside another test worker their pacing checks measured
# CPU contention, not alambic. Exit code 5 is "no test selected" (a path without Ray tests).
echo "== pytest (Ray tests, on their own)"
python -m pytest -q -m ray "$@" || [ $? -eq 5 ]
# litellm cannot live in the main environment (it pins openai<3), so its tests skip above
# and run here in their own environment, made by scripts/make_litellm_venv.sh (.ci/run does).
LITELLM_TESTS=(tests/llms/test_litellm.py tests/llms/test_anthropic_litellm_proxy.py)
if [ -x .venv-litellm/bin/python ]; then
    echo "== pytest (LiteLLM tests, in .venv-litellm)"
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    ALAMBIC_LITELLM_CLI="$PWD/.venv-litellm/bin/litellm" LITELLM_LOCAL_MODEL_COST_MAP=True \
        .venv-litellm/bin/python -m pytest -q -p no:cacheprovider "${LITELLM_TESTS[@]}" \
        | tee "$log"
    # In their own environment nothing may skip: a skip there means a broken environment.
    if grep -qw skipped "$log"; then
        echo "LiteLLM tests skipped inside .venv-litellm: rebuild it with" \
            "bash scripts/make_litellm_venv.sh" >&2
        exit 1
    fi
else
    echo "== LiteLLM tests skipped: no .venv-litellm (create it with: bash scripts/make_litellm_venv.sh)"
fi
