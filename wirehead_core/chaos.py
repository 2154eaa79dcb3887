"""`wirehead chaos`: run the whole cache under injected faults and prove nothing is lost or corrupt.

Generators, the swap manager and DataLoader readers run for a number of swaps while the harness injects, at random
moments: kill -9 of a generator (restarted after a delay), kill -9 of the manager holding the lock (often inside a swap; a standby manager takes over, a new standby is started),
a stop and restart of the database server, and SIGSTOP of a generator for longer than the lock lease and the
reservation timeout. Every sample carries a seed from which readers verify every byte, and every generator logs each
commit it makes, so at the end the harness can check that every logged commit reached a swapped generation (or is
still in an open one). The report goes to a Markdown file; the exit status is non-zero if anything was lost, corrupt
or failed, or a lock stayed stuck.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from wirehead_core.config import load_config
from wirehead_core.errors import CorruptSampleError
from wirehead_core.launch import spawn, terminate, wirehead_command
from wirehead_core.manager import SWAP_STEPS
from wirehead_core.server import LocalServer
from wirehead_core.sources import verify_seeded
from wirehead_core.store import Store, unpack_tokens

__all__ = ["ChaosOptions", "run_chaos", "format_report", "add_cli"]

_LOG = logging.getLogger(__name__)
FAULT_KINDS = ("generator_kill", "manager_kill", "server_restart", "generator_pause")


@dataclasses.dataclass
class ChaosOptions:
    """Harness size and fault schedule.

    Args:
        swaps (int): run until this many swaps completed (and every fault kind injected at least once).
        generators (int): generator processes.
        swap_cap (int): samples per generation (small, so swaps are frequent).
        lease_s (float): the manager lock's lease.
        reservation_timeout_s (float): after this long a dead writer's id is reissued.
        fault_every_s (tuple[float, float]): a fault is injected every uniform(min, max) seconds.
        server_restart_every (int): at most one server restart per this many faults (restarts are slow).
        seed (int): the fault schedule's random seed.
        workdir (str, optional): folder for the server, configs and logs.
        max_minutes (float): give up (and fail) after this long.
    """

    swaps: int = 1000
    generators: int = 3
    swap_cap: int = 4
    lease_s: float = 2.0
    reservation_timeout_s: float = 1.5
    fault_every_s: tuple[float, float] = (1.0, 3.0)
    server_restart_every: int = 6
    seed: int = 0
    workdir: Optional[str] = None
    max_minutes: float = 40.0


class _ReaderThread:
    """A DataLoader reader verifying every sample and measuring the longest stall between batches."""

    def __init__(self, config: Any, workers: int) -> None:
        from torch.utils.data import DataLoader

        from wirehead_core.dataset import WireheadDataset

        self.config = config
        self.loader = DataLoader(WireheadDataset(config, return_key=True), batch_size=2, shuffle=True,
                                 num_workers=workers, persistent_workers=workers > 0)
        self.reads = self.corrupt = self.failed = 0
        self.longest_stall_s = 0.0
        self.stalls: list[tuple[float, float]] = []  # (start, end) of gaps over one second, wall clock
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = None
        while not self.stop_event.is_set():
            try:
                for images, labels, _ in self.loader:
                    now = time.time()
                    if last is not None:
                        self.longest_stall_s = max(self.longest_stall_s, now - last)
                        if now - last > 1.0:
                            self.stalls.append((last, now))
                    last = now
                    for j in range(images.shape[0]):
                        try:
                            verify_seeded((images[j], labels[j]), self.config.fields)
                            self.reads += 1
                        except CorruptSampleError:
                            self.corrupt += 1
                    if self.stop_event.is_set():
                        break
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                self.failed += 1
                _LOG.error("chaos reader: %s: %s", type(exc).__name__, exc)
                time.sleep(0.2)


def _run_by(owner: Optional[str], name: str) -> bool:
    """Whether lock owner `owner` is manager `name` (a manager's owner id is ``<name>:<random suffix>``)."""
    return str(owner or "").startswith(name + ":")


class _Harness:
    def __init__(self, opts: ChaosOptions, workdir: Path) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.commits = workdir / "commits"
        self.commits.mkdir(parents=True, exist_ok=True)
        self.server = LocalServer(workdir / "server")
        self.port = 0
        self.cfg_path = workdir / "chaos.yaml"
        self.generators: list[Optional[subprocess.Popen]] = []
        self.generator_names: dict[int, str] = {}  # slot -> name of its log, generator-<n>
        self.managers: dict[str, subprocess.Popen] = {}
        self.n_spawned = 0
        self.faults: dict[str, int] = {k: 0 for k in FAULT_KINDS}
        self.manager_kills_in_swap = 0
        self.recoveries: list[float] = []
        self.pending: list[tuple[str, float]] = []  # faults waiting for the next swap after them
        self.lock_takeovers: list[float] = []
        self.outages: list[tuple[float, float]] = []  # server down: stop requested .. answering again
        self.stuck_locks = 0
        self.unasked_exits: list[str] = []  # "name (exit code)" of processes that ended without being killed

    # ------------------------------------------------------------------ processes
    def start_server(self) -> None:
        self.server = LocalServer(self.workdir / "server", port=self.port or None)
        info = self.server.start()
        self.port = info.port

    def spawn_generator(self, slot: int) -> None:
        self.n_spawned += 1
        seed = self.n_spawned * 10**9
        self.generator_names[slot] = f"generator-{self.n_spawned}"
        self.generators[slot] = spawn(wirehead_command(
            "generate", "--config", str(self.cfg_path), "--source", "wirehead_core.sources:seeded",
            "--seed", str(seed), "--commit-log", str(self.commits / f"g{self.n_spawned}.jsonl"),
            "--name", f"chaos-{self.n_spawned}"), self.logs / f"{self.generator_names[slot]}.log")

    def spawn_manager(self) -> None:
        """Start a manager; two run at all times, one holding the lock and one standing by."""
        self.n_spawned += 1
        name = f"manager-{self.n_spawned}"
        # A short pause before every swap step keeps the manager inside swaps a good share of the time, so
        # random kills often land mid-swap.
        env = {"WIREHEAD_FAULT_PAUSE": ",".join(SWAP_STEPS) + ":0.01"}
        self.managers[name] = spawn(wirehead_command("manager", "--config", str(self.cfg_path), "--name", name),
                                    self.logs / f"{name}.log", env=env)

    def replace_exited(self) -> None:
        """Count and restart every generator or manager that ended although the harness did not kill it: a process
        must ride out every fault, so each such exit fails the run (its log says why)."""
        for slot, proc in enumerate(self.generators):
            if proc is not None and proc.poll() is not None:
                self._exited(self.generator_names[slot], proc)
                self.spawn_generator(slot)
        for name, proc in list(self.managers.items()):
            if proc.poll() is not None:
                self._exited(name, proc)
                del self.managers[name]
                self.spawn_manager()

    def _exited(self, name: str, proc: subprocess.Popen) -> None:
        self.unasked_exits.append(f"{name} (exit {proc.returncode})")
        _LOG.error("chaos: %s exited unasked with status %s; restarted", name, proc.returncode)

    # ------------------------------------------------------------------ faults
    def inject(self, store: Store, kind: str) -> None:
        now = time.time()
        self.faults[kind] += 1
        if kind == "generator_kill":
            slot = self.rng.randrange(len(self.generators))
            proc = self.generators[slot]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            time.sleep(self.rng.uniform(0.2, 1.5))
            self.spawn_generator(slot)
        elif kind == "generator_pause":
            proc = self.generators[self.rng.randrange(len(self.generators))]
            proc.send_signal(signal.SIGSTOP)
            time.sleep(max(self.opts.lease_s, self.opts.reservation_timeout_s) + self.rng.uniform(0.5, 2.0))
            proc.send_signal(signal.SIGCONT)
        elif kind == "manager_kill":
            # Kill the manager holding the lock; the standby must take over once the lease has run out.
            owner = (store.retry("lock", store.lock_doc, timeout_s=10) or {}).get("owner")
            name = next((n for n in self.managers if _run_by(owner, n)), None)
            if name is None:  # nobody holds the lock right now: kill any manager
                name = self.rng.choice(sorted(self.managers))
            # Measure the lock, not process start-up: the standby must be up and polling for the lock first.
            standby = [n for n in self.managers if n != name]
            deadline = time.time() + 60
            while standby and time.time() < deadline and self.managers[standby[0]].poll() is None and (
                    "waiting for the lock" not in (self.logs / f"{standby[0]}.log").read_text(errors="replace")):
                time.sleep(0.1)
            # The owner renewed its lease while we waited: its end is read again just before the kill.
            lock = store.retry("lock", store.lock_doc, timeout_s=10) or {}
            state = store.retry("state", store.swap_state, timeout_s=10)
            self.managers[name].send_signal(signal.SIGKILL)
            self.managers.pop(name).wait()
            if state is not None and state.get("phase") == "swapping":
                self.manager_kills_in_swap += 1
            owned = _run_by(lock.get("owner"), name)
            expires = float(lock["expires"]) if owned and lock.get("expires") else time.time()
            took = None
            while time.time() - expires < self.opts.lease_s + 30:
                holder = (store.retry("lock", store.lock_doc, timeout_s=10) or {}).get("owner")
                if holder and not _run_by(holder, name):
                    took = max(0.0, time.time() - expires)
                    break
                time.sleep(0.05)
            self.lock_takeovers.append(took if took is not None else float("inf"))
            # Stuck: the standby never took the lock (we wait 30 s past the lease). How long it took is reported as
            # well; it polls every quarter lease, and on an overloaded machine a poll can be late by seconds.
            if took is None:
                self.stuck_locks += 1
            self.spawn_manager()  # a new standby
        elif kind == "server_restart":
            self.server.stop()
            time.sleep(self.rng.uniform(0.5, 2.0))
            self.start_server()
            self.outages.append((now, time.time()))
        self.pending.append((kind, now))

    def settle_recoveries(self, store: Store) -> None:
        """A fault has recovered once a swap finished after it."""
        if not self.pending:
            return
        last = store.retry("last swap", lambda: store.coll("events").find_one(sort=[("finished_at", -1)],
                                                                           projection={"finished_at": 1}), timeout_s=60)
        if last is None:
            return
        still = []
        for kind, at in self.pending:
            if last["finished_at"] > at:
                self.recoveries.append(last["finished_at"] - at)
            else:
                still.append((kind, at))
        self.pending = still

    def choose(self) -> str:
        """The next fault: a kind not injected yet while there is one, then any kind at random."""
        kinds = ["generator_kill", "manager_kill", "generator_pause"]
        total = sum(self.faults.values())
        if total >= 3 and self.faults["server_restart"] * self.opts.server_restart_every <= total:
            kinds.append("server_restart")
        unseen = [k for k in kinds if self.faults[k] == 0]
        return self.rng.choice(unseen or kinds)


def run_chaos(opts: ChaosOptions) -> dict[str, Any]:
    """Run the harness; returns the report (``ok`` False if anything was lost, corrupt, failed or stuck)."""
    tmp = tempfile.TemporaryDirectory(prefix="wirehead-chaos-") if opts.workdir is None else None
    workdir = Path(tmp.name if tmp else opts.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    h = _Harness(opts, workdir)
    h.start_server()
    readers: list[_ReaderThread] = []
    started = time.monotonic()
    timed_out = False
    try:
        h.cfg_path.write_text(yaml.safe_dump({
            "mongo": {"uri": h.server.uri, "database": "chaos", "connect_timeout_s": 2},
            "swap_cap": opts.swap_cap,
            "fields": [{"name": "image", "dtype": "float32", "shape": [8, 8, 8]},
                       {"name": "label", "dtype": "uint8", "shape": [8, 8, 8]}],
            "manager": {"lease_s": opts.lease_s, "reservation_timeout_s": opts.reservation_timeout_s,
                        "poll_s": 0.02},
            "dataset": {"wait_timeout_s": 120, "read_timeout_s": 120},
        }))
        config = load_config(h.cfg_path)
        store = Store(config)
        h.spawn_manager()
        h.spawn_manager()
        h.generators = [None] * opts.generators
        for slot in range(opts.generators):
            h.spawn_generator(slot)
        readers = [_ReaderThread(config, workers=2), _ReaderThread(config, workers=0)]
        for r in readers:
            r.thread.start()
        next_fault = time.monotonic() + h.rng.uniform(*opts.fault_every_s)
        while True:
            done = store.retry("count", lambda: store.coll("events").count_documents({}), timeout_s=60)
            if done >= opts.swaps and all(h.faults.values()):
                break
            if time.monotonic() - started > opts.max_minutes * 60:
                timed_out = True
                break
            h.settle_recoveries(store)
            h.replace_exited()
            if time.monotonic() >= next_fault:
                h.inject(store, h.choose())
                next_fault = time.monotonic() + h.rng.uniform(*opts.fault_every_s)
            time.sleep(0.05)
        h.settle_recoveries(store)
        h.replace_exited()
        for r in readers:
            r.stop_event.set()
        terminate([g for g in h.generators if g is not None])
        time.sleep(0.3)
        terminate(list(h.managers.values()))
        report = _audit(h, store, readers, time.monotonic() - started, timed_out)
    finally:
        for r in readers:
            r.stop_event.set()
            r.thread.join(timeout=30)
        terminate([p for p in [*h.generators, *h.managers.values()] if p is not None])
        h.server.stop()
        if tmp is not None:
            tmp.cleanup()
    return report


def _audit(h: _Harness, store: Store, readers: list[_ReaderThread], elapsed: float, timed_out: bool
           ) -> dict[str, Any]:
    committed: set[str] = set()
    for path in h.commits.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                committed.add(json.loads(line)["token"])
    swapped: set[str] = set()
    events = list(store.coll("events").find({}))
    for e in events:
        swapped.update(unpack_tokens(e))
    state = store.swap_state() or {"write_gen": 0}
    open_tokens: set[str] = set()
    for n in (int(state["write_gen"]), int(state["write_gen"]) + 1):
        open_tokens.update(r["t"] for r in store.records(store.gen_name(n), {"s": "c"}, {"t": 1}))
    lost = committed - swapped - open_tokens
    durations = sorted(e["duration_s"] for e in events)
    rec = sorted(h.recoveries)

    def pct(values: list[float], q: float) -> float:
        return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0

    report = {
        "elapsed_s": elapsed, "swaps": len(events), "swap_cap": h.opts.swap_cap, "generators": h.opts.generators,
        "faults": dict(h.faults), "manager_kills_inside_swap": h.manager_kills_in_swap,
        "samples_committed": len(committed), "samples_lost_after_commit": len(lost),
        "duplicate_tokens_across_swaps": sum(len(unpack_tokens(e)) for e in events) - len(swapped),
        "reads": sum(r.reads for r in readers), "corrupt_reads": sum(r.corrupt for r in readers),
        "failed_reads": sum(r.failed for r in readers),
        "longest_reader_stall_s": max((r.longest_stall_s for r in readers), default=0.0),
        "longest_reader_stall_outside_outages_s": max(
            (b - a for r in readers for a, b in r.stalls
             if not any(a < hi + 2.0 and b > lo for lo, hi in h.outages)), default=0.0),
        "server_outage_s_max": max((hi - lo for lo, hi in h.outages), default=0.0),
        "recovery_s": {"n": len(rec), "p50": pct(rec, 0.5), "p99": pct(rec, 0.99), "max": rec[-1] if rec else 0.0},
        "unrecovered_faults": len(h.pending),
        "lock_takeover_s_max": max(h.lock_takeovers, default=0.0), "stuck_locks": h.stuck_locks,
        "unasked_exits": list(h.unasked_exits),
        "swap_s": {"p50": pct(durations, 0.5), "p99": pct(durations, 0.99)},
        "lease_s": h.opts.lease_s, "timed_out": timed_out,
    }
    report["ok"] = (not timed_out and report["samples_lost_after_commit"] == 0 and report["corrupt_reads"] == 0
                    and report["failed_reads"] == 0 and report["stuck_locks"] == 0 and not report["unasked_exits"]
                    and report["duplicate_tokens_across_swaps"] == 0 and report["reads"] > 0)
    return report


def format_report(r: dict[str, Any], command: str = "") -> str:
    """The report as Markdown."""
    f = r["faults"]
    rows = [
        ("swaps completed", r["swaps"]),
        ("swap_cap / generators", f"{r['swap_cap']} / {r['generators']}"),
        ("wall time (s)", f"{r['elapsed_s']:.0f}"),
        ("faults: generator kill -9 (restarted)", f["generator_kill"]),
        ("faults: kill -9 of the manager holding the lock", f"{f['manager_kill']} ({r['manager_kills_inside_swap']} inside a swap)"),
        ("faults: server stop + restart", f["server_restart"]),
        ("faults: generator SIGSTOP past lease and reservation timeout", f["generator_pause"]),
        ("samples committed (logged by generators)", r["samples_committed"]),
        ("samples lost after commit", r["samples_lost_after_commit"]),
        ("samples swapped in twice", r["duplicate_tokens_across_swaps"]),
        ("reads (every byte verified)", r["reads"]),
        ("corrupt reads", r["corrupt_reads"]),
        ("failed reads", r["failed_reads"]),
        ("longest reader stall (s)", f"{r['longest_reader_stall_s']:.2f} (longest server outage "
                                     f"{r['server_outage_s_max']:.2f})"),
        ("longest reader stall over 1 s not overlapping a server outage (s)",
         f"{r['longest_reader_stall_outside_outages_s']:.2f} (lease {r['lease_s']} s)"
         if r["longest_reader_stall_outside_outages_s"] else f"none (lease {r['lease_s']} s)"),
        ("recovery after a fault, to the next swap (s): p50 / p99 / max",
         f"{r['recovery_s']['p50']:.2f} / {r['recovery_s']['p99']:.2f} / {r['recovery_s']['max']:.2f} "
         f"(n = {r['recovery_s']['n']})"),
        ("standby took the lock, after the killed owner's lease ran out, max (s)",
         f"{r['lock_takeover_s_max']:.2f} (lease {r['lease_s']} s)"),
        ("stuck locks", r["stuck_locks"]),
        ("processes that exited unasked (restarted)", ", ".join(r["unasked_exits"]) or "none"),
        ("swap duration p50 / p99 (s)", f"{r['swap_s']['p50']:.3f} / {r['swap_s']['p99']:.3f}"),
        ("result", "OK" if r["ok"] else "FAILED"),
    ]
    out = ["# Reliability under injected faults", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    out += ["", "Recovery time is measured from the fault to the end of the next completed swap; a reader stall is the "
            "longest gap between two batches of one DataLoader reader. Lost samples are commits logged by generators "
            "that reached neither a swapped generation nor an open one.", ""]
    return "\n".join(out)


def _cmd_chaos(args: argparse.Namespace) -> int:
    opts = ChaosOptions(swaps=args.swaps, generators=args.generators, seed=args.seed, workdir=args.workdir,
                        max_minutes=args.max_minutes)
    if args.quick:
        opts.fault_every_s = (0.5, 1.5)
        opts.server_restart_every = 8
    report = run_chaos(opts)
    command = "wirehead chaos --swaps {}{}".format(args.swaps, " --quick" if args.quick else "")
    text = format_report(report, command)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2))
    import sys

    sys.stdout.write(text + "\n")
    return 0 if report["ok"] else 1


def add_cli(sub: Any) -> None:
    """Register ``wirehead chaos``."""
    p = sub.add_parser("chaos", help="run generators, manager and readers under injected faults; report losses")
    p.add_argument("--swaps", type=int, default=1000, help="run until this many swaps completed (default 1000)")
    p.add_argument("--quick", action="store_true", help="faults more often (for CI)")
    p.add_argument("--generators", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="seed of the fault schedule")
    p.add_argument("--workdir", default=None, help="folder for server data and logs (default: temporary)")
    p.add_argument("--max-minutes", type=float, default=40.0, help="fail if the swaps take longer than this")
    p.add_argument("--out", default="results/reliability.md", help="Markdown report (JSON beside it)")
    p.set_defaults(func=_cmd_chaos)
