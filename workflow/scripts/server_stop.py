"""Stop what a launch record names: the experiment's server or a generator pool (rules server_stop, pool_stop,
onerror and onsuccess).

Idempotent: a record whose jobs are already gone is simply removed. SLURM jobs (and arrays) are scancelled and
waited for; local servers are stopped with ``wirehead server stop``; local processes get SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import slurm_jobs  # beside this script (its folder is on sys.path when run as a script)


def process_alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_processes(pids: list[int], timeout_s: float = 30.0) -> int:
    """SIGTERM each process group (the pool's processes lead their own), wait, SIGKILL what is left; returns how
    many had to be killed."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = 0
    for pid in pids:
        if process_alive(pid):
            killed += 1
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return killed


def stop(record_path: Path, timeout_s: float = 120.0) -> str:
    """Stop what the record names; returns a one-line account."""
    if not record_path.exists():
        return f"nothing recorded in {record_path}"
    record = json.loads(record_path.read_text())
    if record["launcher"] == "slurm":
        job_id = record["job_id"]
        subprocess.run(["scancel", job_id], check=False)
        deadline = time.monotonic() + timeout_s
        while slurm_jobs.job_active(job_id) and time.monotonic() < deadline:
            time.sleep(1.0)
        if slurm_jobs.job_active(job_id):
            raise RuntimeError(f"job {job_id} still active {timeout_s:.0f} s after scancel")
        message = f"job {job_id} cancelled"
    elif record["launcher"] == "procs":
        # Generators first, so that their last samples still commit while the manager runs.
        pids = record["pids"]
        killed = stop_processes(pids[1:]) + stop_processes(pids[:1])
        message = f"{len(pids)} local processes stopped ({killed} killed)"
    else:
        out = subprocess.run([sys.executable, "-m", "wirehead_core.cli", "server", "stop", "--dir", record["dir"]],
                             check=True, capture_output=True, text=True)
        message = f"local server in {record['dir']}: {out.stdout.strip()}"
    record_path.unlink(missing_ok=True)
    return message


def main() -> int:
    """Command line: ``server_stop.py --record FILE [--done MARKER]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", required=True, help="launch record written by server_start.py")
    parser.add_argument("--done", help="write this marker file afterwards")
    parser.add_argument("--uri", help="remove this URI file too (it names a server that no longer exists)")
    args = parser.parse_args()
    message = stop(Path(args.record))
    if args.uri:
        Path(args.uri).unlink(missing_ok=True)
    print(message, flush=True)
    if args.done:
        Path(args.done).write_text(message + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
