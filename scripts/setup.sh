#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv. Idempotent and quick when nothing changed.
# torch goes in first and pinned: `pip install torch==2.13.0` is a local CPU wheel on our machines, while a looser
# requirement would make pip fetch a multi-GB CUDA build. Set WIREHEAD_TORCH to install another torch spec.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${WIREHEAD_VENV:-.venv}
TORCH_SPEC=${WIREHEAD_TORCH:-torch==2.13.0}
stamp="$VENV/.wirehead-setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import wirehead_core" 2>/dev/null; then
  exit 0
fi
echo "setting up $VENV (python: $($PY --version 2>&1))" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
"$VENV/bin/python" -c "import torch" 2>/dev/null || pip install "$TORCH_SPEC"
pip install -e ".[local,paper,test]"
# deepmriprep ships the label-map atlases the brain generator reads; its own dependencies are not needed.
pip install --no-deps "deepmriprep==0.3.0"
# The workflow tools, in a second step: snakemake 9 pins packaging<26 while nilearn 0.14.1 needs packaging>=26 to
# import. snakemake runs fine with packaging 26 (scripts/ci-workflow.sh passes with it), so the newer one goes back.
pip install "snakemake>=9,<10" "snakemake-executor-plugin-slurm>=2,<3" pygments
pip install "packaging>=26.1" 2>&1 | grep -v "dependency conflicts\|requires packaging" || true
echo "$want" > "$stamp"
