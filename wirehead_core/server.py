"""Start and stop a MongoDB-compatible server for one machine.

A real ``mongod`` is used when it is on PATH; otherwise SecantusDB (``secantusd-py``, from the ``local`` extra),
always as a separate process. The server binds to 127.0.0.1 unless told otherwise, keeps its data under a given
folder, bounds its oplog, picks a free port and is stopped by the PID recorded in ``<data_dir>/server.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from wirehead_core.errors import ServerError

__all__ = ["ServerInfo", "LocalServer", "find_server_binary", "free_port", "stop_server", "read_server_info"]

_LOG = logging.getLogger(__name__)
_INFO_FILE = "server.json"


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What a started server left in its data folder."""

    pid: int
    host: str
    port: int
    kind: str
    data_dir: str

    @property
    def uri(self) -> str:
        """A URI pymongo connects with."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_server_binary() -> tuple[str, str]:
    """``(kind, path)`` of the server to run: ``mongod`` on PATH first, else ``secantusd-py``.

    Raises:
        ServerError: neither is installed.
    """
    mongod = shutil.which("mongod")
    if mongod:
        return "mongod", mongod
    beside = Path(sys.executable).with_name("secantusd-py")
    if beside.exists():
        return "secantus", str(beside)
    found = shutil.which("secantusd-py")
    if found:
        return "secantus", found
    raise ServerError("no MongoDB-compatible server found: put mongod on PATH, or install the 'local' extra "
                      "(pip install 'wirehead-core[local]', which provides secantusd-py)")


def read_server_info(data_dir: str | Path) -> Optional[ServerInfo]:
    """The info file of a server started in `data_dir`, or None."""
    path = Path(data_dir) / _INFO_FILE
    if not path.exists():
        return None
    return ServerInfo(**json.loads(path.read_text()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_server(data_dir: str | Path, timeout_s: float = 15.0) -> bool:
    """Stop the server recorded in `data_dir` (TERM, then KILL after `timeout_s`); False if none was running."""
    info = read_server_info(data_dir)
    if info is None or not _pid_alive(info.pid):
        return False
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _pid_alive(info.pid):
        time.sleep(0.05)
    if _pid_alive(info.pid):
        _LOG.warning("server pid %d ignored SIGTERM for %.0f s; sending SIGKILL", info.pid, timeout_s)
        os.kill(info.pid, signal.SIGKILL)
        while _pid_alive(info.pid):
            time.sleep(0.05)
    (Path(data_dir) / _INFO_FILE).unlink(missing_ok=True)
    return True


#: SecantusDB checkpoint period `LocalServer` sets (see `LocalServer`).
DEFAULT_CHECKPOINT_S = 5.0


class LocalServer:
    """A MongoDB-compatible server process for this machine.

    Args:
        data_dir (str | Path): folder for the server's files, log and ``server.json``.
        port (int, optional): TCP port; a free one when omitted.
        host (str): address to bind; 127.0.0.1 by default so nothing outside the machine can connect.
        oplog_entries (int): bound on the server's oplog (SecantusDB keeps a copy of every write otherwise).
        auth (bool): require SCRAM authentication (users must exist already).
        checkpoint_s (float): SecantusDB's checkpoint period. WiredTiger frees the space of dropped generations and
            its journal files only at a checkpoint. Over 40 raw driver runs of 128 MB back to back, SecantusDB's own
            60 s period gave 112 MB/s mean and 80 MB/s worst, 5 s gave 155 and 115 (``wirehead bench``,
            server-state section, as committed in ``results/bench``). An explicit ``SECANTUS_CHECKPOINT_SECONDS`` wins.
    """

    def __init__(self, data_dir: str | Path, port: Optional[int] = None, host: str = "127.0.0.1",
                 oplog_entries: int = 1000, auth: bool = False, checkpoint_s: float = DEFAULT_CHECKPOINT_S) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port
        self.oplog_entries = oplog_entries
        self.auth = auth
        if not checkpoint_s >= 1:
            raise ValueError(f"checkpoint_s: expected a number of seconds >= 1, got {checkpoint_s!r}")
        self.checkpoint_s = checkpoint_s
        self.proc: Optional[subprocess.Popen] = None
        self.info: Optional[ServerInfo] = None

    @property
    def uri(self) -> str:
        """The URI of the running server."""
        if self.info is None:
            raise ServerError("server not started")
        return self.info.uri

    def _command(self, kind: str, binary: str, port: int) -> list[str]:
        store = self.data_dir / "db"
        store.mkdir(parents=True, exist_ok=True)
        if kind == "mongod":
            cmd = [binary, "--dbpath", str(store), "--port", str(port), "--bind_ip", self.host,
                   "--oplogSize", "64", "--quiet"]
            return cmd + (["--auth"] if self.auth else [])
        cmd = [binary, "--host", self.host, "--port", str(port), "--storage-path", str(store),
               "--log-level", "WARNING", "--standalone", "--oplog-max-entries", str(self.oplog_entries),
               "--cache-size", "2G"]
        return cmd + (["--auth"] if self.auth else [])

    def start(self, timeout_s: float = 60.0) -> ServerInfo:
        """Start the server and wait until it answers a ping.

        Raises:
            ServerError: it exited or did not answer within `timeout_s`; the message quotes its log.
        """
        from wirehead_core.store import ping

        existing = read_server_info(self.data_dir)
        if existing is not None and _pid_alive(existing.pid):
            raise ServerError(f"a server (pid {existing.pid}) already runs on {self.data_dir}; stop it first")
        kind, binary = find_server_binary()
        port = self.port or free_port(self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "server.log"
        with open(log_path, "ab") as log:
            env = {"SECANTUS_CHECKPOINT_SECONDS": str(max(1, round(self.checkpoint_s))), **os.environ}
            self.proc = subprocess.Popen(self._command(kind, binary, port), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.info = ServerInfo(self.proc.pid, self.host, port, kind, str(self.data_dir))
        (self.data_dir / _INFO_FILE).write_text(json.dumps(dataclasses.asdict(self.info)))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"{kind} exited with status {self.proc.returncode}: {_tail(log_path)}")
            if ping(self.info.uri, timeout_s=1.0):
                _LOG.info("%s ready on %s:%d (pid %d)", kind, self.host, port, self.proc.pid)
                return self.info
            time.sleep(0.1)
        self.stop()
        raise ServerError(f"{kind} did not answer within {timeout_s:.0f} s: {_tail(log_path)}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server (TERM, then KILL)."""
        stop_server(self.data_dir, timeout_s)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:  # pragma: no cover - stop_server already killed it
                self.proc.kill()
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (fault injection)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        (self.data_dir / _INFO_FILE).unlink(missing_ok=True)

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(path: Path, n: int = 2000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-n:].strip() or "(empty log)"
