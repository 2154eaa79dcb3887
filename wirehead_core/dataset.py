"""A map-style PyTorch Dataset over the read generation.

Each process (the main one and every DataLoader worker) opens its own client lazily, so the dataset is fork-safe.
The dataset caches the read generation's commit table (id → token and field metadata) and fetches a sample's chunks
by its token, which is unique to that sample: a read that races a swap finds no chunks (the old generation was
dropped by the swap), reloads the table and retries, so fields from two generations are never mixed. Reads are
counted per sample and sent to the database in batches.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch.utils.data import Dataset

from wirehead_core.codec import FieldMeta, decode_sample, field_meta_from_doc
from wirehead_core.config import Config, redact_uri
from wirehead_core.errors import CorruptSampleError, StoreUnavailableError
from wirehead_core.store import Store

__all__ = ["WireheadDataset", "ReadStats"]

_LOG = logging.getLogger(__name__)
#: A reader whose reads are used up checks the swap state after this long, then twice as long each time, up to
#: `_WAIT_POLL_MAX_S`: each check costs the server a query, and the generation it waits for may still be filling,
#: but where generators are ahead the swap follows within milliseconds (a 1 MB pipeline's reader learnt of it 18 ms
#: late after a first wait of 20 ms, in a cycle of 165 ms).
_WAIT_POLL_S = 0.005
_WAIT_POLL_MAX_S = 0.16


#: A batch read fetches at most this many bytes per query (a larger sample goes alone). SecantusDB spent about 5 ms of
#: CPU per MB on queries of 8 x 4 MB samples; a 1 MB pipeline's server spent 0.6 ms per MB more with queries of 8 MB
#: than of 2 or 4 MB (medians of 6 and 8 paired rounds: end to end 0.79 and 0.73 of the raw loop with 8 MB, against
#: 0.87 and 0.76 with 2 MB, 0.78 with 4 MB).
_READ_BATCH_BYTES = 4 * 1024 * 1024


def _by_bytes(entries: Sequence[_Entry], limit: int) -> list[list[_Entry]]:
    """`entries` in order, in runs of at most `limit` payload bytes (a larger sample goes alone)."""
    runs: list[list[_Entry]] = []
    size = 0
    for e in entries:
        nbytes = sum(f.nbytes for f in e.fields)
        if not runs or size + nbytes > limit:
            runs.append([])
            size = 0
        runs[-1].append(e)
        size += nbytes
    return runs


class _Entry:
    __slots__ = ("gen", "sid", "token", "fields", "nchunks", "coll")

    def __init__(self, doc: dict[str, Any]) -> None:
        self.gen = int(doc["g"])
        self.sid = int(doc["_id"])
        self.token = str(doc["t"])
        self.fields: tuple[FieldMeta, ...] = tuple(field_meta_from_doc(f) for f in doc["f"])
        self.nchunks = int(doc["k"])
        self.coll = str(doc["coll"])


class ReadStats:
    """Counters of this process's reads: ``reads``, ``retries`` (reads that raced a swap), ``generations_seen``,
    and under a reuse policy ``reuse_waits`` / ``reuse_wait_s`` (waits for a fresh generation) and ``claims``
    (round trips that took read rights)."""

    def __init__(self) -> None:
        self.reads = 0
        self.retries = 0
        self.generations_seen: set[int] = set()
        self.reuse_waits = 0
        self.reuse_wait_s = 0.0
        self.claims = 0


class _ReadRights:
    """Read rights of this process under a reuse policy, claimed from the database a few at a time.

    A right is taken (and counted in the generation's ``claimed``, and under ``max_reads`` its ``per``) before the
    read, so the limits hold across all processes without a round trip per read; rights a process still holds when
    its generation is swapped out are simply dropped (counted, never read: the limits stay conservative).
    """

    def __init__(self, config: Config, stats: ReadStats) -> None:
        self.reuse = config.reuse
        self.stats = stats
        self.active = config.reuse.policy != "off"
        self.gen = -1
        self.rights: dict[int, int] = {}
        self.known: Optional[dict[str, Any]] = None  # the reads document as of our last claim
        # (generation, its reads document) as the last table load read it: the first claim on a generation starts
        # from it instead of reading it again
        self.loaded: tuple[int, Optional[dict[str, Any]]] = (-1, None)
        self.exhausted = False
        self.by_sid: dict[int, _Entry] = {}
        self.order: list[int] = []

    def take(self, store: Store, table: list[_Entry], preferred: _Entry, wanted: int = 1) -> Optional[_Entry]:
        """The entry to read: `preferred` if we hold a right for it, else one we hold or can claim; None when the
        generation allows no more reads. A claim asks for ``claim_batch`` rights, or `wanted` (the reads still to
        come in this batch) when more."""
        gen = table[0].gen
        if gen != self.gen:  # a new generation: its id -> entry map is built once, not on every read
            known = self.loaded[1] if self.loaded[0] == gen else None
            self.gen, self.rights, self.known, self.exhausted = gen, {}, known, False
            self.by_sid = {e.sid: e for e in table}
            self.order = sorted(self.by_sid)
            random.Random(gen).shuffle(self.order)  # the same order in every process (see `_claim`)
        by_sid = self.by_sid
        for _ in range(2):
            if self.rights.get(preferred.sid, 0) <= 0:
                held = [sid for sid, k in self.rights.items() if k > 0 and sid in by_sid]
                preferred = by_sid[held[0]] if held else preferred
            if self.rights.get(preferred.sid, 0) > 0:
                self.rights[preferred.sid] -= 1
                return preferred
            if self.exhausted or not self._claim(store, gen, table, wanted):
                return None
        return None

    def _claim(self, store: Store, gen: int, table: list[_Entry], wanted: int = 1) -> bool:
        per_limit = self.reuse.per_sample_limit()
        total_limit = self.reuse.budget(len(table))
        for _ in range(8):
            doc = self.known or store.retry("reads doc", lambda: store.reads_doc(gen, per=per_limit is not None))
            if doc is None:
                return False
            room = max(self.reuse.claim_batch, wanted)
            if total_limit is not None:
                room = min(room, total_limit - int(doc["claimed"]))
            if per_limit is None and total_limit is not None:
                # ``target``: a right is a slot of the generation's claim counter, and slot i reads the id at i
                # modulo the generation's size in an order all processes share: every sample has its share of reads
                # before any has more, and a claim moves one counter.
                if room <= 0:
                    self.exhausted = True
                    return False
                after = store.retry("claim reads", lambda: store.claim_slots(gen, room, total_limit))
                self.stats.claims += 1
                if after is None:
                    self.known = None  # someone else claimed meanwhile: re-read and try again
                    continue
                self.known = {"claimed": after}
                for slot in range(after - room, after):
                    sid = self.order[slot % len(self.order)]
                    self.rights[sid] = self.rights.get(sid, 0) + 1
                return True
            per = {int(k): int(v) for k, v in (doc.get("per") or {}).items()}
            candidates = [e.sid for e in table if per_limit is None or per.get(e.sid, per_limit) < per_limit]
            if room <= 0 or not candidates:
                self.exhausted = True
                return False
            random.shuffle(candidates)
            candidates.sort(key=lambda sid: per.get(sid, 0))  # least-read first: cover the generation
            chosen = candidates[:room]
            after = store.retry("claim reads", lambda: store.claim_reads(gen, chosen, per_limit, total_limit))
            self.stats.claims += 1
            if after is not None:
                self.known = after
                for sid in chosen:
                    self.rights[sid] = self.rights.get(sid, 0) + 1
                return True
            self.known = None  # someone else claimed meanwhile: re-read and try again
        return False


class WireheadDataset(Dataset):
    """Samples of the current read generation as tuples (or dicts) of torch tensors.

    Args:
        config (Config): validated configuration.
        return_dict (bool, optional): return ``{field: tensor}``; defaults to ``config.dataset.return_dict``.
        return_key (bool): append (or add under ``"key"``) an int64 tensor ``[generation, sample_id]``, for
            counting unique samples.
        wait_timeout_s (float, optional): how long to wait for the first read generation; defaults to
            ``config.dataset.wait_timeout_s``.

    Raises (on first use):
        TimeoutError: no read generation appeared within the wait timeout.
    """

    def __init__(self, config: Config, *, return_dict: Optional[bool] = None, return_key: bool = False,
                 wait_timeout_s: Optional[float] = None) -> None:
        self.config = config
        self.return_dict = config.dataset.return_dict if return_dict is None else return_dict
        self.return_key = return_key
        self.wait_timeout_s = config.dataset.wait_timeout_s if wait_timeout_s is None else wait_timeout_s
        self.field_names = config.field_names
        self._reset()

    def _reset(self) -> None:
        self._store: Optional[Store] = None
        self._pid = -1
        self._table: Optional[list[_Entry]] = None
        self.stats = ReadStats()
        self._rights = _ReadRights(self.config, self.stats)
        self._pending: dict[int, dict[int, int]] = {}
        self._pending_n = 0
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "return_dict": self.return_dict, "return_key": self.return_key,
                "wait_timeout_s": self.wait_timeout_s, "field_names": self.field_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # ------------------------------------------------------------------ connection and table
    @property
    def store(self) -> Store:
        """This process's store (a new one after fork)."""
        if self._store is None or self._pid != os.getpid():
            self._reset()
            self._store = Store(self.config)
            self._pid = os.getpid()
            multiprocessing.util.Finalize(self, self.flush_counts, exitpriority=10)
        return self._store

    def _load_table(self, deadline: float, waiting_for: str) -> list[_Entry]:
        store = self.store
        while True:
            docs, reads = store.retry("read table", store.read_table,
                                      timeout_s=max(1.0, deadline - time.monotonic()))
            gens = {int(d["g"]) for d in docs}
            if docs and len(gens) == 1:
                table = [_Entry(d) for d in docs]
                self.stats.generations_seen.add(table[0].gen)
                self._rights.loaded = (table[0].gen, reads)
                return table
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"waited {waiting_for} for a read generation in database {self.config.mongo.database!r} "
                    f"(namespace {self.config.mongo.namespace!r}) at {redact_uri(self.config.mongo.uri)}; "
                    "no swap has completed: are generators and a swap manager running?")
            time.sleep(0.05)

    def _current_table(self) -> list[_Entry]:
        if self._table is None:
            deadline = time.monotonic() + self.wait_timeout_s
            self._table = self._load_table(deadline, f"{self.wait_timeout_s:.0f} s")
        return self._table

    def __len__(self) -> int:
        """Samples in the read generation (waits for the first one)."""
        table = self._current_table()
        state = self.store.retry("read swap state", self.store.swap_state)
        if state is not None and state.get("read_gen") is not None and int(state["read_gen"]) != table[0].gen:
            self._table = None
            table = self._current_table()
        return len(table)

    # ------------------------------------------------------------------ reads
    def __getitem__(self, index: int) -> Any:
        index = int(index)
        deadline = time.monotonic() + self.config.dataset.read_timeout_s
        attempts = 0
        while True:
            table = self._current_table()
            entry = table[index % len(table)]
            if self._rights.active:
                entry = self._rights.take(self.store, table, entry)
                if entry is None:  # this generation's reads are used up: wait for the next swap
                    self._wait_for_next_generation(table[0].gen)
                    deadline = time.monotonic() + self.config.dataset.read_timeout_s
                    continue
            try:
                chunks = self.store.retry("read chunks", lambda: self.store.read_chunks(entry.coll, entry.token),
                                          timeout_s=max(1.0, deadline - time.monotonic()))
            except StoreUnavailableError as exc:
                raise TimeoutError(f"read of sample {index} failed: {exc}") from exc
            if len(chunks) == entry.nchunks:
                try:
                    arrays = decode_sample(entry.fields, chunks)
                except CorruptSampleError:
                    if attempts >= 1:
                        raise
                    arrays = None
                if arrays is not None:
                    self._count(entry)
                    return self._package(arrays, entry)
            # The generation was swapped out under us (its chunks are gone): reload the table and retry.
            attempts += 1
            self.stats.retries += 1
            self._table = None
            if time.monotonic() >= deadline:
                raise TimeoutError(f"read of sample {index} kept racing swaps for "
                                   f"{self.config.dataset.read_timeout_s:.0f} s (its last read found {len(chunks)} "
                                   f"of {entry.nchunks} chunks)")

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """Samples for `indices` with one query for all their chunks (a DataLoader with a batch size calls this);
        a sample that raced a swap, or that the reuse policy does not allow yet, is read on its own by
        `__getitem__`."""
        table = self._current_table()
        entries: list[_Entry] = []
        for i, index in enumerate(indices):
            entry = table[int(index) % len(table)]
            if self._rights.active:
                entry = self._rights.take(self.store, table, entry, wanted=len(indices) - i)
                if entry is None:
                    break
            entries.append(entry)
        chunks: dict[str, list[bytes]] = {}
        try:
            for part in _by_bytes(entries, _READ_BATCH_BYTES):
                chunks.update(self.store.retry("read chunks", lambda: self.store.read_chunks_many(
                    part[0].coll, [e.token for e in part])))
        except StoreUnavailableError:
            pass
        out = []
        for i, index in enumerate(indices):
            entry = entries[i] if i < len(entries) else None
            got = chunks.get(entry.token, []) if entry is not None else []
            if entry is not None and len(got) == entry.nchunks:
                try:
                    arrays = decode_sample(entry.fields, got)
                except CorruptSampleError:
                    arrays = None
                if arrays is not None:
                    self._count(entry)
                    out.append(self._package(arrays, entry))
                    continue
            out.append(self[index])
        return out

    def _wait_for_next_generation(self, gen: int) -> None:
        """Block until the read generation is newer than `gen` (reuse control: readers ahead of generators)."""
        self.flush_counts()
        started = time.monotonic()
        self.stats.reuse_waits += 1
        delay = _WAIT_POLL_S
        while True:
            state = self.store.retry("read swap state", self.store.swap_state)
            if state is not None and state.get("read_gen") is not None and int(state["read_gen"]) > gen:
                self._table = None
                self.stats.reuse_wait_s += time.monotonic() - started
                return
            if time.monotonic() - started > self.wait_timeout_s:
                raise TimeoutError(f"waited {self.wait_timeout_s:.0f} s for a generation after {gen}: its reads are "
                                   "used up under the reuse policy and no swap followed (are generators running?)")
            time.sleep(delay)
            delay = min(2 * delay, _WAIT_POLL_MAX_S)

    def _package(self, arrays: tuple, entry: _Entry) -> Any:
        key = torch.tensor([entry.gen, entry.sid], dtype=torch.int64)
        if self.return_dict:
            out = dict(zip(self.field_names, arrays))
            if self.return_key:
                out["key"] = key
            return out
        return (*arrays, key) if self.return_key else arrays

    # ------------------------------------------------------------------ read counts
    def _count(self, entry: _Entry) -> None:
        self.stats.reads += 1
        with self._lock:
            per = self._pending.setdefault(entry.gen, {})
            per[entry.sid] = per.get(entry.sid, 0) + 1
            self._pending_n += 1
            due = (self._pending_n >= self.config.dataset.count_flush_reads
                   or time.monotonic() - self._last_flush >= self.config.dataset.count_flush_s)
        if due:
            self.flush_counts()

    def flush_counts(self) -> None:
        """Send pending read counts (one update per generation); best effort."""
        with self._lock:
            pending, self._pending, self._pending_n = self._pending, {}, 0
            self._last_flush = time.monotonic()
        if not pending or self._store is None or self._pid != os.getpid():
            return
        for gen, per in pending.items():
            try:
                self._store.retry("count reads", lambda: self._store.add_reads(gen, per), timeout_s=5.0)
            except Exception as exc:  # noqa: BLE001 - counts are statistics; never fail a read for them
                _LOG.debug("read counts not sent: %s", exc)

    def close(self) -> None:
        """Flush read counts and close this process's client."""
        self.flush_counts()
        if self._store is not None:
            self._store.close()
        self._store = None
