"""The swap manager: verifies the write generation as it fills and swaps it in, in O(1).

One manager at a time holds a leased lock in the ``state`` collection (which no swap touches); another manager
takes over once the lease expires. While a generation fills the manager verifies each new commit record (its
chunks' checksums, or their count and sizes, or the record alone: ``manager.verify``) and hands back ids whose writer
died. A swap is a sequence of
idempotent steps, with the phase recorded in the ``swap`` state document before the first destructive one, so a
manager killed at any step is finished by the next without losing a committed sample:

``seal`` → ``intent`` (phase = swapping) → ``strays`` → ``indexes`` → ``reads-doc`` → ``promote`` → ``open-next``
→ ``event`` (recorded, idempotently) → ``publish`` (phase = idle, read = N, write = N + 1, ``read_coll``).

``manager.promote`` chooses how generation N becomes readable. ``pointer`` (default): ``promote`` does nothing and
``publish`` points readers at ``gen.N`` itself; the former read generation is dropped afterwards. No data moves on any
server. ``rename``: ``promote`` renames ``gen.N`` over ``read``, the paper's design; O(1) on mongod, but some
compatible servers (SecantusDB) copy every document, so the swap grows with the generation's size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Iterator, Optional

from wirehead_core.codec import field_meta_from_doc, verify_payload
from wirehead_core.config import Config
from wirehead_core.errors import CorruptSampleError, LeaseLostError, StoreUnavailableError
from wirehead_core.store import Store, pack_tokens

__all__ = ["SwapManager", "SWAP_STEPS", "fault_hook_from_env"]

_LOG = logging.getLogger(__name__)

#: The named steps of a swap, in order; a fault hook is called with each name before that step runs.
SWAP_STEPS = ("seal", "intent", "strays", "indexes", "reads-doc", "promote", "open-next", "event", "publish")


@dataclasses.dataclass
class _GenState:
    """What this manager knows about one write generation."""

    verified: dict[int, str] = dataclasses.field(default_factory=dict)  # id -> token
    records_read_at: float = -1e9  # monotonic time of the last look at the commit records
    missing_since: dict[int, float] = dataclasses.field(default_factory=dict)
    reissued: int = 0
    corrupt: int = 0
    last_reissue_check: float = 0.0
    # True when this manager opened the generation itself, so every reissue since is counted above: a full swap
    # with no reissue and no corruption then has no orphan chunks, and the O(cap) stray sweep is skipped.
    whole_history: bool = False
    # The reads document for ids 0..cap-1, written while the generation fills so a full swap does not have to.
    reads_doc: bool = False


#: One verification query fetches the chunks of at most this many samples, and (verify ``full``) this many bytes.
#: At 50 ms per emulated 16 KB sample, batches took the data plane's peak from 252 to 397 committed samples/s
#: (32 generators); larger batches held the server long enough to show in readers' latency.
_VERIFY_BATCH_SAMPLES = 256
_VERIFY_BATCH_BYTES = 4 * 1024 * 1024


def _verify_batches(records: list[dict[str, Any]], with_data: bool) -> Iterator[list[dict[str, Any]]]:
    """`records` in batches whose chunks one query fetches (a record whose size is unreadable goes alone)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for rec in records:
        try:
            nbytes = int(rec["b"]) if with_data else 0
        except (KeyError, TypeError, ValueError):
            nbytes = _VERIFY_BATCH_BYTES
        if batch and (len(batch) >= _VERIFY_BATCH_SAMPLES or size + nbytes > _VERIFY_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(rec)
        size += nbytes
    if batch:
        yield batch


class SwapManager:
    """Runs swaps for one namespace.

    Args:
        config (Config): validated configuration.
        name (str, optional): shown in the lock document and events.
        fault_hook (Callable[[str], None], optional): called with each step name of `SWAP_STEPS` before the step
            runs; used by tests and the chaos harness to pause or kill the manager at a precise point.
    """

    def __init__(self, config: Config, name: Optional[str] = None,
                 fault_hook: Optional[Callable[[str], None]] = None) -> None:
        self.config = config
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.owner = f"{self.name}:{uuid.uuid4().hex[:8]}"
        self.stop_event = threading.Event()
        self.store = Store(config, stop_event=self.stop_event)
        self.fault_hook = fault_hook
        self.swaps_done = 0
        self._gens: dict[int, _GenState] = {}
        self._opened: set[int] = set()
        self._holding = False
        self._renewed_at = -1e9
        self._write_seen: Optional[int] = None
        self._due = True  # whether the last pass found a swap may be due soon (see `run`)
        # (step, wall time it began) of the swap in progress: the event reports each step's seconds
        self._marks: list[tuple[str, float]] = []

    def stop(self) -> None:
        """Ask `run` to return after the current step."""
        self.stop_event.set()

    def run(self, max_swaps: Optional[int] = None, duration_s: Optional[float] = None) -> int:
        """Hold the lock and swap generations until stopped; returns the number of swaps this manager did.

        Args:
            max_swaps: return after this many swaps.
            duration_s: return after this many seconds.
        """
        cfg = self.config.manager
        deadline = None if duration_s is None else time.monotonic() + duration_s
        waiting_logged = False
        try:
            while not self.stop_event.is_set():
                if max_swaps is not None and self.swaps_done >= max_swaps:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    if not (self._holding and self._lease_fresh()) and not self._renew():
                        if not waiting_logged:
                            lock = self.store.retry("lock", self.store.lock_doc) or {}
                            _LOG.info("manager %s: waiting for the lock held by %s", self.name, lock.get("owner"))
                            waiting_logged = True
                        self.stop_event.wait(min(cfg.lease_s / 4, 1.0))
                        continue
                    waiting_logged = False
                    self.step()
                except LeaseLostError as exc:
                    _LOG.warning("manager %s: %s", self.name, exc)
                    self._holding = False
                    self._renewed_at = -1e9
                    self._gens.clear()
                    self._opened.clear()
                except StoreUnavailableError:
                    if self.stop_event.is_set():
                        break
                    raise
                # A pass costs the server a query: every `poll_s` while a swap may be due, four times less often
                # while the write generation still has ids to hand out (nothing then waits on this manager).
                self.stop_event.wait(cfg.poll_s if self._due else 4 * cfg.poll_s)
        finally:
            if self._holding:
                try:
                    self.store.release_lock(self.owner)
                except Exception as exc:  # noqa: BLE001 - best effort on the way out
                    _LOG.debug("lock release failed: %s", exc)
            self.store.close()
        return self.swaps_done

    # ------------------------------------------------------------------ lock
    def _renew(self) -> bool:
        store = self.store
        asked = time.monotonic()
        held = store.retry("lock", lambda: store.acquire_lock(self.owner, self.config.manager.lease_s))
        if held:
            self._renewed_at = asked
        if held and not self._holding:
            _LOG.info("manager %s: holds the swap lock", self.name)
        elif self._holding and not held:
            lock = store.retry("lock", store.lock_doc) or {}
            raise LeaseLostError(f"lost the swap lock to {lock.get('owner')}")
        self._holding = held
        return held

    def _lease_fresh(self) -> bool:
        """A lease renewed less than a third of its length ago is still ours: no other manager can take it before
        it expires, so renewing it now would be a wasted round trip."""
        return time.monotonic() - self._renewed_at < self.config.manager.lease_s / 3

    def _checkpoint(self, step: str) -> None:
        """Before each swap step: mark its start, run the fault hook, then make sure we still hold the lease."""
        self._marks.append((step, time.time()))
        if self.fault_hook is not None:
            self.fault_hook(step)
        if self._lease_fresh():
            return
        if not self._renew():
            raise LeaseLostError(f"lost the swap lock before step {step!r}")

    # ------------------------------------------------------------------ one loop iteration
    def step(self) -> None:
        """One pass: recover an interrupted swap, open generations, verify, reissue, and swap when full.

        An idle pass costs one query: the swap document and the write generation's counter document come together
        (fetched by the write generation last seen), with the read generation's read counts once a swap may be due
        and, under ``carry``, the next generation's counter document; commit records are read only when commits
        were reported (`_verify_new`)."""
        store, reuse = self.store, self.config.reuse
        carry = self.config.generator.backpressure == "carry"
        seen = self._write_seen
        ids = ["swap"]
        if seen is not None:
            ids += [f"gen.{m}" for m in ((seen, seen + 1) if carry else (seen,))]
            ids += [f"reads.{seen - 1}"] if self._due else []
        docs = store.retry("read state", lambda: store.state_docs(ids, per=reuse.policy == "max_reads"))
        state = docs.get("swap")
        if state is None:
            store.retry("init", store.init_namespace)
            state = store.retry("swap state", store.swap_state)
        if state["phase"] == "swapping":
            _LOG.warning("manager %s: finishing the swap of generation %d interrupted earlier", self.name,
                         state["swapping_gen"])
            self._marks = []
            self._finish_swap(int(state["swapping_gen"]), float(state.get("swap_started", time.time())),
                              recovered=True, early=bool(state.get("swap_early", False)))
            return
        write = int(state["write_gen"])
        if write != seen:
            self._write_seen = write
            docs = {}
        # The generation a swap makes the generators' next is opened ahead, so that the swap does not have to (its
        # collection and indexes took 15 ms of a 1 MB pipeline's swap): under ``block`` the one after the write
        # generation, under ``carry`` the one after that too (generators write into the write generation and the
        # next; the one after is not used before a swap).
        for n in (write, write + 1, write + 2) if carry else (write, write + 1):
            if n not in self._opened:
                created = self._open(n)
                if created is None:
                    docs.pop(f"gen.{n}", None)
                else:  # as this manager wrote it: no writer has used the generation yet
                    docs[f"gen.{n}"] = created
        for n in (write, write + 1) if carry else (write,):
            gen_doc = docs.get(f"gen.{n}") or store.retry("gen doc", lambda: store.gen_doc(n))
            docs[f"gen.{n}"] = gen_doc
            self._verify_new(n, gen_doc)
            self._reissue_stale(n, gen_doc)
            gen = self._gens[n]
            if not gen.reads_doc:
                cap = self.config.swap_cap
                store.retry("reads doc", lambda: store.create_reads_doc(n, range(cap)))
                gen.reads_doc = True
        for old in [g for g in self._gens if g < write]:
            del self._gens[old]
        full = len(self._gens[write].verified) >= self.config.swap_cap
        # Under ``carry`` too: generators then write into the next generation, but a swap still needs this one full.
        self._due = reuse.when_readers_ahead == "early_swap" or self._swap_due(write, docs.get(f"gen.{write}"))
        decision = self._reuse_decision(state, write, full, docs.get(f"reads.{write - 1}"))
        if decision == "swap":
            self._swap(write, early=False)
        elif decision == "early":
            self._swap(write, early=True)

    def _swap_due(self, write: int, gen_doc: Optional[dict[str, Any]]) -> bool:
        """Whether the write generation may be full soon: once every id is handed out (the last commits may land at
        any moment). Until then nothing waits on this manager (readers under ``early_swap`` aside, see `step`).
        Passes every ``4 * poll_s`` until then: a pass that first saw every id handed out used to wait three quarters
        of the last landing time more, measured from its own late sight of the hand-out, so a 1 MB pipeline's swap
        came up to 40 ms after the generation was full and read."""
        if gen_doc is None or len(self._gens[write].verified) >= self.config.swap_cap:
            return True
        return int(gen_doc.get("done", 0)) >= self.config.swap_cap or int(gen_doc["next"]) >= self.config.swap_cap

    def _open(self, n: int) -> Optional[dict[str, Any]]:
        """Open generation `n` (idempotent); its counter document if this manager created it, which makes the
        manager's record of it whole (every reissue since is its own)."""
        created = self.store.retry("open generation", lambda: self.store.open_generation(n, self.config.swap_cap))
        self._opened.add(n)
        self._gens.setdefault(n, _GenState()).whole_history = created is not None
        return created

    def _reuse_decision(self, state: dict[str, Any], write: int, full: bool,
                        reads: Optional[dict[str, Any]] = None) -> Optional[str]:
        """``"swap"``, ``"early"`` or None, from the fill and the reuse policy.

        Under ``target`` a full generation waits until the read generation had ``(1 - tolerance) * target`` reads
        per sample (generators ahead); with ``when_readers_ahead: early_swap`` a read generation whose read rights
        are used up is replaced at once by whatever the write generation holds (readers ahead).
        """
        reuse = self.config.reuse
        read = state.get("read_gen")
        if reuse.policy == "off" or read is None:
            return "swap" if full else None
        early_allowed = (reuse.when_readers_ahead == "early_swap"
                         and len(self._gens[write].verified) >= reuse.early_swap_min)
        if not (full or early_allowed):
            return None
        if reuse.policy == "max_reads" and (full or not early_allowed):
            return "swap" if full else None
        doc = reads if reads is not None and reads["_id"] == f"reads.{read}" else self.store.retry(
            "reads doc", lambda: self.store.reads_doc(int(read), per=reuse.policy == "max_reads"))
        if doc is None:
            return "swap" if full else None
        n, claimed = int(doc["n"]), int(doc["claimed"])
        if reuse.policy == "max_reads":
            used_up = all(int(v) >= reuse.max_reads for v in doc["per"].values())
            return "early" if used_up else None
        budget = reuse.budget(n) or 0
        if full and claimed >= (1 - reuse.tolerance) * reuse.target * n:
            return "swap"
        if early_allowed and claimed >= budget:
            return "early" if not full else "swap"
        return None

    # ------------------------------------------------------------------ verification
    def _verify_new(self, n: int, gen_doc: Optional[dict[str, Any]] = None) -> None:
        """Verify the commit records not verified yet.

        Given the generation's counter document, the records are read only when its count of reported commits
        (``done``, which writers add to after each commit) is ahead of what this manager verified or removed, and at
        least once a second (a writer that died between its commit and its report, or that woke after its id was
        handed back and committed it, reports nothing)."""
        store, gen = self.store, self._gens.setdefault(n, _GenState())
        coll = store.gen_name(n)
        now = time.monotonic()
        if gen_doc is not None:
            reported = int(gen_doc.get("done", 0))
            # Checking the record alone (``records``) costs nothing per byte: all the new ones are read together
            # once the generation is reported full (unless an early swap may want them sooner); the other modes
            # read each sample's chunks as it comes, so that the swap does not wait on them.
            together = (self.config.manager.verify == "records"
                        and self.config.reuse.when_readers_ahead != "early_swap")
            due = reported > len(gen.verified) + gen.corrupt and (reported >= self.config.swap_cap or not together)
            if now - gen.records_read_at < 1.0 and not due:
                return
        gen.records_read_at = now
        # A commit not verified yet is of an id handed out (below the counter's ``next``; an id handed back is below
        # it too) and not verified: while a generation fills, a few, and asking for them alone costs a pass the
        # same at every cap (see `Store.commit_records`).
        cap = self.config.swap_cap
        handed = cap if gen_doc is None else min(int(gen_doc["next"]), cap)
        ids = [sid for sid in range(handed) if sid not in gen.verified]
        if not ids:
            return
        records = store.retry("records", lambda: store.commit_records(coll, ids, {"t": 1, "f": 1, "k": 1, "b": 1}))
        mode = self.config.manager.verify
        new = [rec for rec in records if int(rec["_id"]) not in gen.verified]
        for batch in _verify_batches(new, with_data=mode == "full"):
            chunks: dict[str, list[dict[str, Any]]] = {}
            if mode != "records":  # the chunks of the whole batch in one query
                tokens = [rec["t"] for rec in batch]
                chunks = store.retry("chunks", lambda: store.chunk_docs_many(coll, tokens, with_data=mode == "full"))
            for rec in batch:
                sid = int(rec["_id"])
                try:
                    self._verify_sample(rec, mode, chunks.get(rec["t"], []))
                    gen.verified[sid] = rec["t"]
                except CorruptSampleError as exc:
                    gen.corrupt += 1
                    _LOG.error("manager %s: generation %d id %d is corrupt (%s); its id is handed back", self.name,
                               n, sid, exc)
                    store.retry("remove corrupt", lambda: store.remove_committed(n, sid, rec["t"]))

    @staticmethod
    def _verify_sample(rec: dict[str, Any], mode: str, docs: list[dict[str, Any]]) -> None:
        """Check one commit record and, unless `mode` is ``records``, its chunk documents `docs` (in chunk order)."""
        try:
            metas = [field_meta_from_doc(f) for f in rec["f"]]
            nbytes, nchunks = int(rec["b"]), int(rec["k"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptSampleError(f"commit record unreadable ({type(exc).__name__}: {exc})") from exc
        if nbytes != sum(m.nbytes for m in metas) or not 1 <= nchunks <= max(1, nbytes):
            raise CorruptSampleError(f"commit record says {nbytes} bytes in {nchunks} chunks, its fields "
                                     f"{sum(m.nbytes for m in metas)} bytes")
        if mode == "records":
            return
        if len(docs) != rec["k"] or [d["c"] for d in docs] != list(range(rec["k"])):
            raise CorruptSampleError(f"{len(docs)} chunks stored, {rec['k']} committed")
        if sum(d["n"] for d in docs) != sum(m.nbytes for m in metas):
            raise CorruptSampleError("chunk sizes do not add up to the committed payload")
        if mode == "full":
            verify_payload(metas, [bytes(d["d"]) for d in docs])

    def _committed_tokens(self, coll: str) -> list[str]:
        return [r["t"] for r in self.store.retry("records", lambda: self.store.records(coll, {"s": "c"}, {"t": 1}))]

    def _reissue_stale(self, n: int, doc: Optional[dict[str, Any]]) -> None:
        """Hand back ids whose writer stopped: stale claims and ids reserved but never claimed.

        Every id handed out and not verified is watched from the first pass that sees it so, and the records are
        read only once one has been so for longer than the reservation timeout: a generation that fills in time
        costs no look at them, and a stalled writer is still found within one timeout of that first pass."""
        gen = self._gens.setdefault(n, _GenState())
        timeout = self.config.manager.reservation_timeout_s
        now = time.time()
        if now - gen.last_reissue_check < min(1.0, timeout / 4):
            return
        gen.last_reissue_check = now
        store = self.store
        if doc is None:
            return
        reserved = min(int(doc["next"]), int(doc["cap"]))
        pending = set(range(reserved)) - set(gen.verified) - {int(s) for s in doc["free"]}
        for sid in list(gen.missing_since):
            if sid not in pending:
                del gen.missing_since[sid]
        for sid in pending:
            gen.missing_since.setdefault(sid, now)
        if not any(now - first > timeout for first in gen.missing_since.values()):
            return
        records = store.retry("records", lambda: store.records(store.gen_name(n), {}, {"t": 1, "s": 1, "at": 1}))
        present = {int(r["_id"]) for r in records}
        for rec in records:
            if rec["s"] == "w" and rec["at"] < now - timeout:
                if store.retry("reissue", lambda: store.reissue(n, int(rec["_id"]), rec["t"])):
                    gen.reissued += 1
                    gen.missing_since.pop(int(rec["_id"]), None)
                    _LOG.warning("manager %s: id %d of generation %d was claimed %.0f s ago and never committed; "
                                 "reissued", self.name, rec["_id"], n, now - rec["at"])
        for sid in pending - present:
            if now - gen.missing_since[sid] > timeout and store.retry("reissue", lambda: store.reissue(n, sid, None)):
                gen.reissued += 1
                del gen.missing_since[sid]
                _LOG.warning("manager %s: id %d of generation %d was reserved but never claimed; reissued",
                             self.name, sid, n)

    # ------------------------------------------------------------------ the swap
    def _swap(self, n: int, early: bool) -> None:
        store = self.store
        started = time.time()
        self._marks = []
        if early:
            _LOG.info("manager %s: early swap of generation %d with %d samples (read rights used up)", self.name,
                      n, len(self._gens[n].verified))
        self._checkpoint("seal")
        store.retry("seal", lambda: store.seal(n))
        self._checkpoint("intent")
        ok = store.retry("intent", lambda: store.set_swap_state(
            {"phase": "idle", "write_gen": n},
            {"phase": "swapping", "swapping_gen": n, "swap_started": started, "swap_early": early}))
        if not ok:
            _LOG.warning("manager %s: swap state changed under us; re-reading it", self.name)
            return
        self._finish_swap(n, started, recovered=False, early=early)

    def _finish_swap(self, n: int, started: float, recovered: bool, early: bool) -> None:
        store, cap = self.store, self.config.swap_cap
        coll = store.gen_name(n)
        rename = self.config.manager.promote == "rename"
        gen = self._gens.setdefault(n, _GenState())
        removed = 0
        tokens: Optional[list[str]] = None  # the final commits' tokens in id order, once strays are gone
        # This manager opened the generation and is not finishing another's swap: the collection exists, with the
        # indexes it was created with (a recovery checks both: a rename may have happened, a writer may have
        # recreated a dropped collection).
        ours = gen.whole_history and not recovered
        if ours or store.retry("exists", lambda: store.collection_exists(coll)):
            self._checkpoint("strays")
            clean = gen.whole_history and not (gen.reissued or gen.corrupt or early or recovered)
            if clean:  # no id changed hands: only withdrawn claims can be left
                # A claim is the record of its id: with every id verified committed there is none to remove.
                if len(gen.verified) < cap:
                    removed = store.retry("strays", lambda: store.remove_claims(n))
            else:
                removed = store.retry("strays", lambda: store.remove_strays(n, self._committed_tokens(coll)))
            if early:
                # Claims still being written were withdrawn above (their writers rewrite them into the next
                # generation); what committed meanwhile is verified now, and the set is final.
                self._verify_new(n)
                removed += store.retry("strays", lambda: store.remove_strays(n, self._committed_tokens(coll)))
            self._checkpoint("indexes")
            if not ours:
                store.retry("indexes", lambda: store.ensure_indexes(coll))
            self._checkpoint("reads-doc")
            if clean and gen.reads_doc and len(gen.verified) == cap:
                # Every id 0..cap-1 verified and none changed hands: the set is known, its reads document written.
                tokens = [gen.verified[sid] for sid in range(cap)]
            else:
                committed = store.retry("records", lambda: store.records(coll, {"s": "c"}, {"_id": 1, "t": 1}))
                tokens = [r["t"] for r in committed]
                store.retry("reads doc", lambda: store.create_reads_doc(n, [int(r["_id"]) for r in committed],
                                                                        replace=True))
            self._checkpoint("promote")
            if rename:
                store.retry("rename", lambda: store.rename_to_read(n))
        self._checkpoint("open-next")
        carry = self.config.generator.backpressure == "carry"
        for m in (n + 1, n + 2) if carry else (n + 1,):
            if m not in self._opened:  # else opened ahead by `step`
                self._open(m)
        self._checkpoint("event")
        # Sealed and cleaned, the set cannot change any more: the records read before the rename are those the read
        # collection holds. A manager finishing another's swap after the rename reads them from there.
        if tokens is None:
            tokens = [r["t"] for r in store.retry("records", lambda: store.records(
                "read" if rename else coll, {"s": "c", "g": n}, {"t": 1}))]
        count = len(tokens)
        finished = time.time()
        event = {"_id": n, "generation": n, "started_at": started, "finished_at": finished,
                 "duration_s": finished - started, "committed": count,
                 "tokens": pack_tokens(tokens), "strays_removed": removed,
                 "reissued": gen.reissued, "corrupt": gen.corrupt, "manager": self.name, "recovered": recovered,
                 "early": early}
        recorded = bool(count and (early or count == cap))  # else a manager that took over moved on
        if recorded:  # publishing fails below
            store.retry("event", lambda: store.insert_event(event))
        self._checkpoint("publish")
        published = store.retry("publish", lambda: store.set_swap_state(
            {"phase": "swapping", "swapping_gen": n},
            {"phase": "idle", "read_gen": n, "write_gen": n + 1, "read_count": count, "swapping_gen": None,
             "swap_early": False, "read_coll": "read" if rename else coll}))
        if not published:
            return
        if recorded:
            # The event, written before the publish so that a manager taking over can finish the swap, gets the
            # swap's whole time once published: seal to publish, and each step's seconds in step order
            marks = self._marks + [("", time.time())]
            timing = {"published_at": marks[-1][1], "duration_s": marks[-1][1] - started,
                      "steps_s": {step: round(t1 - t0, 6) for (step, t0), (_, t1) in zip(marks, marks[1:])}}
            store.retry("event timing", lambda: store.update_event(n, timing))
        # The former read generation goes now (under rename, the rename dropped it; this drops collections that
        # stopped writers recreated).
        store.retry("cleanup", lambda: store.drop_leftover_generations(n + 1 if rename else n))
        self._gens.pop(n, None)
        self.swaps_done += 1
        _LOG.info("manager %s: generation %d swapped in (%d samples, %.3f s%s)", self.name, n, count,
                  finished - started, ", recovered" if recovered else "")


def fault_hook_from_env() -> Optional[Callable[[str], None]]:
    """A fault hook configured by environment variables, for fault-injection tests and the chaos harness.

    ``WIREHEAD_FAULT_PAUSE=step[,step...]:seconds`` pauses before those steps of `SWAP_STEPS`;
    ``WIREHEAD_FAULT_SKIP=k`` lets the first k matching steps pass without pausing;
    ``WIREHEAD_FAULT_FILE=path`` receives the step name (one line) just before each pause, so a test can wait for
    it and kill the process at that exact point.
    """
    spec = os.environ.get("WIREHEAD_FAULT_PAUSE")
    if not spec:
        return None
    steps_part, _, seconds = spec.rpartition(":")
    steps = set(steps_part.split(","))
    unknown = steps - set(SWAP_STEPS)
    if unknown:
        raise ValueError(f"WIREHEAD_FAULT_PAUSE names unknown steps {sorted(unknown)}; known: {SWAP_STEPS}")
    pause = float(seconds)
    marker = os.environ.get("WIREHEAD_FAULT_FILE")
    skip = [int(os.environ.get("WIREHEAD_FAULT_SKIP", "0"))]

    def hook(step: str) -> None:
        if step in steps:
            if skip[0] > 0:
                skip[0] -= 1
                return
            if marker:
                with open(marker, "a") as fh:
                    fh.write(step + "\n")
            _LOG.warning("fault injection: pausing %.1f s before step %s", pause, step)
            time.sleep(pause)

    return hook

