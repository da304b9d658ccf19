#!/usr/bin/env bash
# The whole test suite: set up (idempotent), lint, type-check, then every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k receipts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# A local PostgreSQL (Debian's package, started on 127.0.0.1): router tests run on it too.
export MERCATO_TEST_POSTGRES_URL=${MERCATO_TEST_POSTGRES_URL:-$(bash scripts/postgres.sh)}
echo "== ruff" && .venv/bin/ruff check src tests benchmarks && .venv/bin/ruff format --check src tests benchmarks
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
