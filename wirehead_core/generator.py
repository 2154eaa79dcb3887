"""The generator runtime: pull samples from any iterable and commit them to the write generation.

Per sample: encode (checks arity, types, declared dtype/shape, NaN policy, size) → reserve an id in the open write
generation → claim it with a fresh token → write the chunks → turn the claim into a commit record. Only the commit
record makes a sample visible, so a process killed at any point leaves nothing partial for readers. When the write
generation is full the generator never discards: it blocks until the swap (``backpressure: block``) or writes into
the next generation (``backpressure: carry``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from wirehead_core.codec import EncodedSample, encode_sample
from wirehead_core.config import Config
from wirehead_core.errors import SampleError, StoreUnavailableError, WireheadError
from wirehead_core.store import Store, unpack_tokens

__all__ = ["Generator", "GeneratorStats", "SourceError"]

_LOG = logging.getLogger(__name__)


class SourceError(SampleError):
    """The user's iterable raised an exception while producing a sample."""


@dataclasses.dataclass
class GeneratorStats:
    """Counters of one generator run.

    Attributes:
        produced: samples pulled from the source and encoded.
        committed: samples committed (visible to the manager); never fewer than produced minus one in flight.
        blocked_s: seconds during which a writer thread waited for a swap because the write generation was full.
        claims_lost: ids taken away (this process was presumed dead) and written again under a new id.
        abandoned: samples produced but not committed because the generator was stopped while writing them.
        elapsed_s: wall time of the run.
    """

    produced: int = 0
    committed: int = 0
    blocked_s: float = 0.0
    claims_lost: int = 0
    abandoned: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for heartbeats and logs)."""
        return dataclasses.asdict(self)


class _ClaimLost(Exception):
    """Internal: our reservation was given to another writer while we wrote."""


#: A group commit takes at most this many samples, and this many bytes, in one insert. (SecantusDB spent 9-10 ms of
#: CPU per MB on inserts of 8 x 4 MB samples, 6-8 ms on inserts of 16 MB or less.)
_GROUP_MAX = 16
_GROUP_BYTES = 16 * 1024 * 1024
#: Samples of at least this many bytes get two writer threads unless ``generator.writers`` says otherwise.
_TWO_WRITERS_BYTES = 512 * 1024


def _commit_meta(encoded: EncodedSample) -> dict[str, Any]:
    """What a commit record says about its sample: field layout, chunk count, bytes."""
    return {"f": [f.to_doc() for f in encoded.fields], "k": len(encoded.chunks), "b": encoded.nbytes}


class Generator:
    """Commits samples from `source` into the cache.

    Args:
        config (Config): validated configuration.
        source (Iterable): yields tuples with one numpy array / torch tensor per configured field.
        name (str, optional): shown in status output; defaults to ``host:pid``.
        commit_log (str | Path, optional): append one JSON line ``{"gen", "sid", "token"}`` per committed sample,
            flushed at once, for audits (the chaos harness checks that no logged commit is ever lost).
    """

    def __init__(self, config: Config, source: Iterable[Any], name: Optional[str] = None,
                 commit_log: Optional[str | Path] = None) -> None:
        self.config = config
        self.source = source
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.proc_id = f"generator-{uuid.uuid4().hex[:12]}"
        self.stop_event = threading.Event()
        self.store = Store(config, stop_event=self.stop_event)
        self.stats = GeneratorStats()
        self._write_gen: Optional[int] = None
        # generation -> monotonic time before which it is known to have no id left (asked again then, for ids
        # handed back after a writer died); shared by the writer threads, under `_lock` as the counters are
        self._full: dict[int, float] = {}
        self._lock = threading.Lock()
        self._writer = threading.local()  # per writer thread: samples it settled (committed or abandoned)
        self._blocked = 0  # writer threads waiting for a swap now, and when that number last changed
        self._blocked_since = 0.0
        self._started = 0.0
        self._beat_stop = threading.Event()
        self._commit_log = open(commit_log, "a", buffering=1) if commit_log else None

    def stop(self) -> None:
        """Ask the run loop to finish (safe from signal handlers and other threads)."""
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT stop the generator cleanly (main thread only)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self, max_samples: Optional[int] = None) -> GeneratorStats:
        """Commit samples until the source ends, `max_samples` are committed, or `stop()` is called.

        The source runs in the calling thread and ``generator.writers`` writer threads commit, so generating the
        next sample overlaps writing the previous ones (``generator.prefetch`` samples may wait in between), and one
        writer's insert overlaps the next one's reservation and encoding.

        Raises:
            SampleError: a sample does not match the configured fields (nothing committed is affected).
            SourceError: the source raised; the original exception is chained.
            StoreUnavailableError: the server stayed unreachable past ``mongo.outage_timeout_s``.
        """
        self._started = time.monotonic()
        beat = threading.Thread(target=self._heartbeat_loop, name="wirehead-heartbeat", daemon=True)
        beat.start()
        pending: Optional[queue.Queue] = None
        failure: list[BaseException] = []
        writers: list[threading.Thread] = []
        iterator = iter(self.source)
        try:
            while not self.stop_event.is_set() and not failure:
                if max_samples is not None and self.stats.produced >= max_samples:
                    break
                try:
                    sample = next(iterator)
                except StopIteration:
                    break
                except Exception as exc:
                    raise SourceError(f"the source raised {type(exc).__name__}: {exc}") from exc
                cfg = self.config
                encoded = encode_sample(sample, cfg.fields, cfg.chunk_bytes, nan_policy=cfg.generator.nan_policy,
                                        max_sample_bytes=cfg.generator.max_sample_bytes)
                self.stats.produced += 1
                if pending is None:  # sized by the first sample: small samples may queue up for group commits
                    pending = queue.Queue(maxsize=max(self.config.generator.prefetch,
                                                      min(_GROUP_MAX, _GROUP_BYTES // max(1, encoded.nbytes))))
                    writers = [threading.Thread(target=self._write_loop, args=(pending, failure),
                                                name=f"wirehead-writer-{i}", daemon=True)
                               for i in range(self.config.generator.writers
                                              or (2 if encoded.nbytes >= _TWO_WRITERS_BYTES else 1))]
                    for writer in writers:
                        writer.start()
                while not self._offer(pending, encoded):
                    if self.stop_event.is_set() or failure:
                        self._settle(abandoned=1)
                        break
        finally:
            if pending is not None:
                self._offer(pending, None, wait=False)  # one end marker per writer: each stops at the first it gets
                while any(writer.is_alive() for writer in writers):
                    self._offer(pending, None)
                    for writer in writers:
                        writer.join(timeout=0.1 / len(writers))
            self.stats.elapsed_s = time.monotonic() - self._started
            self._beat_stop.set()
            beat.join(timeout=5)
            self._publish(final=True)
            self.store.close()
            if self._commit_log is not None:
                self._commit_log.close()
        if failure and not (isinstance(failure[0], StoreUnavailableError) and self.stop_event.is_set()):
            raise failure[0]
        _LOG.info("generator %s: produced %d, committed %d, blocked %.1f s", self.name, self.stats.produced,
                  self.stats.committed, self.stats.blocked_s)
        return self.stats

    @staticmethod
    def _offer(pending: queue.Queue, item: Optional[EncodedSample], wait: bool = True) -> bool:
        try:
            if wait:
                pending.put(item, timeout=0.1)
            else:
                pending.put_nowait(item)
            return True
        except queue.Full:
            return False

    def _settle(self, committed: int = 0, abandoned: int = 0) -> None:
        """Count samples committed or abandoned (from any thread; a writer thread also counts them as its own)."""
        with self._lock:
            self.stats.committed += committed
            self.stats.abandoned += abandoned
        self._writer.settled = getattr(self._writer, "settled", 0) + committed + abandoned

    def _write_loop(self, pending: queue.Queue, failure: list[BaseException]) -> None:
        """Writer thread: commit encoded samples in the order it takes them until the end marker (None), the ones
        already waiting together (a group commit: one reservation and one insert for the group). With several
        writers, groups are committed side by side, so samples of different groups may land out of order."""
        held: Optional[EncodedSample] = None
        ending = False
        while not ending:
            group = [held if held is not None else pending.get()]
            held = None
            if group[0] is None:
                return
            size = group[0].nbytes
            while len(group) < _GROUP_MAX:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ending = True
                    break
                if size + item.nbytes > _GROUP_BYTES:
                    held = item
                    break
                group.append(item)
                size += item.nbytes
            self._writer.settled = 0
            try:
                if failure:
                    self._settle(abandoned=len(group))
                else:
                    self._commit_group(group)
            except BaseException as exc:  # noqa: BLE001 - handed to the run loop, which raises it
                failure.append(exc)
                self._settle(abandoned=len(group) - self._writer.settled)

    def _commit_one(self, encoded: EncodedSample) -> None:
        if self._commit(encoded):
            self._settle(committed=1)
        else:
            self._settle(abandoned=1)

    def _commit_group(self, group: list[EncodedSample]) -> None:
        """Commit `group` in order: each run of one-chunk samples with one reservation and one ordered insert for as
        many ids as the write generation has left, the rest likewise in the next one (a sample that did not land is
        written again on its own); a sample of several chunks goes alone."""
        store = self.store
        while group:
            if len(group[0].chunks) > 1:
                self._commit_one(group.pop(0))
                continue
            run = 1
            while run < len(group) and len(group[run].chunks) == 1:
                run += 1
            placed = self._reserve(run)
            if placed is None:  # stopped while waiting for a swap
                self._settle(abandoned=len(group))
                return
            gen, sids, asked = placed
            part, group = group[:len(sids)], group[len(sids):]
            tokens = [uuid.uuid4().hex for _ in part]
            items = [(sid, token, self.proc_id, _commit_meta(e), e.chunks) for sid, token, e in zip(sids, tokens, part)]
            done = store.write_and_commit_many(gen, items)
            landed = [ok and self._in_real_generation(gen, token, asked) for ok, token in zip(done, tokens)]
            if any(landed):
                self._report(gen, sum(landed))
            for ok, real, sid, token, encoded in zip(done, landed, sids, tokens, part):
                if real:
                    self._log_commit(gen, sid, token)
                    self._settle(committed=1)
                    continue
                if not self.stop_event.is_set():  # the id was reissued, or the commit landed where nobody reads
                    with self._lock:
                        self.stats.claims_lost += 1
                    if ok:
                        store.retry("drop chunks", lambda: store.drop_token_chunks(gen, token))
                self._commit_one(encoded)

    # ------------------------------------------------------------------ one sample
    def _commit(self, encoded: EncodedSample) -> bool:
        """Write one sample until it is committed; False only when stopped first."""
        store = self.store
        meta = _commit_meta(encoded)
        while not self.stop_event.is_set():
            placed = self._reserve(1)
            if placed is None:
                return False
            gen, (sid,), reserved_at = placed
            token = uuid.uuid4().hex
            last = [time.monotonic()]

            def renew() -> None:
                if time.monotonic() - last[0] > self.config.manager.reservation_timeout_s / 4:
                    if not store.retry("renew claim", lambda: store.renew_claim(gen, sid, token)):
                        raise _ClaimLost()
                    last[0] = time.monotonic()
                if self.stop_event.is_set():
                    raise _ClaimLost()

            try:
                # Most samples fit one insert: chunks and commit record in one round trip. Larger ones are claimed
                # first (the claim is renewed while they are written) and committed by a compare-and-set on it.
                whole = store.write_and_commit(gen, sid, token, self.proc_id, meta, encoded.chunks)
                if whole is False or (whole is None and not store.claim_and_write(
                        gen, sid, token, self.proc_id, meta, encoded.chunks, renew)):
                    continue  # another writer holds the id
                if whole is None:
                    renew()
                if whole or store.retry("commit", lambda: store.commit(gen, sid, token, {})):
                    if not self._in_real_generation(gen, token, reserved_at):
                        if self.stop_event.is_set():
                            return False  # committed, but stopped before we could tell where: leave it be
                        raise _ClaimLost()
                    self._report(gen, 1)
                    self._log_commit(gen, sid, token)
                    return True
                raise _ClaimLost()
            except _ClaimLost:
                if self.stop_event.is_set():
                    self._abandon(gen, sid, token)
                    return False
                with self._lock:
                    self.stats.claims_lost += 1
                _LOG.warning("generator %s: id %d of generation %d was reissued while we wrote it; rewriting",
                             self.name, sid, gen)
                store.retry("drop chunks", lambda: store.drop_token_chunks(gen, token))
        return False

    def _report(self, gen: int, k: int) -> None:
        """Tell the manager `k` samples were committed into `gen` (a hint that saves it looking for them)."""
        self.store.retry("report commits", lambda: self.store.report_commits(gen, k))

    def _log_commit(self, gen: int, sid: int, token: str) -> None:
        if self._commit_log is not None:
            self._commit_log.write(json.dumps({"gen": gen, "sid": sid, "token": token}) + "\n")

    def _in_real_generation(self, gen: int, token: str, reserved_at: Optional[float]) -> bool:
        """Whether a commit (into generation `gen`, of an id reserved new at monotonic time `reserved_at`) reached
        the real generation. A new id committed well within the reservation timeout of reserving was still ours, and
        the generation could not have been swapped in without it, so it did, with no round trip. Otherwise (an id
        handed back after its writer stalled, a late commit, or early swaps, which swap in without every id)
        `_landed` asks."""
        if (reserved_at is not None and self.config.reuse.when_readers_ahead != "early_swap"
                and time.monotonic() - reserved_at < self.config.manager.reservation_timeout_s / 2):
            return True
        return self._landed(gen, token)

    def _landed(self, gen: int, token: str) -> bool:
        """Whether a commit into generation `gen` reached the real generation.

        A writer that was stopped for longer than the reservation timeout may find its id handed to another writer,
        the generation swapped in, and then write into a collection of the same name that its own insert recreated
        (a collection that is never read). Checked after the commit: while the swap state shows `gen` not yet
        renamed, the commit is in the real generation; once `gen` was swapped in, its swap event lists every sample
        it took.
        """
        store = self.store
        while not self.stop_event.is_set():
            state = store.retry("read swap state", store.swap_state)
            read = state.get("read_gen")
            if read is None or int(read) < gen:
                if not (state["phase"] == "swapping" and int(state["swapping_gen"]) == gen):
                    return True
                self.stop_event.wait(self.config.generator.poll_s)  # being swapped in right now: wait for it
                continue
            event = store.retry("read swap event", lambda: store.event(gen))
            return event is not None and token in unpack_tokens(event)
        return False

    def _abandon(self, gen: int, sid: int, token: str) -> None:
        try:
            self.store.retry("abandon", lambda: self.store.abandon(gen, sid, token), timeout_s=5.0)
        except StoreUnavailableError:
            _LOG.warning("generator %s: could not withdraw claim %d/%d; the manager will reissue it", self.name,
                         gen, sid)

    def _reserve(self, k: int) -> Optional[tuple[int, list[int], Optional[float]]]:
        """Up to `k` ids in the write generation (or the next one under ``carry``), with the monotonic time new ids
        were asked for (None for an id handed back after its writer stalled: that writer may still commit it);
        blocks while both are full (checking the swap state only, until it changes); None once stopped."""
        store = self.store
        carry = self.config.generator.backpressure == "carry"
        waiting_logged = False
        polls = 0  # swap-state checks in this wait: the wait between them grows (see `_poll_delay`)
        while not self.stop_event.is_set():
            if self._write_gen is None:
                state = store.retry("read swap state", store.swap_state)
                if state is None:
                    if not waiting_logged:
                        _LOG.info("generator %s: waiting for a swap manager to open the first generation", self.name)
                        waiting_logged = True
                    self._blocked_wait(self.config.generator.poll_s * 4)
                    continue
                self._write_gen = int(state["write_gen"])
            gen = self._write_gen
            # A generation with no id left (a reservation found none, or took its last new one) is not asked again
            # before the swap, but now and then, for ids handed back after a writer died. Under ``carry`` the next
            # one is asked straight away; once every candidate is full, wait for the swap.
            candidates = (gen, gen + 1) if carry else (gen,)
            for candidate in candidates:
                if self._full_until(candidate) > time.monotonic():
                    continue
                asked = time.monotonic()
                sids, fresh = store.retry("reserve", lambda: store.reserve(candidate, self.config.swap_cap, k))
                if not sids or (fresh and sids[-1] == self.config.swap_cap - 1):
                    with self._lock:
                        self._full[candidate] = time.monotonic() + max(1.0, self.config.generator.poll_s)
                if sids:
                    return candidate, sids, asked if fresh else None
            state = store.retry("read swap state", store.swap_state)
            if state is not None and int(state["write_gen"]) != gen:
                with self._lock:
                    self._write_gen = int(state["write_gen"])
                    self._full = {g: t for g, t in self._full.items() if g >= self._write_gen}
                continue
            self._blocked_wait(self._poll_delay(polls))
            polls += 1
        return None

    def _full_until(self, gen: int) -> float:
        with self._lock:
            return self._full.get(gen, 0.0)

    def _poll_delay(self, polls: int) -> float:
        """Wait before a blocked writer's next swap-state check: ``poll_s``, doubling with each check up to 16 x,
        with jitter. Many blocked generators polling at ``poll_s`` took the whole server (64 generators at 50 ms:
        about 1,300 requests/s), which starved the manager that would have unblocked them."""
        poll_s = self.config.generator.poll_s
        return poll_s * min(2 ** polls, 16) * random.uniform(0.5, 1.0)

    def _blocked_wait(self, seconds: float) -> None:
        """Wait for a swap (backpressure), counting the time while any writer waits as blocked."""
        self._count_blocked(1)
        try:
            self.stop_event.wait(seconds)
        finally:
            self._count_blocked(-1)

    def _count_blocked(self, change: int) -> None:
        with self._lock:
            now = time.monotonic()
            if self._blocked:
                self.stats.blocked_s += now - self._blocked_since
            self._blocked_since = now
            self._blocked += change

    # ------------------------------------------------------------------ heartbeat
    def _publish(self, final: bool = False) -> None:
        doc = {"kind": "generator", "name": self.name, "pid": os.getpid(), "host": socket.gethostname(),
               "started": time.time() - (time.monotonic() - self._started), "final": final,
               **self.stats.as_dict()}
        if not final:
            doc["elapsed_s"] = time.monotonic() - self._started
        try:
            self.store.retry("heartbeat", lambda: self.store.heartbeat(self.proc_id, doc), timeout_s=2.0)
        except (WireheadError, OSError) as exc:
            _LOG.debug("heartbeat skipped: %s", exc)

    def _heartbeat_loop(self) -> None:
        self._publish()  # at once, so `wirehead status` (and whoever waits for it) sees the generator running
        while not self._beat_stop.wait(self.config.generator.heartbeat_s):
            self._publish()
