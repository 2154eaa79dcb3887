"""The processes that fill one experiment's cache: the swap manager (index 0) and generators 1..N.

Used three ways: a training job with ``placement: local`` starts them beside the trainer (`start_local`); the
``pool_start`` rule starts them as separate processes (local launcher) or as one SLURM array job whose task i runs
process i (``pool_task.py``); both wait with `wait_ready` until the cache can be read.
"""

import logging
import subprocess
import time
from pathlib import Path

from wirehead_core.config import Config
from wirehead_core.launch import spawn, terminate, wirehead_command
from wirehead_core.status import collect_status
from wirehead_core.store import Store

_LOG = logging.getLogger("pool")


def command(index: int, cfg_path: Path, source: str) -> list[str]:
    """argv of process `index`: 0 = the swap manager, i >= 1 = generator i (seeded by its index)."""
    if index == 0:
        return wirehead_command("manager", "--config", str(cfg_path), "--name", "manager")
    return wirehead_command("generate", "--config", str(cfg_path), "--source", source, "--seed", str(1000 * index),
                            "--name", f"generator-{index}")


def fresh_database(config: Config) -> None:
    """Drop the experiment's database: every run measures an empty cache."""
    store = Store(config)
    try:
        store.drop_database()
    finally:
        store.close()


def start_local(cfg_path: Path, generators: int, source: str, log_dir: Path) -> list[subprocess.Popen]:
    """Start the manager and `generators` generators on this machine; logs go to `log_dir`."""
    procs = []
    for index in range(generators + 1):
        name = "manager" if index == 0 else f"generator-{index}"
        procs.append(spawn(command(index, cfg_path, source), log_dir / f"{name}.log"))
    _LOG.info("started the manager and %d generators (pids %s)", generators, [p.pid for p in procs])
    return procs


def stop_local(procs: list[subprocess.Popen]) -> list:
    """Stop generators first (their last samples still commit), then the manager; returns the exit codes."""
    return terminate(procs[1:]) + terminate(procs[:1])


def wait_ready(config: Config, generators: int, timeout_s: float, alive=lambda: None) -> float:
    """Wait until `generators` generators report in and a first generation is readable; returns the seconds waited.

    `alive()` is called on every poll and should raise if a process this pool depends on has died.
    """
    started = time.monotonic()
    while True:
        alive()
        status = collect_status(config)
        if status.generators_alive >= generators and status.read_gen is not None:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the cache was not ready within {timeout_s:.0f} s: {status.generators_alive} of "
                               f"{generators} generators alive, read generation {status.read_gen}")
        time.sleep(1.0)


def check_alive(procs: list[subprocess.Popen]):
    """An `alive` callback for `wait_ready`: raises when one of `procs` has exited."""
    def check() -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(proc.args[-6:])} exited with status {proc.returncode} during start-up")
    return check
