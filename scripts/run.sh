#!/usr/bin/env bash
# The main job: set up (idempotent) and start the whole local network (mercato up).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mercato up "$@"
