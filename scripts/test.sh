#!/usr/bin/env bash
# Run the test suite: sets up .venv first (scripts/setup.sh), then pytest against a real local database server
# that the tests start themselves (SecantusDB, or mongod if it is on PATH; or WIREHEAD_TEST_URI if set).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
