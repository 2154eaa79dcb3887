"""What `wirehead status` reports: generations, fill, swaps, rates and reuse, computed as counts over time."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

from wirehead_core.config import Config, redact_uri
from wirehead_core.store import Store

__all__ = ["CacheStatus", "collect_status", "format_status"]


@dataclasses.dataclass
class CacheStatus:
    """A snapshot of one namespace.

    Attributes:
        uri: the server (credentials redacted).
        read_gen, write_gen: generation numbers (read_gen None before the first swap).
        phase: ``idle`` or ``swapping``.
        fill: committed samples in the write generation / swap_cap.
        swaps: completed swaps; ``mean_swap_s`` their mean duration.
        manager: owner of a live lock, or None.
        generators_alive, generators_total: generator processes with a fresh heartbeat / ever seen.
        produced, committed, blocked_s: generator totals.
        committed_per_s: samples committed per second over the generators' lifetime.
        swapped_in_per_s: samples that reached the read generation per second, between the first and last swap.
        reads: reads counted by datasets; ``read_per_s`` over the time since the first swap.
        reuse_mean, reuse_p95: reads per sample of read generations that were read at all.
        lost_after_commit: committed samples found neither in a swapped generation nor in an open one.
    """

    uri: str
    database: str
    namespace: str
    swap_cap: int
    read_gen: Optional[int] = None
    write_gen: Optional[int] = None
    phase: str = "uninitialised"
    fill: float = 0.0
    swaps: int = 0
    mean_swap_s: float = 0.0
    manager: Optional[str] = None
    generators_alive: int = 0
    generators_total: int = 0
    produced: int = 0
    committed: int = 0
    blocked_s: float = 0.0
    committed_per_s: float = 0.0
    swapped_in_per_s: float = 0.0
    reads: int = 0
    read_per_s: float = 0.0
    reuse_mean: float = 0.0
    reuse_p95: float = 0.0
    lost_after_commit: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return dataclasses.asdict(self)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def collect_status(config: Config, store: Optional[Store] = None) -> CacheStatus:
    """Read one consistent-enough snapshot of the namespace and derive rates from counts and timestamps."""
    own = store is None
    store = store or Store(config)
    try:
        snap = store.retry("status", store.snapshot, timeout_s=config.mongo.connect_timeout_s * 2)
        per_sample = _per_sample_reads(store, snap)
    finally:
        if own:
            store.close()
    now = time.time()
    st = CacheStatus(uri=redact_uri(config.mongo.uri), database=config.mongo.database,
                     namespace=config.mongo.namespace, swap_cap=config.swap_cap)
    swap = snap["swap"]
    if swap is None:
        return st
    st.read_gen, st.write_gen, st.phase = swap.get("read_gen"), int(swap["write_gen"]), swap["phase"]
    open_committed = sum(snap["committed"].values())
    st.fill = snap["committed"].get(st.write_gen, 0) / config.swap_cap
    events = snap["events"]
    st.swaps = len(events)
    if events:
        st.mean_swap_s = sum(e["duration_s"] for e in events) / len(events)
    if len(events) >= 2:
        span = events[-1]["finished_at"] - events[0]["finished_at"]
        st.swapped_in_per_s = sum(e["committed"] for e in events[1:]) / span if span > 0 else 0.0
    lock = snap["lock"]
    if lock and lock.get("owner") and lock.get("expires", 0) > now:
        st.manager = lock["owner"]
    gens = [p for p in snap["procs"] if p.get("kind") == "generator"]
    st.generators_total = len(gens)
    st.generators_alive = sum(1 for p in gens if not p.get("final") and now - p["updated"] < 10)
    st.produced = sum(int(p.get("produced", 0)) for p in gens)
    st.committed = sum(int(p.get("committed", 0)) for p in gens)
    st.blocked_s = sum(float(p.get("blocked_s", 0.0)) for p in gens)
    if gens:
        span = max(p["updated"] for p in gens) - min(p["started"] for p in gens)
        st.committed_per_s = st.committed / span if span > 0 else 0.0
    st.reads = sum(int(d.get("served", 0)) for d in snap["reads"].values())
    if events:
        span = now - events[0]["finished_at"]
        st.read_per_s = st.reads / span if span > 0 else 0.0
    if per_sample:
        st.reuse_mean = sum(per_sample) / len(per_sample)
        st.reuse_p95 = _percentile(per_sample, 0.95)
    # as `Store.committed_total`: a generation whose event is written but whose swap is not published yet is still
    # counted among the open ones, so only events of generations before the write generation count here
    swapped = sum(e["committed"] for e in events if int(e["_id"]) < st.write_gen)
    st.lost_after_commit = max(0, st.committed - swapped - open_committed)
    return st


def _per_sample_reads(store: Store, snap: dict[str, Any]) -> list[float]:
    """Reads per sample over generations that were read at all (every sample counts, unread ones as 0)."""
    out: list[float] = []
    for key, doc in snap["reads"].items():
        if int(doc.get("served", 0)) == 0:
            continue
        full = store.coll("state").find_one({"_id": key}, {"served_per": 1}) or {}
        counts = [float(v) for v in (full.get("served_per") or {}).values()]
        out.extend(counts + [0.0] * max(0, int(doc.get("n", 0)) - len(counts)))
    return out


def format_status(st: CacheStatus) -> str:
    """A human-readable table."""
    rows = [
        ("server", f"{st.uri}  db={st.database}  namespace={st.namespace}"),
        ("generations", f"read={st.read_gen}  write={st.write_gen}  phase={st.phase}"),
        ("fill", f"{st.fill * 100:.0f} % of swap_cap {st.swap_cap}"),
        ("swaps", f"{st.swaps}  (mean {st.mean_swap_s * 1000:.1f} ms)"),
        ("manager", st.manager or "none holds the lock"),
        ("generators", f"{st.generators_alive} alive / {st.generators_total} seen"),
        ("produced / committed", f"{st.produced} / {st.committed}  (blocked {st.blocked_s:.1f} s in total)"),
        ("committed per s", f"{st.committed_per_s:.2f}"),
        ("swapped in per s", f"{st.swapped_in_per_s:.2f}"),
        ("reads", f"{st.reads}  ({st.read_per_s:.2f} per s)"),
        ("reuse (reads/sample)", f"mean {st.reuse_mean:.2f}  p95 {st.reuse_p95:.2f}"),
        ("lost after commit", str(st.lost_after_commit)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
