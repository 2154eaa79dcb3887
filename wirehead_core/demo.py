"""`wirehead demo`: a server, N generator processes, the manager and a DataLoader reader on this machine.

Every sample comes from the verifiable `seeded` source, so the reader checks every byte it receives. The summary
counts what a user cares about: swaps, samples produced / committed / discarded, reads, corrupt and failed reads.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from wirehead_core.config import load_config
from wirehead_core.errors import CorruptSampleError
from wirehead_core.launch import spawn, terminate, wirehead_command
from wirehead_core.server import LocalServer
from wirehead_core.sources import verify_seeded
from wirehead_core.status import collect_status

__all__ = ["DemoOptions", "run_demo", "format_summary"]

_LOG = logging.getLogger(__name__)
_SHAPE = [32, 32, 32]


@dataclasses.dataclass
class DemoOptions:
    """Demo size.

    Args:
        duration_s (float): seconds of reading.
        generators (int): generator processes.
        swap_cap (int): samples per generation.
        delay_s (float): emulated generation cost per sample.
        workdir (str, optional): folder for server data and logs (temporary when omitted).
    """

    duration_s: float = 60.0
    generators: int = 4
    swap_cap: int = 20
    delay_s: float = 0.02
    workdir: Optional[str] = None


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run the demo and return its summary (``ok`` is True when nothing was lost, corrupt or failed)."""
    from torch.utils.data import DataLoader

    from wirehead_core.dataset import WireheadDataset

    tmp = None
    if opts.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="wirehead-demo-")
        workdir = Path(tmp.name)
    else:
        workdir = Path(opts.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    server = LocalServer(workdir / "server")
    server.start()
    procs = []
    try:
        cfg_path = workdir / "demo.yaml"
        cfg_path.write_text(yaml.safe_dump({
            "mongo": {"uri": server.uri, "database": "demo"},
            "swap_cap": opts.swap_cap,
            "fields": [{"name": "image", "dtype": "float32", "shape": _SHAPE},
                       {"name": "label", "dtype": "uint8", "shape": _SHAPE}],
            "manager": {"reservation_timeout_s": 5.0},
        }))
        config = load_config(cfg_path)
        logs = workdir / "logs"
        manager = spawn(wirehead_command("manager", "--config", str(cfg_path)), logs / "manager.log")
        procs.append(manager)
        for i in range(opts.generators):
            procs.append(spawn(wirehead_command(
                "generate", "--config", str(cfg_path), "--source", "wirehead_core.sources:seeded",
                "--seed", str((i + 1) * 10**9), "--arg", f"delay_s={opts.delay_s}", "--name", f"demo-gen-{i}"),
                logs / f"generator-{i}.log"))
        dataset = WireheadDataset(config, return_key=True, wait_timeout_s=120)
        loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=2, persistent_workers=False)
        reads = corrupt = failed = 0
        keys: set[tuple[int, int]] = set()
        started = time.monotonic()
        first_read: Optional[float] = None
        while time.monotonic() - started < opts.duration_s:
            try:
                for images, labels, key in loader:
                    first_read = first_read or time.monotonic()
                    for j in range(images.shape[0]):
                        reads += 1
                        keys.add((int(key[j, 0]), int(key[j, 1])))
                        try:
                            verify_seeded((images[j], labels[j]), config.fields)
                        except CorruptSampleError:
                            corrupt += 1
                    if time.monotonic() - started >= opts.duration_s:
                        break
            except (RuntimeError, TimeoutError) as exc:
                failed += 1
                _LOG.error("demo reader: %s", exc)
        read_s = time.monotonic() - (first_read or started)
        terminate(procs[1:])
        time.sleep(0.5)
        terminate(procs[:1])
        status = collect_status(config)
    finally:
        terminate(procs)
        server.stop()
        if tmp is not None:
            tmp.cleanup()
    produced, committed = status.produced, status.committed
    summary = {
        "duration_s": opts.duration_s, "generators": opts.generators, "swap_cap": opts.swap_cap,
        "sample_bytes": 32 ** 3 * 5, "emulated_cost_s": opts.delay_s,
        "swaps": status.swaps, "mean_swap_ms": status.mean_swap_s * 1000,
        "produced": produced, "committed": committed,
        "discarded": status.lost_after_commit, "uncommitted_at_shutdown": produced - committed,
        "committed_per_s": status.committed_per_s, "swapped_in_per_s": status.swapped_in_per_s,
        "reads": reads, "reads_per_s": reads / read_s if read_s > 0 else 0.0, "unique_samples_read": len(keys),
        "corrupt_reads": corrupt, "failed_reads": failed, "reuse_mean": status.reuse_mean,
    }
    summary["ok"] = (summary["swaps"] >= 1 and summary["discarded"] == 0 and corrupt == 0 and failed == 0
                     and reads > 0)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """The demo summary as a Markdown table."""
    rows = [
        ("duration (s)", f"{s['duration_s']:.0f}"),
        ("generator processes", s["generators"]),
        ("swap_cap", s["swap_cap"]),
        ("swaps", s["swaps"]),
        ("mean swap (ms)", f"{s['mean_swap_ms']:.1f}"),
        ("samples produced", s["produced"]),
        ("samples committed", s["committed"]),
        ("samples discarded", s["discarded"]),
        ("in flight at shutdown (not committed)", s["uncommitted_at_shutdown"]),
        ("committed per s", f"{s['committed_per_s']:.2f}"),
        ("reads", s["reads"]),
        ("reads per s", f"{s['reads_per_s']:.1f}"),
        ("unique samples read", s["unique_samples_read"]),
        ("corrupt reads", s["corrupt_reads"]),
        ("failed reads", s["failed_reads"]),
        ("mean reads per sample", f"{s['reuse_mean']:.2f}"),
        ("result", "OK" if s["ok"] else "FAILED"),
    ]
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
