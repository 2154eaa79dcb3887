"""Start a distributed experiment's manager and generators as separate jobs (rule pool_start).

local: N + 1 detached processes on this machine. slurm: one array job, task 0 the manager, task i generator i
(``pool_task.py``), as the paper ran its 20 generators. The launch record is written before anything starts, so
pool_stop, onerror and onsuccess can stop the pool; the output appears once the cache can be read.
"""

import json
import sys
from pathlib import Path

from wirehead_core.config import load_config

import experiment_config
import pool
import slurm_jobs
import smk_entry  # beside this script: Snakemake puts its folder on sys.path


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    spec, training = dict(smk.params.spec), dict(smk.params.training)
    workdir = Path(smk.params.workdir)
    uri = Path(smk.input.uri).read_text().strip()
    cfg_path = experiment_config.write(workdir / "wirehead.yaml", uri, smk.params.database, training, spec)
    config = load_config(cfg_path)
    pool.fresh_database(config)
    record = Path(smk.params.record)
    n = int(spec["generators"])
    log_dir = workdir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    if smk.params.launcher == "slurm":
        task = Path(__file__).with_name("pool_task.py").resolve()
        wrap = (f"exec {sys.executable} {task} --config {cfg_path.resolve()} --index $SLURM_ARRAY_TASK_ID "
                f"--source {training['source']}")
        job_id = slurm_jobs.submit(smk.params.job_name, wrap, str(log_dir.resolve() / "slurm-%A_%a.log"),
                                   smk.resources, comment="wirehead generator pool", array=f"0-{n}")
        slurm_jobs.write_record(record, {"launcher": "slurm", "job_id": job_id})
        alive = lambda: slurm_jobs.check_job(job_id, str(log_dir))  # noqa: E731
    else:
        procs = pool.start_local(cfg_path, n, training["source"], log_dir)
        slurm_jobs.write_record(record, {"launcher": "procs", "pids": [p.pid for p in procs]})
        alive = pool.check_alive(procs)
    waited = pool.wait_ready(config, n, training["startup_timeout_s"], alive)
    Path(smk.output[0]).write_text(json.dumps({"generators": n, "ready_after_s": waited}) + "\n")


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
