"""Start the experiment's database server and write its URI only once it answers (rule server_start).

local: ``wirehead server start`` leaves a background server process recorded in its folder.
slurm: the server runs as its own sbatch job (``server_job.py``); this waits until the job reports a URI, checks
that the URI answers from here, and records the job id first so that every teardown can scancel it.
"""

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from wirehead_core.store import ping

import slurm_jobs
import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("server_start")


def fresh_data_dir(server_dir: Path) -> None:
    """Drop a previous run's data: every run measures an empty server."""
    shutil.rmtree(server_dir / "db", ignore_errors=True)
    (server_dir / "ready.json").unlink(missing_ok=True)


def start_local(server_dir: Path, record: Path, bind: str) -> str:
    """``wirehead server start`` in the background; returns the URI."""
    fresh_data_dir(server_dir)
    uri_tmp = server_dir / "uri.tmp"
    cmd = [sys.executable, "-m", "wirehead_core.cli", "server", "start", "--dir", str(server_dir),
           "--uri-file", str(uri_tmp), "--host", bind]
    _LOG.info("running %s", " ".join(cmd))
    slurm_jobs.write_record(record, {"launcher": "local", "dir": str(server_dir)})
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    _LOG.info("server: %s", out.stdout.strip())
    return uri_tmp.read_text().strip()


def start_slurm(server_dir: Path, record: Path, job_name: str, resources, timeout_s: float, bind: str) -> str:
    """Submit the server job, wait until it reports a URI that answers from here; returns the URI."""
    fresh_data_dir(server_dir)
    ready = server_dir / "ready.json"
    job_script = Path(__file__).with_name("server_job.py").resolve()
    wrap = (f"exec {sys.executable} {job_script} --dir {server_dir.resolve()} --ready-file {ready.resolve()} "
            f"--host {bind}")
    job_id = slurm_jobs.submit(job_name, wrap, str(server_dir / "slurm-%j.log"), resources,
                               comment="wirehead database server")
    slurm_jobs.write_record(record, {"launcher": "slurm", "job_id": job_id, "dir": str(server_dir)})
    _LOG.info("server job %s submitted", job_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready.exists():
            uri = json.loads(ready.read_text())["uri"]
            if ping(uri, timeout_s=2.0):
                _LOG.info("server job %s answers on %s", job_id, uri)
                return uri
        state = slurm_jobs.job_state(job_id)
        if state not in ("PENDING", "CONFIGURING", "RUNNING", ""):
            raise RuntimeError(f"server job {job_id} ended ({state}); see {server_dir}/slurm-{job_id}.log")
        time.sleep(1.0)
    raise TimeoutError(f"server job {job_id} did not answer within {timeout_s:.0f} s")


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    server_dir = Path(smk.params.dir)
    record = Path(smk.params.record)
    if smk.params.launcher == "slurm":
        uri = start_slurm(server_dir, record, smk.params.job_name, smk.resources, smk.params.ready_timeout_s,
                          smk.params.bind)
    else:
        uri = start_local(server_dir, record, smk.params.bind)
    Path(smk.output.uri).write_text(uri + "\n")


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
