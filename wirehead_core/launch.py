"""Start wirehead commands as separate OS processes (demo, benchmarks, tests, chaos harness)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

__all__ = ["wirehead_command", "spawn", "terminate"]


def wirehead_command(*args: str) -> list[str]:
    """The argv that runs ``wirehead ARGS`` with this interpreter."""
    return [sys.executable, "-m", "wirehead_core.cli", *args]


def spawn(argv: Sequence[str], log_path: str | Path, env: Optional[dict[str, str]] = None) -> subprocess.Popen:
    """Start `argv` in its own session with stdout and stderr appended to `log_path`."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)


def terminate(procs: Sequence[subprocess.Popen], timeout_s: float = 20.0) -> list[Optional[int]]:
    """SIGTERM every process, wait up to `timeout_s`, SIGKILL what is left; returns the exit codes."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes
