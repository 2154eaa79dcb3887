"""The body of the server's SLURM job: run a wirehead server until the job is cancelled.

Started by ``server_start.py`` through ``sbatch --wrap``. Writes ``--ready-file`` (the URI) once the server answers,
stops it cleanly on SIGTERM (what ``scancel`` sends first), and exits non-zero if the server dies on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from wirehead_core.server import LocalServer


def main() -> int:
    """Run the server in the foreground of this job."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, help="server data folder")
    parser.add_argument("--ready-file", required=True, help="written with the URI once the server answers")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0: every interface, and the URI names this node)")
    args = parser.parse_args()
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    server = LocalServer(args.dir, host=args.host)
    info = server.start()
    ready = Path(args.ready_file)
    tmp = ready.with_suffix(".tmp")
    uri = info.uri
    if args.host in ("0.0.0.0", "::"):  # listening on every interface: advertise this node's name to other nodes
        uri = f"mongodb://{socket.getfqdn()}:{info.port}/?directConnection=true"
    tmp.write_text(json.dumps({"uri": uri, "pid": info.pid, "node": socket.gethostname(),
                               "job_id": os.environ.get("SLURM_JOB_ID")}))
    tmp.replace(ready)
    print(f"server {info.kind} pid {info.pid} answers on {uri}", flush=True)
    while stop["signal"] is None and server.proc is not None and server.proc.poll() is None:
        time.sleep(0.5)
    died = stop["signal"] is None
    code = server.proc.returncode if server.proc is not None else None
    server.stop()
    ready.unlink(missing_ok=True)
    if died:
        print(f"server exited on its own with status {code}", file=sys.stderr, flush=True)
        return 1
    print(f"server stopped on signal {stop['signal']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
