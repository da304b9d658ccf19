#!/usr/bin/env bash
# The main job: set up (idempotent) and start an operator node with the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mercato operator serve "$@"
