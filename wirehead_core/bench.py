"""`wirehead bench`: measure the cache against the limits of the machine and against the original implementation.

Every number is a ratio or rate measured in this run, on this machine, against the server the bench starts itself:

1. data plane — raw driver insert + read of the same bytes vs wirehead end to end (generator → commit → swap →
   dataset read), for samples of about 1, 4 and 32 MB and each ``manager.verify`` mode;
2. scaling — generators with an emulated cost (a sleep per sample standing in for GPU or remote generation; labelled
   as emulated everywhere) from 1 to 64: committed samples/s, ideal, efficiency;
3. swap cost — swap duration for swap_cap 10, 100, 1000 with one sample size and the same paced load at every cap,
   and read latency near swaps vs elsewhere;
4. the original wirehead 0.9.3 side by side (same server, same emulated generators, same cap), in paired rounds;
   the setup is `SideBySide`, set with the ``--side-*`` flags (``wirehead bench --help``);
5. server memory vs the paper's formula 2 × swap_cap × sample size.

One more section runs only when asked for (``--only server``, and in ``--quick``): the raw loop run after run on one
server under two checkpoint periods, which shows why `LocalServer` sets its own.

Results: CSV per section and ``summary.md`` under the output folder, with each section's duration.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import itertools
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import psutil
import yaml

from wirehead_core.config import Config, apply_overrides, config_from_dict
from wirehead_core.launch import spawn, terminate, wirehead_command
from wirehead_core.server import DEFAULT_CHECKPOINT_S, LocalServer, find_server_binary
from wirehead_core.store import Store

__all__ = ["BenchOptions", "SideBySide", "run_bench", "add_cli"]

_LOG = logging.getLogger(__name__)
_MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class SideBySide:
    """The setup both implementations run in the side by side: `generators` emulated generators sleeping `cost_s`
    per sample, swap cap `cap`, samples of two uint8 fields of `size`³, runs of `seconds`, `rounds` paired rounds."""

    generators: int = 4
    cost_s: float = 0.2
    cap: int = 20
    size: int = 64
    seconds: float = 20.0
    rounds: int = 3

    def __post_init__(self) -> None:
        for name in ("generators", "cap", "size", "rounds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{_side_flag(name)} must be a whole number ≥ 1, got {getattr(self, name)!r}")
        if self.cap < 2:
            raise ValueError(f"{_side_flag('cap')} must be ≥ 2 (a swap promotes a generation of cap samples), "
                             f"got {self.cap}")
        if not 0 <= self.cost_s < float("inf"):
            raise ValueError(f"{_side_flag('cost_s')} must be a number of seconds ≥ 0, got {self.cost_s!r}")
        if not 0 < self.seconds < float("inf"):
            raise ValueError(f"{_side_flag('seconds')} must be a number of seconds > 0, got {self.seconds!r}")

    @classmethod
    def default(cls, quick: bool) -> "SideBySide":
        """The default setup: three paired rounds, one under ``--quick``."""
        return cls(rounds=1 if quick else 3)

    def describe(self) -> str:
        return (f"{self.generators} generators at {self.cost_s:g} s per sample (emulated), cap {self.cap}, "
                f"2 x {self.size}^3 uint8, runs of {self.seconds:g} s")


@dataclasses.dataclass
class BenchOptions:
    """Sizes of one bench run (``quick`` shrinks everything for CI)."""

    out: Path = Path("results/bench")
    quick: bool = False
    workdir: Optional[str] = None
    sections: Optional[tuple[str, ...]] = None  # None: `default_sections`
    side: Optional[SideBySide] = None  # None: the default setup, in one round under ``quick``, else three

    def __post_init__(self) -> None:
        if self.sections is None:
            self.sections = self.default_sections(self.quick)
        if self.side is None:
            self.side = SideBySide.default(self.quick)

    @staticmethod
    def default_sections(quick: bool) -> tuple[str, ...]:
        """The five sections of a full run; ``--quick`` (CI) leaves out the original, which needs its own virtual
        environment, and runs the server-state loop for a few seconds."""
        if quick:
            return ("dataplane", "server", "scaling", "swap", "memory")
        return ("dataplane", "scaling", "swap", "original", "memory")

    @property
    def dataplane_sizes_mb(self) -> list[float]:
        return [1, 4] if self.quick else [1, 4, 32]

    @property
    def dataplane_total_mb(self) -> int:
        return 32 if self.quick else 256

    @property
    def dataplane_rounds(self) -> int:
        """Paired rounds per sample size: the raw loop, then one wirehead run per verify mode. Five, as the median
        of three moved by up to 0.2 between runs of the same code (single raw runs spread by up to 1.9x)."""
        return 1 if self.quick else 5

    @property
    def server_state_s(self) -> float:
        """How long the raw loop runs back to back under the first checkpoint period (the second runs as many
        times): past one of SecantusDB's own 60 s checkpoint cycles, however fast the machine is today."""
        return 3.0 if self.quick else 65.0

    @property
    def scaling_sweeps(self) -> list[tuple[float, list[int], float]]:
        """``(emulated cost per sample in s, generator counts, window in s)`` of each scaling sweep."""
        if self.quick:
            return [(0.5, [1, 2, 4], 6.0)]
        return [(1.0, [1, 2, 4, 8, 16, 64], 15.0), (0.05, [1, 4, 16, 32, 64], 8.0)]

    @property
    def swap_caps(self) -> list[int]:
        return [10, 100] if self.quick else [10, 100, 1000]


class _Bench:
    def __init__(self, opts: BenchOptions, workdir: Path) -> None:
        self.opts = opts
        self.workdir = workdir
        self.server = LocalServer(workdir / "server")
        self.n = 0

    def config(self, **overrides: Any) -> tuple[Config, Path]:
        self.n += 1
        data: dict[str, Any] = {
            "mongo": {"uri": self.server.uri, "database": f"bench{self.n}"},
            "swap_cap": 10, "fields": [{"name": "image", "dtype": "uint8"}],
            "manager": {"reservation_timeout_s": 30},
        }
        data = apply_overrides(data, {k.replace("__", "."): v for k, v in overrides.items()})
        path = self.workdir / f"bench{self.n}.yaml"
        path.write_text(yaml.safe_dump(data))
        return config_from_dict(data), path

    @contextlib.contextmanager
    def own_server(self, name: str, **kwargs: Any) -> Iterator[LocalServer]:
        """A fresh server of its own for one measurement, stopped (and its files removed) afterwards."""
        server = LocalServer(self.workdir / name, **kwargs)
        server.start()
        try:
            yield server
        finally:
            server.stop()
            shutil.rmtree(self.workdir / name, ignore_errors=True)

    def drop(self, config: Config) -> None:
        store = Store(config)
        try:
            store.drop_database()
        finally:
            store.close()


