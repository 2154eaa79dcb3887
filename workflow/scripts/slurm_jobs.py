"""Background jobs that outlive the rule that starts them (the database server, a distributed generator pool).

Each start writes a launch record first, so that every teardown (the stop rules, onerror, onsuccess) can find and
stop what was started: ``{"launcher": "slurm", "job_id": ...}`` for an sbatch job (or array),
``{"launcher": "procs", "pids": [...]}`` for detached local processes, ``{"launcher": "local", "dir": ...}`` for a
local server.
"""

import json
import logging
import subprocess
from pathlib import Path
from typing import Any, Optional

_LOG = logging.getLogger("slurm_jobs")


def write_record(path: Path, record: dict) -> None:
    """Atomically write a launch record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(path)


def task_states(job_id: str) -> list[str]:
    """SLURM states of `job_id`'s tasks, one per array task (empty once squeue no longer knows the job)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T"], capture_output=True, text=True)
    return out.stdout.split()


def job_state(job_id: str) -> str:
    """SLURM state of `job_id` (the first task's for an array; ``""`` once squeue no longer knows it)."""
    states = task_states(job_id)
    return states[0] if states else ""


def job_active(job_id: str) -> bool:
    """Whether the job, or any task of an array job, is in a non-final state."""
    active = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"}
    return any(state in active for state in task_states(job_id))


def check_job(job_id: str, log_hint: str) -> None:
    """Raise if the job (or any task of the array) ended; pending and running are fine."""
    for state in task_states(job_id):
        if state not in ("PENDING", "CONFIGURING", "RUNNING"):
            raise RuntimeError(f"job {job_id} has a task in state {state}; see {log_hint}")


def submit(job_name: str, wrap: str, log: str, resources: Any, comment: str, array: Optional[str] = None) -> str:
    """sbatch `wrap` with the rule's resources (cpus_per_task, mem_mb, runtime, optional account, partition,
    gpu and gpu_model); returns the job id."""
    cmd = ["sbatch", "--parsable", "--job-name", job_name, "--comment", comment, "--output", log, "--ntasks=1",
           f"--cpus-per-task={resources.cpus_per_task}", f"--mem={resources.mem_mb}", f"--time={resources.runtime}"]
    if array is not None:
        cmd.append(f"--array={array}")
    for resource, flag in (("slurm_account", "--account"), ("slurm_partition", "--partition")):
        value = getattr(resources, resource, None)
        if value:
            cmd.append(f"{flag}={value}")
    gpus = int(getattr(resources, "gpu", 0) or 0)
    if gpus:
        model = getattr(resources, "gpu_model", None)
        cmd.append(f"--gpus={model}:{gpus}" if model else f"--gpus={gpus}")
    cmd += ["--wrap", wrap]
    _LOG.info("submitting %s", " ".join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().split(";")[0]
