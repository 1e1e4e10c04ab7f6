#!/usr/bin/env bash
# The one check command: lint, types, then the whole test suite (slow tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff"
ruff check src tests benchmarks examples
ruff format --check src tests benchmarks examples
echo "== mypy (strict, src/)"
mypy
echo "== pytest"
python -m pytest -n 2 --dist loadgroup -q "$@"
