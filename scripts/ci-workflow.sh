#!/usr/bin/env bash
# Workflow CI (called from .ci/run): lint, a dry run of the paper config on the SLURM profile, a YAML-driven sweep
# check, a real tiny run on this machine (plus the report), and on the one-node SLURM cluster of
# scripts/slurm-local.sh a real tiny run and a forced failure, each followed by a check that the server is gone
# (no job left in squeue, the server job CANCELLED in sacct; locally no process left).
#
#   bash scripts/ci-workflow.sh            # everything (needs root for the SLURM part: apt-get, daemons)
#   SKIP_SLURM=1 bash scripts/ci-workflow.sh
#
# The runs happen in a scratch folder (CI_WORKDIR, default a new one under /tmp) with --directory, so the
# repository's results/ are not touched. Every snakemake call is wrapped in `timeout -s KILL`: snakemake ignores
# SIGTERM while it waits on SLURM jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${VENV:-$REPO/.venv}
export PATH="$VENV/bin:$PATH"
SMK_TIMEOUT=${SMK_TIMEOUT:-600}
WORK=${CI_WORKDIR:-$(mktemp -d /tmp/wirehead-ci-workflow.XXXXXX)}
TEST_CONFIG=$REPO/.test/config/config.yaml
FAIL_CONFIG=$REPO/.test/config/fail.yaml
T_START=$SECONDS
STARTED_CLUSTER=0
FAILED=0

step() { printf '\n== %s\n' "$*"; }
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILED=$((FAILED + 1)); }
smk() { timeout -s KILL "$SMK_TIMEOUT" snakemake -s "$REPO/workflow/Snakefile" "$@"; }

cleanup() {
  local dir
  # A killed snakemake cannot tear down its local server: stop any this script's runs left behind.
  for dir in "$WORK"/*/results/*/database; do
    [[ -d $dir ]] && python -m wirehead_core.cli server stop --dir "$dir" >/dev/null 2>&1 || true
  done
  # Likewise its SLURM server jobs (their time limit would end them later).
  if [[ -z ${SKIP_SLURM:-} ]] && command -v scancel >/dev/null; then
    local run
    for run in ci_slurm ci_slurm_fail; do
      timeout 10 scancel --name="wirehead-server-$run" 2>/dev/null || true
      timeout 10 scancel --name="wirehead-pool-$run-distributed" 2>/dev/null || true
    done
  fi
  if ((STARTED_CLUSTER)) && [[ -z ${KEEP_CLUSTER:-} ]]; then bash "$REPO/scripts/slurm-local.sh" stop || true; fi
}
trap cleanup EXIT

# The workflow tools (the lead pins them in pyproject.toml; installed here if this venv lacks them).
if ! python -c "import snakemake, snakemake_executor_plugin_slurm, pygments" 2>/dev/null; then
  step "installing snakemake into $VENV"
  pip install -q "snakemake>=9,<10" "snakemake-executor-plugin-slurm>=2,<3" pygments
  # snakemake 9.27 pins packaging<26 but nilearn 0.14.1 (the paper extra) needs >=26 and fails to import
  # without it; snakemake itself runs with packaging 26 (this whole script passes with 26.4).
  if pip show -q nilearn 2>/dev/null; then pip install -q "packaging>=26.1" 2>&1 | grep -v "dependency conflicts\|requires packaging" || true; fi
fi
echo "snakemake $(snakemake --version), workdir $WORK"

# A run folder with the repository's config/ (the Snakefile's default configfile is relative to it).
rundir() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  cp -r "$REPO/config" "$dir/"
  echo "$dir"
}

# Processes started in a run folder (generators, manager, server inherit it as their working directory, or name it
# on their command line): must be none after a run.
leftover_processes() {
  local p pid cwd d=${1%/}
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    cwd=$(readlink "$p/cwd" 2>/dev/null || true)
    if [[ $cwd == "$d" || $cwd == "$d/"* ]] || tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$d/"; then
      echo "$pid $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-150)"
    fi
  done
}

