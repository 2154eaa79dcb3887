#!/usr/bin/env bash
# The main job: the local reproduction of the paper. Sets up .venv, runs the Snakemake workflow with the local profile
# (a database server, the training experiments of Tables I-II with their utilisation and Dice figures, the generator
# scaling sweep of Table III), renders the HTML report and prints where everything is.
#   bash scripts/reproduce.sh                          # config/config.yaml (about 15 minutes on 2 cores)
#   bash scripts/reproduce.sh --configfile my.yaml     # extra arguments go to snakemake
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
# snakemake ignores SIGTERM while its jobs run; the hard limit keeps a hung run from outliving the caller.
timeout -s KILL "${WIREHEAD_REPRODUCE_TIMEOUT:-7200}" snakemake --profile profiles/local "$@"
snakemake --profile profiles/local "$@" --report results/report.html
echo
echo "tables:  $(ls results/tables/*.md | tr '\n' ' ')"
echo "figures: $(ls results/figures/*.png | tr '\n' ' ')"
echo "report:  $PWD/results/report.html"
