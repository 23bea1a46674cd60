#!/usr/bin/env bash
# The main job: bash scripts/main.sh [--preset cpu] [--workdir runs/cpu]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec .venv/bin/python -m pipelines.run "$@"