# ------------------------------------------------------------------------------------------------ static checks
step "lint"
t=$SECONDS
if smk --lint >"$WORK/lint.log" 2>&1; then ok "snakemake --lint ($((SECONDS - t)) s)"; else cat "$WORK/lint.log"; fail "lint"; fi

step "dry run: config/paper.yaml with the SLURM profile"
dir=$(rundir dry-paper)
if smk -d "$dir" -n --profile "$REPO/profiles/slurm" --configfile "$REPO/config/paper.yaml" >"$WORK/dry-paper.log" 2>&1 \
  && grep -Eq '^scaling_point +5$' "$WORK/dry-paper.log" && grep -q 'slurm_account=local' "$WORK/dry-paper.log"; then
  ok "paper dry run: 5 sweep points, SLURM resources set"
else
  tail -40 "$WORK/dry-paper.log"; fail "paper dry run"
fi

step "dry run: the sweep follows scaling.generators in YAML"
dir=$(rundir dry-yaml)
sed 's/generators: \[1, 2\]/generators: [3, 5, 7]/' "$TEST_CONFIG" >"$dir/sweep.yaml"
if smk -d "$dir" -n --profile "$REPO/profiles/local" --configfile "$dir/sweep.yaml" >"$WORK/dry-yaml.log" 2>&1 \
  && grep -Eq '^scaling_point +3$' "$WORK/dry-yaml.log" \
  && [[ $(grep -Eo 'scaling/n[0-9]+\.json' "$WORK/dry-yaml.log" | sort -u | tr '\n' ' ') == "scaling/n3.json scaling/n5.json scaling/n7.json " ]]; then
  ok "generators [3, 5, 7] in YAML -> sweep points n3, n5, n7"
else
  tail -40 "$WORK/dry-yaml.log"; fail "YAML-driven sweep"
fi

# ------------------------------------------------------------------------------------------------ local runs
step "local run of the tiny config"
dir=$(rundir local)
t=$SECONDS
if smk -d "$dir" --profile "$REPO/profiles/local" --configfile "$TEST_CONFIG" >"$WORK/local.log" 2>&1; then
  ok "local tiny run ($((SECONDS - t)) s)"
  for f in results/tables/table3_scaling.csv results/tables/table3_scaling.md results/figures/scaling.png \
    results/tables/table1_read_throughput.md results/tables/table2_generation_throughput.md \
    results/figures/utilisation.png results/figures/dice.png results/ci/train/distributed/pool.stopped \
    results/ci/server.stopped; do
    [[ -s $dir/$f ]] && ok "$f" || fail "$f missing"
  done
  cat "$dir/results/tables/table3_scaling.md" "$dir/results/tables/table1_read_throughput.md"
  if smk -d "$dir" --profile "$REPO/profiles/local" --configfile "$TEST_CONFIG" --report "$dir/report.html" \
    >"$WORK/report.log" 2>&1 && [[ -s $dir/report.html ]]; then
    ok "report.html ($(du -k "$dir/report.html" | cut -f1) KiB)"
  else
    tail -20 "$WORK/report.log"; fail "report"
  fi
else
  tail -40 "$WORK/local.log"; fail "local tiny run (rc $?)"
fi
[[ -z $(leftover_processes "$dir/") ]] && ok "no process left" || { leftover_processes "$dir/"; fail "processes left"; }

step "local run with a forced failure (a training experiment fails while its generator pool and the server run)"
dir=$(rundir local-fail)
t=$SECONDS
rc=0
smk -d "$dir" --profile "$REPO/profiles/local" --configfile "$FAIL_CONFIG" >"$WORK/local-fail.log" 2>&1 || rc=$?
if ((rc != 0 && rc != 137)); then ok "the workflow failed as asked (rc $rc, $((SECONDS - t)) s)"
else tail -30 "$WORK/local-fail.log"; fail "forced local failure gave rc $rc"; fi
grep -q "failing on purpose" "$dir"/logs/ci_fail/train/distributed/train.log && ok "it failed where asked" \
  || fail "the failure was not the injected one"
[[ -z $(leftover_processes "$dir/") ]] && ok "no process left (pool and server stopped by onerror)" \
  || { leftover_processes "$dir/"; fail "processes left after the failure"; }

