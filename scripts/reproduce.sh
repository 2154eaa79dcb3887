#!/usr/bin/env bash
# The main job: sets up .venv, then runs the local demonstration of the cache
# (a server, 4 generator processes, the swap manager and a DataLoader reader for 60 s) and prints its summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p results
exec .venv/bin/wirehead demo --json results/demo_summary.json "$@"