# ---------------------------------------------------------------------- 1. data plane
def _server_cpu_s(server: LocalServer) -> float:
    """CPU seconds (user + system) the server process has used so far."""
    return sum(psutil.Process(server.info.pid).cpu_times()[:2]) if server.info is not None else float("nan")


def _server_requests(store: Store) -> float:
    """Requests the server has answered so far (its ``opcounters``; NaN where it keeps none)."""
    counters = store.server_status().get("opcounters") or {}
    return float(sum(int(v) for v in counters.values())) if counters else float("nan")


def _raw_roundtrip(b: _Bench, server: LocalServer, payload: np.ndarray, count: int) -> dict[str, float]:
    """`Store.raw_roundtrip` timings plus ``server_cpu_s`` and ``requests``: the server's CPU and the requests it
    answered over the insert, the read and the drop; and ``drop_cpu_s``, the server's CPU in the drop alone."""
    config, _ = b.config(swap_cap=max(2, count // 8), mongo__uri=server.uri)
    store = Store(config)
    cpu_at: dict[str, float] = {}
    try:
        requests = _server_requests(store)
        out = store.raw_roundtrip(payload.tobytes(), count, config.chunk_bytes,
                                  on_phase=lambda phase: cpu_at.__setitem__(phase, _server_cpu_s(server)))
        return {**out, "server_cpu_s": cpu_at["drop"] - cpu_at["start"], "drop_cpu_s": cpu_at["drop"] - cpu_at["read"],
                "requests": _server_requests(store) - requests}
    finally:
        store.close()
        b.drop(config)


def _raw_writer(config: Config, payload: bytes, count: int, connected: Any, go: Any, inserted: Any) -> None:
    """The writer process of `_raw_concurrent`: inserts samples 0..count-1, counting them in `inserted`."""
    store = Store(config)
    try:
        store.swap_state()  # connected before the clock starts
        pieces = Store.raw_pieces(payload, config.chunk_bytes)
        connected.set()
        go.wait()
        for k in range(count):
            store.raw_insert(k, pieces)
            inserted.value = k + 1
    finally:
        store.close()


def _raw_concurrent(b: _Bench, server: LocalServer, payload: np.ndarray, count: int) -> dict[str, float]:
    """The raw loop with its insert and its read at the same time, then its drop: a writer process inserts the
    samples while this process reads each as soon as it is in (told through shared memory, not the server). What
    the driver moves on this server when reads and writes overlap, as a cache's do. Returns ``overlap_s`` (insert
    and read), ``drop_s`` and the server's CPU over both (``server_cpu_s``)."""
    import multiprocessing

    config, _ = b.config(swap_cap=max(2, count // 8), mongo__uri=server.uri)
    store = Store(config)
    ctx = multiprocessing.get_context("spawn")
    connected, go, inserted = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    writer = ctx.Process(target=_raw_writer, args=(config, payload.tobytes(), count, connected, go, inserted))
    try:
        store.raw_reset()
        writer.start()
        if not connected.wait(60):
            raise RuntimeError("raw concurrent baseline: the writer process did not connect")
        cpu, started = _server_cpu_s(server), time.perf_counter()
        go.set()
        total = 0
        for k in range(count):
            while inserted.value <= k:
                if not writer.is_alive() and inserted.value <= k:
                    raise RuntimeError(f"raw concurrent baseline: the writer exited after {inserted.value} samples")
                time.sleep(0.0005)
            total += store.raw_read(k)
        overlapped = time.perf_counter()
        store.raw_drop()
        dropped = time.perf_counter()
        if total != count * payload.nbytes:
            raise RuntimeError(f"raw concurrent baseline read back {total} bytes, expected {count * payload.nbytes}")
        return {"overlap_s": overlapped - started, "drop_s": dropped - overlapped,
                "server_cpu_s": _server_cpu_s(server) - cpu}
    finally:
        writer.join(timeout=60)
        if writer.is_alive():
            writer.kill()
        store.close()
        b.drop(config)


def _end_to_end(b: _Bench, server: LocalServer, nbytes: int, count: int, verify: str,
                backpressure: str) -> dict[str, float]:
    """One wirehead run (generator and manager processes, this process reading through the dataset): ``mb_s``,
    the server's CPU and the requests it answered per MB read (``server_cpu_ms_per_mb``, ``requests_per_mb``) and
    the share of the window the reader spent waiting for the next generation (``reader_wait_pct``), all over the
    timed window."""
    from wirehead_core.dataset import WireheadDataset

    # reuse target 1 with no tolerance: each sample is read exactly once and no generation is swapped out before it
    # was read, so the clock measures moving every byte in and out once, as the raw baseline does. Under ``carry``
    # the generator writes the next generation while the full one waits for its swap; under ``block`` it waits.
    config, path = b.config(swap_cap=max(2, count // 8), manager__verify=verify, manager__poll_s=0.01,
                            generator__poll_s=0.01, generator__backpressure=backpressure, mongo__uri=server.uri,
                            fields=[{"name": "image", "dtype": "uint8", "shape": [nbytes]}],
                            reuse={"policy": "target", "target": 1.0, "tolerance": 0.0, "claim_batch": 4})
    # The generator and the manager run as their own processes, as in production, until the reader is done. The
    # clock runs over whole cycles of the pipeline: from the first batch of the second generation read to the first
    # batch of the generation `gens` generations later, and what counts is what the reader was handed in between
    # (the rest of the first of those generations, every one after, the first batch of the last). Start-up and the
    # first fill fall before the window. (A swap may come while the reader still holds claimed rights on the former
    # generation; those reads are lost with it, and the reader reads their worth from a later generation: the count
    # is of samples read, not of generations.)
    gens = 7
    procs = [spawn(wirehead_command("manager", "--config", str(path)), b.workdir / "logs" / "dataplane-m.log"),
             spawn(wirehead_command("generate", "--config", str(path), "--source", "wirehead_core.sources:repeat"),
                   b.workdir / "logs" / "dataplane-g.log")]
    # Read in batches, one query each, as a DataLoader with a batch size does (`__getitems__`).
    ds = WireheadDataset(config, wait_timeout_s=600, return_key=True)
    batch = min(8, config.swap_cap)
    seen: list[int] = []  # generations in the order the reader first got a sample of them
    started = elapsed = cpu = wait = requests = 0.0
    samples = 0
    try:
        i = 0
        while len(seen) < gens + 2:
            got = ds.__getitems__(range(i, i + batch))
            i += batch
            if any(arr.numel() != nbytes for arr, _ in got):
                raise RuntimeError("data plane: a sample came back with the wrong size")
            newest = max(int(key[0]) for _, key in got)
            if newest not in seen:
                seen.append(newest)
                if len(seen) == 2:
                    started, cpu, wait = time.perf_counter(), _server_cpu_s(server), ds.stats.reuse_wait_s
                    requests = _server_requests(ds.store)
                    continue
            if len(seen) >= 2:
                samples += len(got)
        elapsed = time.perf_counter() - started
        cpu, wait = _server_cpu_s(server) - cpu, ds.stats.reuse_wait_s - wait
        requests = _server_requests(ds.store) - requests
    finally:
        terminate(procs)
        ds.close()
        b.drop(config)
    mb = samples * nbytes / _MB
    return {"mb_s": mb / elapsed, "server_cpu_ms_per_mb": 1000 * cpu / mb, "requests_per_mb": requests / mb,
            "reader_wait_pct": 100 * wait / elapsed}


def _dataplane(b: _Bench) -> list[dict[str, Any]]:
    """Per sample size and verify mode: wirehead end to end against the raw loop, in paired rounds on one server
    (the raw loop, then one wirehead run per mode; the raw loop once more after the last round). A round's ratio
    divides its wirehead run by the raw loops on either side of the round (their mean time), so the machine's drift
    between rounds (a third, minutes apart) cancels, and one raw run that a checkpoint slowed or missed counts half
    (single raw runs of one size spread by up to 1.9x, wirehead runs of one mode by 1.4x); a row reports the median.

    Modes ``(verify, backpressure)``: every verify mode with the generator writing ahead (``carry``, the setting for
    throughput), and the default ``block``, whose generator waits out each swap, with ``records``."""
    rows = []
    modes = (("full", "carry"), ("structure", "carry"), ("records", "carry"), ("records", "block"))
    for size_mb in b.opts.dataplane_sizes_mb:
        nbytes = int(size_mb * _MB)
        count = max(8, int(b.opts.dataplane_total_mb // size_mb))  # the raw loop moves the same MB at every size
        payload = np.random.default_rng(0).integers(0, 256, size=nbytes, dtype=np.uint8)
        total_mb = count * nbytes / _MB
        raws: list[dict[str, float]] = []
        concurrent: list[dict[str, float]] = []
        runs: dict[tuple[str, str], list[dict[str, float]]] = {m: [] for m in modes}
        with b.own_server(f"dataplane-{size_mb:g}mb") as server:
            for _ in range(b.opts.dataplane_rounds):
                raws.append(_raw_roundtrip(b, server, payload, count))
                concurrent.append(_raw_concurrent(b, server, payload, count))
                for verify, backpressure in modes:
                    runs[verify, backpressure].append(_end_to_end(b, server, nbytes, count, verify, backpressure))
            raws.append(_raw_roundtrip(b, server, payload, count))
        raw_mb_s = _bracketed(raws, total_mb, ("insert_s", "read_s"))
        # Wirehead also frees every byte it moved (a generation is dropped once the next one is read); the raw
        # loop's drop, timed after its clock stopped, shows what freeing the same bytes costs on this server.
        with_drop = _bracketed(raws, total_mb, ("insert_s", "read_s", "drop_s"))
        # A cache's reads and writes overlap, and it frees what it has read: the raw loop doing the same
        overlapped = [total_mb / (c["overlap_s"] + c["drop_s"]) for c in concurrent]
        for mode in modes:
            mb_s = [run["mb_s"] for run in runs[mode]]
            ratios = [w / r for w, r in zip(mb_s, raw_mb_s)]
            # the median's distribution-free interval over the rounds (see `_median_interval`): two of the rounds'
            # ratios, kept to 6 places so that they print as in ``ratio_runs``
            low, high, coverage = _median_interval(ratios)
            rows.append({"sample_mb": size_mb, "samples": count, "verify": mode[0], "backpressure": mode[1],
                         "rounds": len(raw_mb_s),
                         "wirehead_mb_s": round(_median(mb_s), 1),
                         "wirehead_runs_mb_s": " / ".join(f"{v:.0f}" for v in mb_s),
                         "raw_insert_read_mb_s": round(_median(raw_mb_s), 1),
                         "raw_runs_mb_s": " / ".join(f"{v:.0f}" for v in raw_mb_s),
                         "raw_single_runs_mb_s": " / ".join(f"{total_mb / (r['insert_s'] + r['read_s']):.0f}"
                                                            for r in raws),
                         "raw_insert_mb_s": round(_median([total_mb / r["insert_s"] for r in raws]), 1),
                         "raw_read_mb_s": round(_median([total_mb / r["read_s"] for r in raws]), 1),
                         "raw_with_drop_mb_s": round(_median(with_drop), 1),
                         "ratio": round(_median(ratios), 3),
                         "ratio_runs": " / ".join(f"{v:.2f}" for v in ratios),
                         "ratio_low": round(low, 6), "ratio_high": round(high, 6),
                         "ratio_interval_coverage": round(coverage, 6),
                         "ratio_to_raw_with_drop": round(_median([w / r for w, r in zip(mb_s, with_drop)]), 3),
                         "raw_concurrent_with_drop_mb_s": round(_median(overlapped), 1),
                         "ratio_to_raw_concurrent_with_drop": round(_median([w / r for w, r in zip(mb_s, overlapped)]),
                                                                    3),
                         # where the time goes: the server's CPU per MB moved (the raw loop's covers its insert,
                         # read and drop, as wirehead's covers the generations it drops in the window; the drop's
                         # own share beside it), the requests it answered per MB (the raw loop: one insert and one
                         # query per sample), and how much of the window the reader waited for the writer side
                         "server_cpu_ms_per_mb": round(_median_of(runs[mode], "server_cpu_ms_per_mb"), 2),
                         "raw_server_cpu_ms_per_mb": round(_median([1000 * r["server_cpu_s"] / total_mb for r in raws]), 2),
                         "raw_drop_cpu_ms_per_mb": round(_median([1000 * r["drop_cpu_s"] / total_mb for r in raws]), 2),
                         "raw_concurrent_server_cpu_ms_per_mb": round(
                             _median([1000 * c["server_cpu_s"] / total_mb for c in concurrent]), 2),
                         "requests_per_mb": round(_median_of(runs[mode], "requests_per_mb"), 2),
                         "raw_requests_per_mb": round(_median([r["requests"] / total_mb for r in raws]), 2),
                         "reader_wait_pct": round(_median_of(runs[mode], "reader_wait_pct"), 1)})
            _LOG.info("data plane %s", rows[-1])
    return rows


def _bracketed(raws: list[dict[str, float]], total_mb: float, keys: tuple[str, ...]) -> list[float]:
    """MB/s of the raw loop around each round: `total_mb` over the mean time (the sum of `keys`) of the raw runs
    before and after it."""
    times = [sum(r[k] for k in keys) for r in raws]
    return [total_mb / ((before + after) / 2) for before, after in zip(times, times[1:])]


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _median_interval(values: list[float], coverage: float = 0.9) -> tuple[float, float, float]:
    """A distribution-free confidence interval of the median of `values` (paired rounds): their k-th smallest and
    k-th largest, for the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least `coverage`, or the
    extremes where none reaches it (94 % for five rounds, 75 % for three, none for one). Returns the low end, the
    high end and the interval's coverage."""
    xs, n = sorted(values), len(values)

    def covered(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and covered(k + 1) >= coverage:
        k += 1
    return xs[k - 1], xs[n - k], covered(k)


def _interval_note(interval: tuple[float, float, float], target: float,
                   fmt: Callable[[float], str] = "{:.2f}".format) -> tuple[str, str]:
    """For a target on a median of rounds (higher is better) and that median's `_median_interval`: the interval as
    the summary names it (nothing for a single round, whose coverage is 0), and a note where the interval holds the
    target, so that the rounds leave it open whichever side their median fell on."""
    lo, hi, cover = interval
    if cover <= 0:
        return "", ""
    open_ = lo < target <= hi
    return (f"; its {cover * 100:.0f} % interval {fmt(lo)}–{fmt(hi)}",
            " (the interval holds the target: these rounds do not settle it)" if open_ else "")


def _median_of(runs: list[dict[str, float]], key: str) -> float:
    """The median of one measurement over runs."""
    return _median([run[key] for run in runs])


def _server_state(b: _Bench) -> list[dict[str, Any]]:
    """The raw loop again and again on one server with SecantusDB's own checkpoint period (60 s) and with the one
    `LocalServer` sets: how the server's speed moves as dropped generations and journal files pile up."""
    rows = []
    if find_server_binary()[0] != "secantus":
        return rows
    payload = np.random.default_rng(0).integers(0, 256, size=_MB, dtype=np.uint8)
    count = 32 if b.opts.quick else 128
    runs = 0  # counted under the first period's clock; the second period runs as many
    for checkpoint_s in (60.0, DEFAULT_CHECKPOINT_S):
        saved = os.environ.pop("SECANTUS_CHECKPOINT_SECONDS", None)
        try:
            with b.own_server(f"state-{checkpoint_s:g}s", checkpoint_s=checkpoint_s) as server:
                deadline = time.monotonic() + b.opts.server_state_s
                for run in itertools.count():
                    if run == runs if runs else (run > 0 and time.monotonic() >= deadline):
                        runs = run
                        break
                    raw = _raw_roundtrip(b, server, payload, count)
                    rows.append({"checkpoint_s": checkpoint_s, "run": run + 1,
                                 "written_mb": count * (run + 1),
                                 "raw_insert_read_mb_s": round(count / (raw["insert_s"] + raw["read_s"]), 1)})
        finally:
            if saved is not None:
                os.environ["SECANTUS_CHECKPOINT_SECONDS"] = saved
    return rows


# ---------------------------------------------------------------------- 2. scaling
def _blocked_s(store: Store) -> float:
    """Seconds the generators' writers have waited for a swap so far, per their last heartbeats."""
    return sum(float(p.get("blocked_s", 0.0)) for p in store.coll("procs").find({"kind": "generator"},
                                                                                 {"blocked_s": 1}))


def _scaling(b: _Bench) -> list[dict[str, Any]]:
    """Committed samples/s of 1..64 emulated generators, for each sweep ``(cost per sample, generator counts,
    window)``: the first with the bench's emulated cost, the second short enough that the data plane saturates.
    The server's CPU (share of one core) and the whole machine's are measured over each window."""
    rows = []
    for cost, counts, window in b.opts.scaling_sweeps:
        base = None
        for count in counts:
            # one swap per second at the ideal rate
            config, path = b.config(swap_cap=max(4, round(count / cost)),
                                    fields=[{"name": "image", "dtype": "float32", "shape": [16, 16, 16]}])
            store = Store(config)
            procs = [spawn(wirehead_command("manager", "--config", str(path)), b.workdir / "logs" / "scaling-m.log")]
            procs += [spawn(wirehead_command("generate", "--config", str(path), "--source",
                                             "wirehead_core.sources:seeded", "--seed", str((i + 1) * 10**9),
                                             "--arg", f"delay_s={cost}"), b.workdir / "logs" / f"scaling-{i}.log")
                      for i in range(count)]
            try:
                deadline = time.monotonic() + 120 + count
                while time.monotonic() < deadline:
                    live = [p for p in store.coll("procs").find({"kind": "generator"}) if p.get("committed", 0) > 0]
                    if len(live) >= count:
                        break
                    time.sleep(0.2)
                time.sleep(max(cost, 1.0))
                psutil.cpu_percent()
                s0, c0, t0, w0 = _server_cpu_s(b.server), store.committed_total(), time.monotonic(), time.time()
                blocked0 = _blocked_s(store)
                time.sleep(window)
                s1, c1, t1, w1 = _server_cpu_s(b.server), store.committed_total(), time.monotonic(), time.time()
                blocked1 = _blocked_s(store)
                machine = psutil.cpu_percent()
                swaps = sorted(e["finished_at"] for e in store.coll("events").find(
                    {"finished_at": {"$gte": w0, "$lte": w1}}, {"finished_at": 1}))
            finally:
                terminate(procs)
                store.close()
                b.drop(config)
            rate = (c1 - c0) / (t1 - t0)
            base = base or rate
            ideal = count / cost
            rows.append({"generators": count, "emulated_cost_s": cost, "swap_cap": config.swap_cap,
                         "committed_per_s": round(rate, 3),
                         "ideal_per_s": round(ideal, 3), "scale_factor": round(rate / base, 2),
                         "efficiency": round(rate / ideal, 3),
                         "server_cpu_pct_of_core": round(100 * (s1 - s0) / (t1 - t0)),
                         "machine_cpu_pct": round(machine),
                         # the cause of a shortfall under backpressure ``block``: generators' writers waiting for a
                         # swap (their sources go on while their queues have room)
                         "writers_blocked_pct": round(100 * (blocked1 - blocked0) / count / (t1 - t0), 1),
                         "swap_interval_s": round(float(np.median(np.diff(swaps))), 2) if len(swaps) > 1 else None,
                         "emulated": True})
            _LOG.info("scaling %s", rows[-1])
    return rows


# ---------------------------------------------------------------------- 3. swap cost
def _swap_cost(b: _Bench) -> list[dict[str, Any]]:
    rows = []
    for promote, cap in itertools.product(("pointer", "rename"), b.opts.swap_caps):
        # A fresh server for each, so every setting starts from the same server state.
        with b.own_server(f"swap-{promote}-{cap}") as server:
            rows.append(_swap_run(b, server, promote, cap, _swaps_at(cap)))
        _LOG.info("swap cost %s", rows[-1])
    return rows


def _swaps_at(cap: int) -> int:
    """Swaps to run at `cap`: 7, and more where they are quick, up to 41 at cap 10 (a swap takes a few requests,
    milliseconds, so a median of 6 at a small cap moved between runs by as much as the cap itself: 2.6 to 4.8 ms at
    cap 10). The first swap is left out of every median (it has no former read generation)."""
    return 7 + 340 // cap


# emulated generation cost per sample and pause between reads in the swap runs (at most 200 samples/s each way)
_SWAP_PACE_S = 0.005


def _swap_run(b: _Bench, server: LocalServer, promote: str, cap: int, swaps: int) -> dict[str, Any]:
    """Swap durations and read latencies with a generator and a manager running as their own processes, as in
    production, and a reader in this one.

    The generator and the reader are paced the same at every cap (`_SWAP_PACE_S` per sample and per read), so the
    server carries the same load around every swap and only the cap differs: unpaced, a generator that fills a
    generation of 10 in a few milliseconds then waits for the swap, and the server sits idle around it."""
    from wirehead_core.dataset import WireheadDataset

    config, path = b.config(swap_cap=cap, fields=[{"name": "image", "dtype": "uint8", "shape": [64, 1024]}],
                            manager__poll_s=0.01, manager__promote=promote, mongo__uri=server.uri)
    manager = spawn(wirehead_command("manager", "--config", str(path), "--max-swaps", str(swaps)),
                    b.workdir / "logs" / "swap-m.log")
    generator = spawn(wirehead_command("generate", "--config", str(path), "--source", "wirehead_core.sources:seeded",
                                       "--seed", "1", "--arg", f"delay_s={_SWAP_PACE_S}"),
                      b.workdir / "logs" / "swap-g.log")
    latencies: list[tuple[float, float]] = []
    # one small update of the state collection after each read, as the swap's own requests are: what one request
    # costs the server at this cap, so the swap's time can be counted in requests
    probes: list[tuple[float, float]] = []
    stop = threading.Event()

    def read() -> None:
        ds = WireheadDataset(config, wait_timeout_s=600)
        probe_store = Store(config)
        probe = probe_store.coll("state")
        ds[0]  # waits for the first generation: not a read latency
        i = 1
        while not stop.is_set():
            t = time.time()
            ds[i]
            latencies.append((t, time.time() - t))
            t = time.time()
            probe.update_one({"_id": "bench-probe"}, {"$inc": {"n": 1}}, upsert=True)
            probes.append((t, time.time() - t))
            i += 1
            stop.wait(_SWAP_PACE_S)
        ds.close()
        probe_store.close()

    rt = threading.Thread(target=read)
    rt.start()
    try:
        manager.wait(timeout=600)
    finally:
        stop.set()
        terminate([generator, manager])
        rt.join()
    events = list(Store(config).coll("events").find({}, {"tokens": 0}))
    timed = events[1:] or events
    durations = [e["duration_s"] for e in timed]
    # where a swap's time goes: each step's median over the same swaps, in step order
    steps = list(dict.fromkeys(step for e in timed for step in e.get("steps_s", {})))
    step_ms = {step: 1000 * statistics.median([e["steps_s"].get(step, 0.0) for e in timed]) for step in steps}
    windows = [(e["started_at"] - 1.0, e.get("published_at", e["finished_at"]) + 1.0) for e in events]

    def near_swap(t: float) -> bool:  # within a second of a swap
        return any(lo <= t <= hi for lo, hi in windows)

    near: list[float] = []
    far: list[float] = []
    for t, lat in latencies:
        (near if near_swap(t) else far).append(lat)
    request = statistics.median([lat for t, lat in probes if near_swap(t)] or [float("nan")])
    swap_s = statistics.median(durations)
    b.drop(config)
    return {"promote": promote, "swap_cap": cap, "sample_kb": 64, "paced_ms": 1000 * _SWAP_PACE_S,
            "swaps": len(events),
            "swap_s_median": round(swap_s, 4),
            "steps_ms_median": " / ".join(f"{step} {ms:.1f}" for step, ms in step_ms.items()),
            "state_update_p50_ms_near_swap": round(request * 1000, 2),
            "swap_in_state_updates": round(swap_s / request, 2),
            "read_p50_ms_near_swap": round(_pct(near, 0.5) * 1000, 2),
            "read_p99_ms_near_swap": round(_pct(near, 0.99) * 1000, 2),
            "read_p50_ms_elsewhere": round(_pct(far, 0.5) * 1000, 2),
            "read_p99_ms_elsewhere": round(_pct(far, 0.99) * 1000, 2)}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


# ---------------------------------------------------------------------- 4. original side by side
def _original_python(b: _Bench) -> Path:
    venv = Path(os.environ.get("WIREHEAD_ORIGINAL_VENV", ".bench/original-venv"))
    python = venv / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import wirehead"], capture_output=True).returncode:
        _LOG.info("creating %s with wirehead==0.9.3", venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        subprocess.run(pip + ["wirehead==0.9.3"], check=True)
    return python


def _original(b: _Bench) -> list[dict[str, Any]]:
    """The original 0.9.3 and wirehead_core with the same emulated generators, cap and server, in paired rounds
    (the original, then ours): a row per implementation and round. Committed samples/s counts the samples swapped
    in between the first swap and the last, so start-up falls outside the clock for both (the original's rate moved
    between 1.9x and 3.1x below ours over six single runs of 45 s, with its discards between 79 and 311)."""
    side = b.opts.side
    python = _original_python(b)
    rows = []
    for rnd in range(1, side.rounds + 1):
        for name, r in (("original 0.9.3", _original_run(b, python, side)), ("wirehead_core", _ours_run(b, side))):
            rows.append({"implementation": name, "round": rnd, "generators": side.generators,
                         "emulated_cost_s": side.cost_s, "swap_cap": side.cap, "sample": f"2 x {side.size}^3 uint8",
                         "duration_s": round(r["elapsed_s"], 1),
                         "produced": r["produced"], "swaps": r["swaps"],
                         "swapped_in_per_s": round(r["swapped_in_per_s"], 2),
                         "discarded": r["discarded"], "reads_per_s": round(r["reads_per_s"], 1),
                         "corrupt_reads": r["corrupt_reads"], "failed_reads": r["failed_reads"], "emulated": True})
            _LOG.info("side by side %s", rows[-1])
    return rows


def _original_run(b: _Bench, python: Path, side: SideBySide) -> dict[str, Any]:
    """One run of the original 0.9.3 (`scripts/bench_original.py` in its own virtual environment)."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_original.py"
    info = b.server.info
    b.n += 1
    out = subprocess.run([str(python), str(script), "--host", info.host, "--port", str(info.port), "--db",
                          f"orig{b.n}", "--generators", str(side.generators), "--cost", str(side.cost_s), "--cap",
                          str(side.cap), "--duration", str(side.seconds), "--size", str(side.size), "--workdir",
                          str(b.workdir)],
                         capture_output=True, text=True, timeout=side.seconds + 300)
    if out.returncode != 0:
        raise RuntimeError(f"the original wirehead run failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _ours_run(b: _Bench, side: SideBySide) -> dict[str, Any]:
    """One run of wirehead_core: a manager and `side.generators` generator processes, this process reading and
    checking every sample through the dataset."""
    from wirehead_core.dataset import WireheadDataset
    from wirehead_core.errors import CorruptSampleError
    from wirehead_core.sources import verify_seeded
    from wirehead_core.status import collect_status

    fields = [{"name": "image", "dtype": "uint8", "shape": [side.size] * 3},
              {"name": "label", "dtype": "uint8", "shape": [side.size] * 3}]
    config, path = b.config(swap_cap=side.cap, fields=fields)
    procs = [spawn(wirehead_command("manager", "--config", str(path)), b.workdir / "logs" / "side-m.log")]
    procs += [spawn(wirehead_command("generate", "--config", str(path), "--source", "wirehead_core.sources:seeded",
                                     "--seed", str((i + 1) * 10**9), "--arg", f"delay_s={side.cost_s}"),
                    b.workdir / "logs" / f"side-{i}.log") for i in range(side.generators)]
    started = time.time()
    ds = WireheadDataset(config, wait_timeout_s=120)
    reads = corrupt = failed = 0
    read_started = None
    while time.time() - started < side.seconds:
        try:
            sample = ds[reads + corrupt + failed]
            read_started = read_started or time.time()
            verify_seeded(sample, config.fields)
            reads += 1
        except CorruptSampleError:
            corrupt += 1
        except Exception:  # noqa: BLE001 - counted
            failed += 1
    elapsed = time.time() - started
    read_elapsed = time.time() - (read_started or started)
    terminate(procs[1:])
    terminate(procs[:1])
    ds.close()
    st = collect_status(config)
    b.drop(config)
    return {"elapsed_s": elapsed, "produced": st.produced, "swaps": st.swaps,
            "swapped_in_per_s": st.swapped_in_per_s, "discarded": st.lost_after_commit, "reads_per_s":
            reads / read_elapsed, "corrupt_reads": corrupt, "failed_reads": failed}


# ---------------------------------------------------------------------- 5. memory
def _memory(b: _Bench) -> list[dict[str, Any]]:
    from wirehead_core.generator import Generator
    from wirehead_core.manager import SwapManager
    from wirehead_core.sources import seeded

    rows = []
    sample_bytes = 1 * _MB
    for cap in ([20] if b.opts.quick else [50, 200]):
        # A fresh server for each cap: on a used one, pages freed by earlier sections are reused and the growth
        # can come out negative.
        with b.own_server(f"memory-{cap}") as server:
            server_proc = psutil.Process(server.info.pid)
            before = server_proc.memory_info().rss
            config, _ = b.config(swap_cap=cap, mongo__uri=server.uri,
                                 fields=[{"name": "image", "dtype": "uint8", "shape": [sample_bytes]}])
            manager = SwapManager(config)
            mt = threading.Thread(target=manager.run, kwargs={"max_swaps": 1, "duration_s": 600})
            mt.start()
            gen = Generator(config, seeded(config, seed=1, count=2 * cap))
            gen.run()
            mt.join()
            after = server_proc.memory_info().rss
        formula = 2 * cap * sample_bytes
        rows.append({"swap_cap": cap, "sample_mb": 1, "formula_mb": round(formula / _MB, 1),
                     "server_rss_before_mb": round(before / _MB, 1),
                     "server_rss_growth_mb": round((after - before) / _MB, 1),
                     "server_rss_mb": round(after / _MB, 1), "ratio_to_formula": round((after - before) / formula, 2)})
        _LOG.info("memory %s", rows[-1])
    return rows


# ---------------------------------------------------------------------- driver
_SECTIONS = {"dataplane": _dataplane, "server": _server_state, "scaling": _scaling, "swap": _swap_cost,
             "original": _original, "memory": _memory}


def run_bench(opts: BenchOptions) -> dict[str, list[dict[str, Any]]]:
    """Run the selected sections; write one CSV each plus ``summary.md``; return the rows."""
    tmp = tempfile.TemporaryDirectory(prefix="wirehead-bench-") if opts.workdir is None else None
    workdir = Path(tmp.name if tmp else opts.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    b = _Bench(opts, workdir)
    started = time.monotonic()
    b.server.start()
    results: dict[str, list[dict[str, Any]]] = {}
    durations: dict[str, float] = {}
    try:
        for name in opts.sections or ():
            section_started = time.monotonic()
            results[name] = _SECTIONS[name](b)
            durations[name] = time.monotonic() - section_started
            _write_csv(opts.out / f"{name}.csv", results[name])
    finally:
        b.server.stop()
        if tmp is not None:
            tmp.cleanup()
    durations["total"] = time.monotonic() - started
    (opts.out / "summary.md").write_text(format_summary(results, opts, durations))
    return results


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    keys = list(rows[0])
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)] + [
        "| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def format_summary(results: dict[str, list[dict[str, Any]]], opts: BenchOptions,
                   durations: Optional[dict[str, float]] = None) -> str:
    """Markdown summary with the measured value and ratio against each target, and (given `durations`, seconds by
    section and ``total``) how long the run took."""
    default = BenchOptions.default_sections(opts.quick)
    only = "".join(f" --only {name}" for name in results) if tuple(results) != default else ""
    side = _side_flags(opts) if "original" in results else ""
    out = f" --out {opts.out}" if opts.out != BenchOptions.out else ""
    lines = [f"# wirehead bench{' (quick)' if opts.quick else ''}", "",
             f"Command: `wirehead bench{' --quick' if opts.quick else ''}{only}{side}{out}`; machine: "
             f"{os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB; server: the one "
             "`wirehead server` starts here. Rows marked emulated use a sleep per sample standing in for generation cost.", ""]
    if durations:
        lines += [f"Duration: {_minutes(durations['total'])} (" + ", ".join(
            f"{name} {_minutes(s)}" for name, s in durations.items() if name != "total") + ").", ""]
    titles = {"dataplane": "Data plane: raw driver insert+read vs wirehead end to end (same bytes)",
              "server": "Server state: the raw loop run after run on one server, by checkpoint period",
              "scaling": "Scaling with emulated generators (committed samples/s)",
              "swap": "Swap cost and read latency around swaps",
              "original": "Side by side with the original wirehead 0.9.3 (same server, generators, cap; samples "
                          "swapped in per second between the first swap and the last, in paired rounds)",
              "memory": "Server memory vs 2 x swap_cap x sample size"}
    for name, rows in results.items():
        lines += [f"## {titles[name]}", ""] + _table(rows) + [""]
    lines += ["## Targets", ""] + _targets(results, opts)
    if durations and not only and not side:  # the suite's time limit is for its default sections and setup
        limit = 2 if opts.quick else 15
        lines.append(f"- the whole {'quick ' if opts.quick else ''}suite in ≤ {limit} min: "
                     f"{_minutes(durations['total'])} — {'met' if durations['total'] <= 60 * limit else 'NOT met'}")
    lines.append("")
    return "\n".join(lines)


#: What each verify mode beyond ``records`` adds on the server, per byte moved.
_VERIFY_COST = {"full": "the manager reads every byte back to check its checksums, a third pass over the data",
                "structure": "the manager asks for every chunk's size, and SecantusDB decodes each chunk to answer"}


def _times(ratio: float) -> str:
    """A ratio as the side by side prints it (∞ where the original had no rate)."""
    return "∞" if ratio == float("inf") else f"{ratio:.2f}"


def _over_rate(rate: float, original: float) -> float:
    """`rate` over the original's rate: ∞ where the original had none (it swapped fewer than twice)."""
    return rate / original if original > 0 else float("inf")


def _side_flag(name: str) -> str:
    """The command-line flag of `SideBySide` field `name`."""
    return f"--side-{name.removesuffix('_s').replace('_', '-')}"


def _side_flags(opts: BenchOptions) -> str:
    """The ``--side-*`` flags that give `opts`' side-by-side setup (none for the default one)."""
    default = SideBySide.default(opts.quick)
    return "".join(f" {_side_flag(name)} {getattr(opts.side, name):g}"
                   for name in _SIDE_FLAGS if getattr(opts.side, name) != getattr(default, name))


def _targets(r: dict[str, list[dict[str, Any]]], opts: BenchOptions) -> list[str]:
    out = []
    if r.get("dataplane"):
        # The target is judged where wirehead moves each byte in and out once, as the raw loop does: verify
        # ``records`` (the readers check every sample's checksums). ``full`` and ``structure`` make the server read
        # every byte once more, or decode every chunk, before the swap: what that costs is reported beside it.
        for row in r["dataplane"]:
            judged = row["verify"] == "records"
            interval, note = _interval_note(
                (row["ratio_low"], row["ratio_high"], row["ratio_interval_coverage"]), 0.9)
            verdict = ("met" if row["ratio"] >= 0.9 else "NOT met") + note if judged else (
                f"no target: {_VERIFY_COST[row['verify']]}")
            out.append(f"- {'end to end ≥ 90 % of raw insert + read' if judged else 'verification cost'} "
                       f"({row['sample_mb']} MB, verify {row['verify']}, backpressure {row['backpressure']}): "
                       f"{row['ratio'] * 100:.0f} % of raw insert + read, the median of {row['rounds']} paired rounds "
                       f"({row['ratio_runs']}{interval}) — {verdict}; "
                       f"{row['ratio_to_raw_with_drop'] * 100:.0f} % of raw insert + read + drop, "
                       f"{row['ratio_to_raw_concurrent_with_drop'] * 100:.0f} % of raw insert ‖ read + drop")
        for row in r["dataplane"]:
            if row["verify"] == "records":
                out.append(f"- data plane cost ({row['sample_mb']} MB, verify records, backpressure "
                           f"{row['backpressure']}; no target): server CPU "
                           f"{row['server_cpu_ms_per_mb']:.1f} ms per MB end to end against "
                           f"{row['raw_server_cpu_ms_per_mb']:.1f} raw (insert, read and drop; the drop alone "
                           f"{row['raw_drop_cpu_ms_per_mb']:.1f}), "
                           f"{row['requests_per_mb']:.1f} server requests per MB against "
                           f"{row['raw_requests_per_mb']:.1f}; "
                           f"the reader waited {row['reader_wait_pct']:.0f} % of the window for the next generation")
    by_period: dict[float, list[float]] = {}
    for row in r.get("server", []):
        by_period.setdefault(row["checkpoint_s"], []).append(row["raw_insert_read_mb_s"])
    if len(by_period) == 2:
        (slow, slow_runs), (fast, fast_runs) = sorted(by_period.items(), reverse=True)
        out.append(f"- server state (no target): raw MB/s over {len(fast_runs)} runs back to back, mean / worst, "
                   f"checkpoint every {fast:g} s: {statistics.mean(fast_runs):.0f} / {min(fast_runs):.0f}; every {slow:g} s: "
                   f"{statistics.mean(slow_runs):.0f} / {min(slow_runs):.0f} "
                   f"({statistics.mean(fast_runs) / statistics.mean(slow_runs):.2f}x the mean)")
    main = [row for row in r.get("scaling", []) if row["emulated_cost_s"] == r["scaling"][0]["emulated_cost_s"]]
    if main:
        for row in main:
            if row["generators"] in (16, 64) or row is main[-1]:
                want = 0.99 if row["generators"] <= 16 else 0.95
                met = row["efficiency"] >= want
                pace = (f"one swap every {row['swap_interval_s']} s" if row["swap_interval_s"] is not None
                        else "fewer than two swaps in it")
                cause = "" if met else (f"; the generators' writers waited for a swap {row['writers_blocked_pct']} %"
                                        f" of the window, {pace} (a generation of {row['swap_cap']} fills in "
                                        f"{row['swap_cap'] / row['ideal_per_s']:g} s at the ideal rate)")
                out.append(f"- efficiency at {row['generators']} emulated generators: {row['efficiency'] * 100:.1f} %"
                           f" (target {want * 100:.0f} %) — {'met' if met else 'NOT met'}{cause}")
    short = [row for row in r.get("scaling", []) if row not in main]
    if short:
        peak = max(short, key=lambda row: row["committed_per_s"])
        out.append(f"- data plane saturation (emulated cost {peak['emulated_cost_s']} s, no target): peak "
                   f"{peak['committed_per_s']:.0f} committed samples/s at {peak['generators']} generators (ideal "
                   f"{peak['ideal_per_s']:.0f}); server at {peak['server_cpu_pct_of_core']} % of one core, machine at "
                   f"{peak['machine_cpu_pct']} %")
    for promote in ("pointer", "rename"):
        rows = {row["swap_cap"]: row for row in r.get("swap", []) if row["promote"] == promote}
        if len(rows) < 2:
            continue
        lo, hi = min(rows), max(rows)
        ratio = rows[hi]["swap_s_median"] / rows[lo]["swap_s_median"]
        # a swap is a few requests whatever the cap: where its time grows shows in its steps, and a server that
        # answers every request more slowly under the larger generations shows in the reads' and the probe
        # updates' medians beside it (the swap counted in probe updates is its cost with that taken out)
        slower = rows[hi]["read_p50_ms_near_swap"] / rows[lo]["read_p50_ms_near_swap"]
        slower_update = rows[hi]["state_update_p50_ms_near_swap"] / rows[lo]["state_update_p50_ms_near_swap"]
        out.append(f"- swap time (seal to publish; generator and reader paced at {rows[hi]['paced_ms']:g} ms per "
                   f"sample at every cap) at cap {hi} / cap {lo}, promote {promote}: {ratio:.2f} "
                   f"(target ≤ 1.5) — {'met' if ratio <= 1.5 else 'NOT met'}; ms per step, cap {lo}: "
                   f"{rows[lo]['steps_ms_median']}; cap {hi}: {rows[hi]['steps_ms_median']}; near swaps the read "
                   f"p50 is {slower:.2f}x and one update of the state collection {slower_update:.2f}x that at cap "
                   f"{lo}; the swap takes as long as {rows[lo]['swap_in_state_updates']:g} such updates at cap {lo} "
                   f"and {rows[hi]['swap_in_state_updates']:g} at cap {hi} (ratio "
                   f"{rows[hi]['swap_in_state_updates'] / rows[lo]['swap_in_state_updates']:.2f})")
    if r.get("swap"):
        worst = max(row["read_p99_ms_near_swap"] for row in r["swap"])
        out.append(f"- read p99 across swaps: {worst:.1f} ms (target ≤ 100 ms) — {'met' if worst <= 100 else 'NOT met'}")
    if r.get("original"):
        orig = [row for row in r["original"] if row["implementation"] != "wirehead_core"]
        ours = [row for row in r["original"] if row["implementation"] == "wirehead_core"]
        # the original's rate is 0 in a round where it swapped fewer than twice: ours is then infinitely faster
        ratios = [_over_rate(o["swapped_in_per_s"], x["swapped_in_per_s"]) for x, o in zip(orig, ours)]
        ratio, discarded = _median(ratios), sum(o["discarded"] for o in ours)
        interval, note = _interval_note(_median_interval(ratios), 2.0, _times)
        out.append(f"- committed samples/s vs the original ({opts.side.describe()}): {_times(ratio)}x, the median "
                   f"of {len(ratios)} paired rounds ({' / '.join(_times(v) for v in ratios)}{interval}), with "
                   f"{discarded} discarded (the original discarded {' / '.join(str(x['discarded']) for x in orig)}; "
                   f"it swapped {' / '.join(str(x['swaps']) for x in orig)} times) — "
                   + ("met" if ratio >= 2 and discarded == 0 else "NOT met") + (note if discarded == 0 else ""))
        if opts.side.cost_s > 0:
            out.append(_side_by_side_ceiling(orig, ours, opts.side))
    return out


def _side_by_side_ceiling(orig: list[dict[str, Any]], ours: list[dict[str, Any]], side: SideBySide) -> str:
    """What bounds the side by side's ratio: no implementation swaps in more than its emulated generators make, so
    in each round the ratio is at most that rate over the original's (∞ where the original has no rate)."""
    made = side.generators / side.cost_s
    ceilings = [_over_rate(made, x["swapped_in_per_s"]) for x in orig]
    shares = " / ".join(f"{o['swapped_in_per_s'] / made * 100:.0f}" for o in ours)
    rates = " / ".join(f"{x['swapped_in_per_s']:g}" for x in orig)
    return (f"- side by side ceiling (no target): the generators make {made:g} samples per second, and ours swapped "
            f"in {shares} % of that; at the original's {rates} per second no implementation could show more than "
            f"{' / '.join(_times(c) for c in ceilings)}x (median {_times(_median(ceilings))}x)")


def add_cli(sub: Any) -> None:
    """Register ``wirehead bench``."""
    p = sub.add_parser("bench", help="benchmarks: data plane, scaling, swap cost, original side by side, memory")
    p.add_argument("--quick", action="store_true", help="small sizes for CI (about 2 minutes)")
    p.add_argument("--out", default="results/bench", help="output folder (default results/bench)")
    p.add_argument("--only", action="append", choices=list(_SECTIONS), help="run only these sections")
    p.add_argument("--workdir", default=None)
    side = p.add_argument_group("side by side with the original (the setup both implementations run; defaults: "
                                f"{SideBySide().describe()}, 3 paired rounds, 1 with --quick)")
    for name, (kind, what) in _SIDE_FLAGS.items():
        side.add_argument(_side_flag(name), dest=f"side_{name}", type=kind,
                          default=None, metavar=kind.__name__.upper(), help=what)
    p.set_defaults(func=_cmd_bench)


#: `SideBySide` fields settable from the command line, with their type and help.
_SIDE_FLAGS: dict[str, tuple[type, str]] = {
    "generators": (int, "emulated generator processes"),
    "cost_s": (float, "seconds each generator sleeps per sample (the emulated generation cost)"),
    "cap": (int, "swap cap of both implementations"),
    "size": (int, "edge of the two uint8 volumes of a sample"),
    "seconds": (float, "length of each implementation's run in a round"),
    "rounds": (int, "paired rounds (the original, then ours)"),
}


def _cmd_bench(args: argparse.Namespace) -> int:
    given = {name: value for name in _SIDE_FLAGS if (value := getattr(args, f"side_{name}")) is not None}
    try:
        side = dataclasses.replace(SideBySide.default(args.quick), **given)
    except ValueError as exc:
        sys.stderr.write(f"wirehead bench: {exc}\n")
        return 2
    opts = BenchOptions(out=Path(args.out), quick=args.quick, workdir=args.workdir,
                        sections=tuple(args.only) if args.only else None, side=side)
    run_bench(opts)
    sys.stdout.write((opts.out / "summary.md").read_text() + "\n")
    return 0