# ------------------------------------------------------------------------------------------------ SLURM runs
# The server job of a run must be gone from squeue and CANCELLED in sacct (the teardown scancelled it).
check_server_job() {  # check_server_job EXPERIMENT [JOB_NAME]
  local name=${2:-wirehead-server-$1} last
  if [[ -n $(squeue -h -n "$name" -o %i) ]]; then squeue -n "$name"; fail "server job $name still in squeue"; return; fi
  last=$(sacct -X -n -P --name "$name" -S now-3600 -o JobID,State | sort -t'|' -k1,1n | tail -1)
  [[ $last == *"|CANCELLED"* ]] && ok "job ${last%%|*} ($name): CANCELLED, not in squeue" \
    || fail "server job of $name: '$last' (expected CANCELLED)"
}

no_new_jobs() {  # no_new_jobs BEFORE_IDS: every job submitted during the run has left squeue
  local left
  left=$(comm -13 <(tr ' ' '\n' <<<"$1" | sort) <(squeue -h -o %i | sort))
  [[ -z $left ]] && ok "no job of the run left in squeue" || { squeue; fail "jobs left: $left"; }
}

if [[ -n ${SKIP_SLURM:-} ]]; then
  step "SLURM runs skipped (SKIP_SLURM set)"
else
  step "one-node SLURM cluster"
  t=$SECONDS
  bash scripts/slurm-local.sh status >/dev/null 2>&1 || STARTED_CLUSTER=1
  # 8 declared CPUs on the 2-core CI machine: the server, a generator pool and a training job must run at once.
  if SLURM_CPUS=${SLURM_CPUS:-8} bash scripts/slurm-local.sh start; then ok "cluster up ($((SECONDS - t)) s)"; else fail "cluster start"; fi

  step "SLURM run of the tiny config (--profile profiles/slurm)"
  dir=$(rundir slurm)
  before=$(squeue -h -o %i | tr '\n' ' ')
  t=$SECONDS
  # One CPU per sweep point: the CI node has 2 (a real cluster gives each point N+1).
  if smk -d "$dir" --profile "$REPO/profiles/slurm" --configfile "$TEST_CONFIG" --config experiment=ci_slurm \
    --set-resources scaling_point:cpus_per_task=1 >"$WORK/slurm.log" 2>&1; then
    ok "SLURM tiny run ($((SECONDS - t)) s)"
    for f in table3_scaling.csv table1_read_throughput.csv table2_generation_throughput.csv; do
      [[ -s $dir/results/tables/$f ]] && ok "$f" || fail "$f missing"
    done
    cat "$dir/results/tables/table3_scaling.md" "$dir/results/tables/table1_read_throughput.md"
  else
    tail -40 "$WORK/slurm.log"; fail "SLURM tiny run"
  fi
  check_server_job ci_slurm
  check_server_job ci_slurm wirehead-pool-ci_slurm-distributed
  no_new_jobs "$before"

  step "SLURM run with a forced failure (a training job fails while its generator pool and the server run)"
  dir=$(rundir slurm-fail)
  before=$(squeue -h -o %i | tr '\n' ' ')
  t=$SECONDS
  rc=0
  smk -d "$dir" --profile "$REPO/profiles/slurm" --configfile "$FAIL_CONFIG" --config experiment=ci_slurm_fail \
    --set-resources scaling_point:cpus_per_task=1 >"$WORK/slurm-fail.log" 2>&1 || rc=$?
  if ((rc != 0 && rc != 137)); then ok "the workflow failed as asked (rc $rc, $((SECONDS - t)) s)"
  else tail -30 "$WORK/slurm-fail.log"; fail "forced SLURM failure gave rc $rc"; fi
  check_server_job ci_slurm_fail
  check_server_job ci_slurm_fail wirehead-pool-ci_slurm_fail-distributed
  no_new_jobs "$before"
fi

step "summary"
echo "workflow CI took $((SECONDS - T_START)) s; logs in $WORK"
if ((FAILED)); then echo "$FAILED check(s) failed"; exit 1; fi
echo "all workflow checks passed"
