#!/usr/bin/env bash
# Runs the test suite (slow tests included) in .venv: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec .venv/bin/python -m pytest -q "$@" tests
