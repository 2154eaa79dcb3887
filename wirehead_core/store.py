"""The MongoDB layer: the only module that imports pymongo.

Collections, all named ``<namespace>.<name>`` in the configured database:

- ``state``: never renamed or dropped, so everything a swap needs survives it. Documents: ``swap`` (the read and
  write generation numbers and the phase of a swap in progress), ``lock`` (the manager's leased lock), ``gen.N``
  (generation N's id counter ``next``, ids handed back ``free``, ``open``), ``reads.N`` (read counts of generation N).
- ``gen.N``: write generation N. Holds chunk documents ``{t: token, c: index, n: length, d: bytes}`` and one record
  per sample id ``{_id: id, g: N, t: token, s: "w"|"c", ...}`` with the field metadata: ``"c"`` once committed. A
  sample is visible only through its commit record, written last: a sample that fits one insert (most) goes in as
  chunks then record in one ordered insert, several such samples together when they are waiting (a group commit);
  a larger one is claimed first (``"w"``, renewed while its chunks are written) and committed by a compare-and-set.
- The read generation: under ``manager.promote: pointer`` (the default) it is ``gen.N`` itself, named by
  ``read_coll`` in the ``swap`` document, so a swap moves no data on any server; under ``promote: rename`` it is
  ``read``, a former ``gen.N`` renamed (O(1) on mongod; some compatible servers copy the data instead).
- ``events``: one document per completed swap. ``procs``: one heartbeat document per generator / reader process.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, TypeVar

import bson
import pymongo
from pymongo import errors as pme
from pymongo.collection import Collection, ReturnDocument

from wirehead_core.config import Config, redact_uri
from wirehead_core.errors import StoreError, StoreUnavailableError

__all__ = ["Store", "ping", "NETWORK_ERRORS", "pack_tokens", "unpack_tokens"]

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors that mean "the server is (temporarily) unreachable": retried with backoff.
NETWORK_ERRORS = (pme.AutoReconnect, pme.ConnectionFailure, pme.NetworkTimeout, pme.ServerSelectionTimeoutError)
#: Errors a cursor raises when its collection is renamed or dropped under it (a swap): the read is retried.
_CURSOR_KILLED_CODES = {43, 96, 175, 237, 26}  # CursorNotFound, OperationFailed, QueryPlanKilled, CursorKilled, NsNotFound
_DUPLICATE_KEY = 11000
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed
_NAMESPACE_NOT_FOUND = 26
_NAMESPACE_EXISTS = 48
#: `Store.commit_records` asks for at most this many ids by id, more by state.
_BY_ID_MAX = 16
#: Payload bytes per insert_many call: a few chunks per round trip, below the 48 MB message limit.
_BATCH_BYTES = 32 * 1024 * 1024


def _chunk_batches(token: str, chunks: Sequence[bytes]) -> list[list[dict[str, Any]]]:
    """The chunk documents of one sample in insert batches of about `_BATCH_BYTES` (at least one, maybe empty)."""
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for i, c in enumerate(chunks):
        if size >= _BATCH_BYTES:
            batches.append([])
            size = 0
        # bytes are stored as BSON binary (subtype 0) as they are: wrapping them in bson.Binary would copy them.
        batches[-1].append({"_id": bson.ObjectId(), "t": token, "c": i, "n": len(c), "d": bytes(c)})
        size += len(c)
    return batches


def _record(n: int, sid: int, token: str, owner: str, state: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The record of id `sid` in generation `n`: a claim (`state` ``"w"``) or a commit record (``"c"``)."""
    return {"_id": sid, "g": n, "t": token, "s": state, "at": time.time(), "o": owner, **meta}


def _chunk_projection(with_data: bool) -> Optional[dict[str, int]]:
    """What a chunk query returns: the whole document with the data (a projection that keeps every field but
    ``_id`` cost SecantusDB about 8 % more CPU per MB read than none), else its token, index and length."""
    return None if with_data else {"t": 1, "c": 1, "n": 1}


def _duplicate_at(exc: pme.BulkWriteError) -> int:
    """Index at which an ordered insert stopped on a duplicate key; any other write error raises `StoreError`."""
    error = exc.details["writeErrors"][0]
    if error.get("code") != _DUPLICATE_KEY:
        raise StoreError(f"chunk insert failed: {error.get('errmsg')}") from exc
    return int(error["index"])


def ping(uri: str, timeout_s: float = 2.0) -> bool:
    """True when a server answers ``ping`` at `uri` within `timeout_s`."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                 connectTimeoutMS=int(timeout_s * 1000))
    try:
        client.admin.command("ping")
        return True
    except (pme.PyMongoError, OSError):
        return False
    finally:
        client.close()


def is_cursor_killed(exc: Exception) -> bool:
    """True when `exc` says a query's collection went away under it (renamed or dropped by a swap)."""
    return isinstance(exc, pme.OperationFailure) and (exc.code in _CURSOR_KILLED_CODES or exc.code is None)


_TOKEN_BYTES = 16  # a token is uuid4().hex: 32 hex digits


def pack_tokens(tokens: Sequence[str]) -> Any:
    """The tokens of a swap event as one binary value (16 bytes each) where every token is 32 hex digits, as the
    generator makes them: the server parses one value instead of an array of `len(tokens)` strings, so the event
    costs about the same at any swap cap. Other tokens are kept as the list."""
    try:
        joined = "".join(tokens)
        packed = bytes.fromhex(joined)
    except (TypeError, ValueError):
        return list(tokens)
    # (fromhex skips spaces and reads capitals: such a token would not come back as it was)
    if any(len(t) != 2 * _TOKEN_BYTES for t in tokens) or len(packed) != _TOKEN_BYTES * len(tokens) \
            or joined != joined.lower():
        return list(tokens)
    return bson.Binary(packed)


def unpack_tokens(event: dict[str, Any]) -> list[str]:
    """The tokens a swap event swapped in (its ``tokens`` as `pack_tokens` stored them)."""
    tokens = event.get("tokens", [])
    if isinstance(tokens, (bytes, bytearray)):
        return [bytes(tokens[i:i + _TOKEN_BYTES]).hex() for i in range(0, len(tokens), _TOKEN_BYTES)]
    return list(tokens)


class Store:
    """Typed operations on one wirehead namespace. Safe to use across `fork` (a new client per process).

    Args:
        config (Config): the validated configuration.
        stop_event (threading.Event, optional): set to abandon retries through an outage (clean shutdown).
    """

    def __init__(self, config: Config, stop_event: Optional[threading.Event] = None) -> None:
        self.config = config
        self.ns = config.mongo.namespace
        self.stop_event = stop_event or threading.Event()
        self._client: Optional[pymongo.MongoClient] = None
        self._pid = -1
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection
    @property
    def db(self) -> Any:
        """The database handle, creating the client lazily (again after a fork)."""
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                timeout_ms = int(self.config.mongo.connect_timeout_s * 1000)
                self._client = pymongo.MongoClient(
                    self.config.mongo.uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                    socketTimeoutMS=max(60_000, 10 * timeout_ms), appname="wirehead", connect=False)
                self._pid = os.getpid()
            return self._client[self.config.mongo.database]

    def close(self) -> None:
        """Close the client of this process."""
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None

    def drop_database(self) -> None:
        """Drop the whole configured database (every namespace in it): a fresh start for a measurement."""
        self.retry("drop database", lambda: self.db.client.drop_database(self.config.mongo.database))

    def coll(self, name: str) -> Collection:
        """Collection ``<namespace>.<name>``."""
        return self.db[f"{self.ns}.{name}"]

    @staticmethod
    def gen_name(n: int) -> str:
        """Collection name (without namespace) of write generation `n`."""
        return f"gen.{n}"

    def retry(self, what: str, fn: Callable[[], T], timeout_s: Optional[float] = None) -> T:
        """Run `fn`, retrying through network errors with jittered backoff.

        Args:
            what: a short description for logs and the final error.
            fn: the operation; must be safe to repeat.
            timeout_s: give up after this long (None = the config's ``mongo.outage_timeout_s``; 0 = never).

        Raises:
            StoreUnavailableError: the server stayed unreachable, or `stop_event` was set.
        """
        limit = self.config.mongo.outage_timeout_s if timeout_s is None else timeout_s
        start = time.monotonic()
        delay = 0.05
        warned = False
        while True:
            try:
                return fn()
            except pme.OperationFailure as exc:
                if exc.code in _AUTH_CODES:
                    raise StoreError(
                        f"{what}: the server at {redact_uri(self.config.mongo.uri)} refused the credentials "
                        f"(code {exc.code}); check the user, password and authSource in mongo.uri"
                    ) from None
                raise
            except pme.ConfigurationError as exc:
                raise StoreError(f"{what}: invalid mongo.uri {redact_uri(self.config.mongo.uri)}: "
                                 f"{str(exc).replace(self.config.mongo.uri, '<uri>')}") from None
            except NETWORK_ERRORS as exc:
                elapsed = time.monotonic() - start
                if self.stop_event.is_set() or (limit and elapsed >= limit):
                    raise StoreUnavailableError(
                        f"{what}: database at {redact_uri(self.config.mongo.uri)} unreachable for {elapsed:.1f} s "
                        f"({type(exc).__name__})") from exc
                if not warned and elapsed > 1.0:
                    _LOG.warning("%s: database unreachable (%s), retrying", what, type(exc).__name__)
                    warned = True
                self.stop_event.wait(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    # ------------------------------------------------------------------ state documents
    def swap_state(self) -> Optional[dict[str, Any]]:
        """The ``swap`` document, or None before any manager initialised the namespace."""
        return self.coll("state").find_one({"_id": "swap"})

    def state_docs(self, ids: Sequence[str], per: bool = False) -> dict[str, dict[str, Any]]:
        """Several ``state`` documents in one query, by id (read-count documents without their per-id maps unless
        `per`)."""
        projection = {"served_per": 0} if per else {"served_per": 0, "per": 0}
        return {d["_id"]: d for d in self.coll("state").find({"_id": {"$in": list(ids)}}, projection)}

    def gen_doc(self, n: int) -> Optional[dict[str, Any]]:
        """The counter document of generation `n`."""
        return self.coll("state").find_one({"_id": f"gen.{n}"})

    def init_namespace(self) -> None:
        """Create the fixed collections and the ``swap`` document (manager only; idempotent)."""
        existing = set(self.db.list_collection_names())
        for name in ("state", "events", "procs"):
            if f"{self.ns}.{name}" not in existing:
                try:
                    self.db.create_collection(f"{self.ns}.{name}")
                except pme.CollectionInvalid:
                    pass
        self._insert_once(self.coll("state"), {"_id": "swap", "read_gen": None, "write_gen": 0, "phase": "idle",
                                               "read_count": 0, "swaps": 0})

    @staticmethod
    def _insert_once(coll: Collection, doc: dict[str, Any]) -> bool:
        try:
            coll.insert_one(doc)
            return True
        except pme.DuplicateKeyError:
            return False

    def open_generation(self, n: int, cap: int) -> Optional[dict[str, Any]]:
        """Create write generation `n`: its collection, indexes and counter document (manager only; idempotent).

        Returns the counter document when this call created it (so no writer can have used the generation yet),
        None when it existed already. Three round trips: ``create`` (pymongo's ``create_collection`` would list the
        collections first), one ``createIndexes`` for both indexes, the counter document."""
        try:
            self.db.command("create", f"{self.ns}.{self.gen_name(n)}")
        except pme.OperationFailure as exc:
            if exc.code != _NAMESPACE_EXISTS:
                raise
        self.ensure_indexes(self.gen_name(n))
        doc = {"_id": f"gen.{n}", "next": 0, "free": [], "open": True, "cap": cap, "done": 0,
               "created_at": time.time()}
        return doc if self._insert_once(self.coll("state"), dict(doc)) else None

    def ensure_indexes(self, coll_name: str) -> None:
        """The indexes every generation needs, in one command: chunks by token, records by state."""
        self.coll(coll_name).create_indexes([pymongo.IndexModel([("t", pymongo.ASCENDING)], name="token"),
                                             pymongo.IndexModel([("s", pymongo.ASCENDING)], name="state")])

    def set_swap_state(self, expect: dict[str, Any], update: dict[str, Any]) -> bool:
        """Compare-and-set on the ``swap`` document: apply `update` only if it still matches `expect`."""
        res = self.coll("state").update_one({"_id": "swap", **expect}, {"$set": update})
        return res.matched_count == 1

    # ------------------------------------------------------------------ lock
    def acquire_lock(self, owner: str, lease_s: float) -> bool:
        """Take or renew the manager lock for `lease_s` seconds; False while another owner's lease is live."""
        state = self.coll("state")
        for _ in range(2):
            now = time.time()
            doc = state.find_one_and_update(
                {"_id": "lock", "$or": [{"owner": owner}, {"owner": None}, {"expires": {"$lt": now}}]},
                {"$set": {"owner": owner, "expires": now + lease_s, "renewed": now}},
                return_document=ReturnDocument.AFTER)
            if doc is not None or not self._insert_once(state, {"_id": "lock", "owner": None, "expires": 0.0,
                                                                "epoch": 0}):
                break  # taken or renewed, or held by another (the lock document exists)
        return doc is not None and doc.get("owner") == owner

    def release_lock(self, owner: str) -> None:
        """Give the lock up (only if `owner` holds it)."""
        self.coll("state").update_one({"_id": "lock", "owner": owner}, {"$set": {"owner": None, "expires": 0.0}})

    def lock_doc(self) -> Optional[dict[str, Any]]:
        """The lock document."""
        return self.coll("state").find_one({"_id": "lock"})

    # ------------------------------------------------------------------ generator side
    def reserve(self, n: int, cap: int, k: int = 1) -> tuple[list[int], bool]:
        """Reserve up to `k` sample ids in open generation `n` (created with `cap`) in one round trip: the next new
        ids below the cap (``fresh`` True), else one id handed back after its writer stalled or died (False: that
        writer may still commit it); no ids when the generation is full or sealed."""
        state = self.coll("state")
        # A plain $inc: the counter may pass the cap (readers of it take min(next, cap)). An update pipeline
        # ($min of next + k and cap) would say exactly what was taken, but SecantusDB does not apply those
        # atomically: concurrent callers got the same ids and others went missing
        # (`test_concurrent_reservations_hand_out_every_id_exactly_once`).
        doc = state.find_one_and_update({"_id": f"gen.{n}", "open": True, "next": {"$lt": cap}},
                                        {"$inc": {"next": k}}, projection={"next": 1},
                                        return_document=ReturnDocument.AFTER)
        if doc is not None:
            after = int(doc["next"])
            return list(range(after - k, min(cap, after))), True
        doc = state.find_one_and_update({"_id": f"gen.{n}", "open": True, "free.0": {"$exists": True}},
                                        {"$pop": {"free": -1}}, projection={"free": 1},
                                        return_document=ReturnDocument.BEFORE)
        return ([], False) if doc is None else ([int(doc["free"][0])], False)

    def claim(self, n: int, sid: int, token: str, owner: str) -> bool:
        """Record that `token` is being written as id `sid` of generation `n`; False if another writer has it."""
        coll = self.coll(self.gen_name(n))
        try:
            coll.insert_one(_record(n, sid, token, owner, "w", {}))
            return True
        except pme.DuplicateKeyError:
            doc = coll.find_one({"_id": sid}, {"t": 1})
            return doc is not None and doc.get("t") == token

    def renew_claim(self, n: int, sid: int, token: str) -> bool:
        """Extend a claim while a large sample is written; False if the claim was taken away."""
        res = self.coll(self.gen_name(n)).update_one({"_id": sid, "t": token, "s": "w"}, {"$set": {"at": time.time()}})
        return res.matched_count == 1

    def write_chunks(self, n: int, token: str, chunks: Sequence[bytes], renew: Callable[[], None]) -> None:
        """Insert the chunk documents of one sample (idempotent: ids are fixed client-side, duplicates ignored)."""
        coll = self.coll(self.gen_name(n))
        for i, batch in enumerate(_chunk_batches(token, chunks)):
            if i:
                renew()
            self._insert_batch(coll, batch)

    def write_and_commit(self, n: int, sid: int, token: str, owner: str, meta: dict[str, Any],
                         chunks: Sequence[bytes]) -> Optional[bool]:
        """A sample of one insert batch: its chunks, then its commit record, in one ordered insert (one round trip;
        the record is inserted only once every chunk is). True once committed; False, with its chunks removed
        again, if another writer holds the id; None if the sample needs several batches (`claim_and_write`)."""
        batches = _chunk_batches(token, chunks)
        if len(batches) > 1:
            return None
        coll = self.coll(self.gen_name(n))
        record = _record(n, sid, token, owner, "c", meta)

        def attempt() -> bool:
            try:
                coll.insert_many([*batches[0], record], ordered=True)
                return True
            except pme.BulkWriteError as exc:  # an ordered insert stops at its first error
                _duplicate_at(exc)
            doc = coll.find_one({"_id": sid}, {"t": 1})
            if doc is None:  # a chunk was in already: an earlier attempt got partway
                self._insert_batch(coll, batches[0])
                try:
                    coll.insert_one(record)
                    return True
                except pme.DuplicateKeyError:
                    doc = coll.find_one({"_id": sid}, {"t": 1})
            if doc is not None and doc.get("t") == token:
                return True  # an earlier attempt committed
            coll.delete_many({"t": token, "s": {"$exists": False}})
            return False

        return self.retry("write and commit", attempt)

    def write_and_commit_many(self, n: int, samples: Sequence[tuple[int, str, str, dict[str, Any], Sequence[bytes]]]
                              ) -> list[bool]:
        """Several one-batch samples ``(sid, token, owner, meta, chunks)`` in one ordered insert, each sample's
        chunks before its commit record: one round trip for the group. Returns per sample what `write_and_commit`
        would (a sample the insert did not reach is finished one by one)."""
        coll = self.coll(self.gen_name(n))
        docs: list[dict[str, Any]] = []
        ends = []
        for sid, token, owner, meta, chunks in samples:
            (batch,) = _chunk_batches(token, chunks)
            docs += [*batch, _record(n, sid, token, owner, "c", meta)]
            ends.append(len(docs))
        try:
            self.retry("write and commit", lambda: coll.insert_many(docs, ordered=True))
            return [True] * len(samples)
        except pme.BulkWriteError as exc:  # an ordered insert stops at its first error
            reached = _duplicate_at(exc)
        return [end <= reached or bool(self.write_and_commit(n, *sample)) for end, sample in zip(ends, samples)]

    def claim_and_write(self, n: int, sid: int, token: str, owner: str, meta: dict[str, Any],
                        chunks: Sequence[bytes], renew: Callable[[], None]) -> bool:
        """`claim` and `write_chunks` with the claim and the first chunks in one ordered insert (one round trip
        for most samples); the claim carries the commit metadata `meta` already. False, with nothing written, if
        another writer holds the id."""
        coll = self.coll(self.gen_name(n))
        batches = _chunk_batches(token, chunks)
        first = [_record(n, sid, token, owner, "w", meta), *batches[0]]

        def attempt() -> bool:
            try:
                coll.insert_many(first, ordered=True)
                return True
            except pme.BulkWriteError as exc:  # an ordered insert stops at its first error
                if _duplicate_at(exc) == 0:  # the id is claimed: by us in an attempt that timed out, or by another
                    doc = coll.find_one({"_id": sid}, {"t": 1})
                    if doc is None or doc.get("t") != token:
                        return False
            self._insert_batch(coll, batches[0])  # finish an earlier attempt's chunks (duplicates ignored)
            return True

        if not self.retry("claim and write", attempt):
            return False
        for batch in batches[1:]:
            renew()
            self._insert_batch(coll, batch)
        return True

    def _insert_batch(self, coll: Collection, batch: list[dict[str, Any]]) -> None:
        def attempt() -> None:
            try:
                coll.insert_many(batch, ordered=False)
            except pme.BulkWriteError as exc:
                bad = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
                if bad:
                    raise StoreError(f"chunk insert failed: {bad[0].get('errmsg')}") from exc
        self.retry("write chunks", attempt)

    def commit(self, n: int, sid: int, token: str, meta: dict[str, Any]) -> bool:
        """Turn the claim into a commit record (compare-and-set on the token); True if this writer committed."""
        coll = self.coll(self.gen_name(n))
        res = coll.update_one({"_id": sid, "t": token, "s": "w"},
                              {"$set": {"s": "c", "at": time.time(), **meta}})
        if res.matched_count == 1:
            return True
        doc = coll.find_one({"_id": sid}, {"t": 1, "s": 1})
        return doc is not None and doc.get("t") == token and doc.get("s") == "c"

    def report_commits(self, n: int, k: int) -> None:
        """Count `k` commits into generation `n` in its counter document (``done``): the manager reads the commit
        records when this count moves, instead of looking for new ones at every pass. A hint only: a writer that
        dies between its commit and this report is found by the manager's periodic look."""
        self.coll("state").update_one({"_id": f"gen.{n}"}, {"$inc": {"done": k}})

    def abandon(self, n: int, sid: int, token: str) -> None:
        """Withdraw an uncommitted claim: remove it and its chunks and hand the id back."""
        coll = self.coll(self.gen_name(n))
        res = coll.delete_one({"_id": sid, "t": token, "s": "w"})
        coll.delete_many({"t": token, "s": {"$exists": False}})
        if res.deleted_count == 1:
            self.coll("state").update_one({"_id": f"gen.{n}"}, {"$addToSet": {"free": sid}})

    def drop_token_chunks(self, n: int, token: str) -> None:
        """Remove the chunks of a sample that lost its claim."""
        self.coll(self.gen_name(n)).delete_many({"t": token, "s": {"$exists": False}})

    def heartbeat(self, proc_id: str, doc: dict[str, Any]) -> None:
        """Publish one process's counters."""
        self.coll("procs").replace_one({"_id": proc_id}, {"_id": proc_id, **doc, "updated": time.time()}, upsert=True)

    # ------------------------------------------------------------------ manager side
    def records(self, coll_name: str, query: dict[str, Any], projection: Optional[dict[str, Any]] = None
                ) -> list[dict[str, Any]]:
        """Sample records (claims and commits) matching `query`, sorted by id client-side."""
        docs = list(self.coll(coll_name).find({"s": {"$in": ["w", "c"]}, **query}, projection))
        docs.sort(key=lambda d: d["_id"])
        return docs

    def commit_records(self, coll_name: str, ids: Sequence[int], projection: dict[str, Any]) -> list[dict[str, Any]]:
        """The commit records among ids `ids` (ascending; a claim is left out), sorted by id; maybe others above
        the lowest too. A few ids are asked for by id; more, by state from the lowest. (At cap 1000 SecantusDB
        answers ``_id $in`` of 3 ids in 0.6 ms and of 30 in 1.9 ms, where a state-and-range query scans every
        record, 20 ms; but its ``$in`` grows with the square of the list: 63 ms for 300 ids. Claims are left out
        here rather than by the query, as `records` would: ``s`` beside ``_id $in`` cost it 0.15–0.3 ms more.)"""
        projection = {**projection, "s": 1}
        if len(ids) > _BY_ID_MAX:
            return self.records(coll_name, {"s": "c", "_id": {"$gte": ids[0]}}, projection)
        docs = [d for d in self.coll(coll_name).find({"_id": {"$in": list(ids)}}, projection) if d.get("s") == "c"]
        docs.sort(key=lambda d: d["_id"])
        return docs

    def count_committed(self, coll_name: str) -> int:
        """How many commit records a generation holds."""
        return self.coll(coll_name).count_documents({"s": "c"})

    def chunk_docs(self, coll_name: str, token: str, with_data: bool = True) -> list[dict[str, Any]]:
        """The chunk documents of one sample, in chunk order (sorted client-side)."""
        docs = list(self.coll(coll_name).find({"t": token, "s": {"$exists": False}}, _chunk_projection(with_data)))
        docs.sort(key=lambda d: d["c"])
        return docs

    def chunk_docs_many(self, coll_name: str, tokens: Sequence[str], with_data: bool = True
                        ) -> dict[str, list[dict[str, Any]]]:
        """`chunk_docs` of several samples in one query: token -> its chunk documents in chunk order (a token
        without chunks is missing)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for d in self.coll(coll_name).find({"t": {"$in": list(tokens)}, "s": {"$exists": False}},
                                           _chunk_projection(with_data)):
            out.setdefault(d["t"], []).append(d)
        for docs in out.values():
            docs.sort(key=lambda d: d["c"])  # client-side: see the server notes in the README
        return out

    def reissue(self, n: int, sid: int, token: Optional[str]) -> bool:
        """Take id `sid` from a dead or stopped writer and hand it to the next reserver."""
        coll = self.coll(self.gen_name(n))
        if token is not None:
            res = coll.delete_one({"_id": sid, "t": token, "s": "w"})
            if res.deleted_count != 1:
                return False
            coll.delete_many({"t": token, "s": {"$exists": False}})
        res = self.coll("state").update_one({"_id": f"gen.{n}", "free": {"$ne": sid}}, {"$push": {"free": sid}})
        return res.modified_count == 1

    def remove_committed(self, n: int, sid: int, token: str) -> None:
        """Remove a committed sample that failed verification and hand its id back."""
        coll = self.coll(self.gen_name(n))
        if coll.delete_one({"_id": sid, "t": token, "s": "c"}).deleted_count == 1:
            coll.delete_many({"t": token, "s": {"$exists": False}})
            self.coll("state").update_one({"_id": f"gen.{n}", "free": {"$ne": sid}}, {"$push": {"free": sid}})

    def seal(self, n: int) -> None:
        """Close generation `n` to new reservations."""
        self.coll("state").update_one({"_id": f"gen.{n}"}, {"$set": {"open": False}})

    def remove_claims(self, n: int) -> int:
        """Delete uncommitted claims only; returns how many."""
        return self.coll(self.gen_name(n)).delete_many({"s": "w"}).deleted_count

    def remove_strays(self, n: int, tokens: Iterable[str]) -> int:
        """Delete uncommitted claims and every chunk whose token is not a committed sample's; returns docs removed."""
        coll = self.coll(self.gen_name(n))
        removed = coll.delete_many({"s": "w"}).deleted_count
        keep = set(tokens)
        stray_tokens = [t for t in coll.distinct("t", {"s": {"$exists": False}}) if t not in keep]
        if stray_tokens:
            removed += coll.delete_many({"t": {"$in": stray_tokens}, "s": {"$exists": False}}).deleted_count
        return removed

    def read_coll(self, state: Optional[dict[str, Any]] = None) -> Optional[str]:
        """Name (without namespace) of the read generation's collection per the swap state; None before the first
        swap."""
        state = self.swap_state() if state is None else state
        if state is None or state.get("read_gen") is None:
            return None
        return str(state.get("read_coll", "read"))

    def collection_exists(self, coll_name: str) -> bool:
        """Whether ``<namespace>.<coll_name>`` exists."""
        name = f"{self.ns}.{coll_name}"
        return bool(self.db.list_collection_names(filter={"name": name}))

    def rename_to_read(self, n: int) -> bool:
        """Replace the read collection by generation `n` in one rename; False if `n` was already renamed."""
        try:
            self.coll(self.gen_name(n)).rename(f"{self.ns}.read", dropTarget=True)
            return True
        except pme.OperationFailure as exc:
            if exc.code == _NAMESPACE_NOT_FOUND or "not found" in str(exc).lower() or "does not exist" in str(exc):
                return False
            raise

    def create_reads_doc(self, n: int, sids: Iterable[int], replace: bool = False) -> None:
        """Create generation `n`'s read-count document before readers can see it: ``claimed`` / ``per`` (read rights
        handed out under a reuse policy, zero for every id so conditions on them work) and ``served`` /
        ``served_per`` (reads actually returned)."""
        ids = [str(s) for s in sids]
        doc = {"_id": f"reads.{n}", "n": len(ids), "claimed": 0, "per": {s: 0 for s in ids}, "served": 0,
               "served_per": {}}
        if replace:  # before the generation is published, so no reader has claimed on it
            self.coll("state").replace_one({"_id": doc["_id"]}, doc, upsert=True)
        else:
            self._insert_once(self.coll("state"), doc)

    def reads_doc(self, n: int, per: bool = True) -> Optional[dict[str, Any]]:
        """Generation `n`'s read-count document (without the per-id maps unless `per`)."""
        projection = None if per else {"per": 0, "served_per": 0}
        return self.coll("state").find_one({"_id": f"reads.{n}"}, projection)

    def claim_reads(self, n: int, sids: Sequence[int], per_limit: Optional[int], total_limit: Optional[int]
                    ) -> Optional[dict[str, Any]]:
        """Atomically take one read right for each of `sids` if every limit still allows it.

        Returns the document after the claim, or None when a limit refused it (the caller re-reads and retries).
        """
        query: dict[str, Any] = {"_id": f"reads.{n}"}
        if per_limit is not None:
            query.update({f"per.{s}": {"$lt": per_limit} for s in sids})
        if total_limit is not None:
            query["claimed"] = {"$lte": total_limit - len(sids)}
        inc = {f"per.{s}": 1 for s in sids}
        inc["claimed"] = len(sids)
        return self.coll("state").find_one_and_update(query, {"$inc": inc}, projection={"served_per": 0},
                                                      return_document=ReturnDocument.AFTER)

    def claim_slots(self, n: int, k: int, total_limit: int) -> Optional[int]:
        """Atomically take the next `k` read rights of generation `n` if at most `total_limit` would then be
        taken (one ``$inc`` of its claim counter): the counter after the claim, or None when the limit refused it."""
        doc = self.coll("state").find_one_and_update({"_id": f"reads.{n}", "claimed": {"$lte": total_limit - k}},
                                                     {"$inc": {"claimed": k}}, projection={"claimed": 1},
                                                     return_document=ReturnDocument.AFTER)
        return None if doc is None else int(doc["claimed"])

    def event(self, n: int) -> Optional[dict[str, Any]]:
        """The swap event of generation `n` (with the tokens it swapped in, as `pack_tokens` stored them), or None."""
        return self.coll("events").find_one({"_id": n}, {"tokens": 1})

    def insert_event(self, event: dict[str, Any]) -> None:
        """Record a completed swap (idempotent by generation)."""
        self.coll("events").replace_one({"_id": event["generation"]}, event, upsert=True)

    def update_event(self, n: int, fields: dict[str, Any]) -> None:
        """Set `fields` on the event of generation `n`."""
        self.coll("events").update_one({"_id": n}, {"$set": fields})

    def drop_leftover_generations(self, below: int) -> list[str]:
        """Drop ``gen.K`` collections for K < `below` (recreated by writers that lost their claim); names dropped."""
        dropped = []
        prefix = f"{self.ns}.gen."
        for name in self.db.list_collection_names():
            if name.startswith(prefix) and name[len(prefix):].isdigit() and int(name[len(prefix):]) < below:
                self.db.drop_collection(name)
                dropped.append(name)
        return dropped

    # ------------------------------------------------------------------ reader side
    def read_table(self) -> tuple[list[dict[str, Any]], Optional[dict[str, Any]]]:
        """Commit records of the read generation (id, generation, token, field metadata, and ``coll``, the
        collection holding its chunks), sorted by id: exactly the ids the swap published (its reads document),
        with that reads document (``([], None)`` before the first swap or when a swap raced the read)."""
        coll = self.read_coll()
        if coll is None:
            return [], None
        try:
            docs = list(self.coll(coll).find({"s": "c"}, {"_id": 1, "g": 1, "t": 1, "f": 1, "k": 1}))
        except pme.OperationFailure as exc:
            if is_cursor_killed(exc):
                return [], None  # swapped out mid-read: the caller reloads
            raise
        gens = {int(d["g"]) for d in docs}
        if len(gens) != 1:
            return [], None
        reads = self.reads_doc(gens.pop())
        published = set((reads or {}).get("per") or {})
        docs = [dict(d, coll=coll) for d in docs if str(d["_id"]) in published]
        docs.sort(key=lambda d: d["_id"])
        return docs, reads

    def read_chunks(self, coll: str, token: str) -> list[bytes]:
        """The chunk payloads of one sample of read collection `coll`, in order ([] once it was swapped out)."""
        try:
            docs = self.chunk_docs(coll, token)
        except pme.OperationFailure as exc:
            if is_cursor_killed(exc):
                return []
            raise
        return [bytes(d["d"]) for d in docs]

    def read_chunks_many(self, coll: str, tokens: Sequence[str]) -> dict[str, list[bytes]]:
        """The chunk payloads of several samples of read collection `coll` in one query: token -> payloads in
        order (a sample swapped out meanwhile is missing or short)."""
        try:
            docs = self.chunk_docs_many(coll, tokens)
        except pme.OperationFailure as exc:
            if is_cursor_killed(exc):
                return {}
            raise
        return {token: [bytes(d["d"]) for d in chunks] for token, chunks in docs.items()}

    def add_reads(self, gen: int, per_sid: dict[int, int]) -> None:
        """Add served-read counts of generation `gen` in one update (batched by the dataset)."""
        inc: dict[str, int] = {f"served_per.{sid}": k for sid, k in per_sid.items()}
        inc["served"] = sum(per_sid.values())
        self.coll("state").update_one({"_id": f"reads.{gen}"}, {"$inc": inc})

    # ------------------------------------------------------------------ benchmark baseline
    @staticmethod
    def raw_pieces(payload: bytes, chunk_bytes: int) -> list[bson.Binary]:
        """`payload` cut into the raw baseline's `chunk_bytes` documents (wirehead's own cut)."""
        return [bson.Binary(payload[i:i + chunk_bytes]) for i in range(0, len(payload), chunk_bytes)] or [b""]

    def raw_reset(self) -> None:
        """An empty ``raw`` collection with the raw baseline's index (by sample key)."""
        coll = self.coll("raw")
        coll.drop()
        coll.create_index([("k", pymongo.ASCENDING)])

    def raw_insert(self, k: int, pieces: Sequence[bson.Binary]) -> None:
        """Insert sample `k` of the raw baseline: one document per piece, in one request."""
        self.coll("raw").insert_many([{"k": k, "c": c, "d": d} for c, d in enumerate(pieces)], ordered=False)

    def raw_read(self, k: int) -> int:
        """Read sample `k` of the raw baseline back by its indexed key, as wirehead reads a sample's chunks;
        returns its bytes."""
        docs = sorted(self.coll("raw").find({"k": k}, {"c": 1, "d": 1}), key=lambda d: d["c"])
        return sum(len(d["d"]) for d in docs)

    def raw_drop(self) -> None:
        """Drop the raw baseline's collection."""
        self.coll("raw").drop()

    def raw_roundtrip(self, payload: bytes, count: int, chunk_bytes: int,
                      on_phase: Optional[Callable[[str], None]] = None) -> dict[str, float]:
        """The driver's own speed on this server: insert `count` copies of `payload` cut into `chunk_bytes`
        documents, then read each back by an indexed key, as wirehead does, then drop them; returns ``insert_s``,
        ``read_s`` and ``drop_s``. `on_phase` is called with ``"start"``, ``"insert"``, ``"read"`` and ``"drop"``
        as each phase starts or ends (outside the clock's readings)."""
        mark = on_phase or (lambda phase: None)
        self.raw_reset()
        pieces = self.raw_pieces(payload, chunk_bytes)
        mark("start")
        started = time.perf_counter()
        for k in range(count):
            self.raw_insert(k, pieces)
        inserted = time.perf_counter()
        mark("insert")
        read_started = time.perf_counter()
        total = sum(self.raw_read(k) for k in range(count))
        read = time.perf_counter()
        mark("read")
        drop_started = time.perf_counter()
        self.raw_drop()
        dropped = time.perf_counter()
        mark("drop")
        if total != count * len(payload):
            raise StoreError(f"raw read-back returned {total} bytes, expected {count * len(payload)}")
        return {"insert_s": inserted - started, "read_s": read - read_started, "drop_s": dropped - drop_started}

    # ------------------------------------------------------------------ status
    def snapshot(self) -> dict[str, Any]:
        """Everything `wirehead status` reports, read in a few queries."""
        state = self.coll("state")
        swap = state.find_one({"_id": "swap"})
        lock = state.find_one({"_id": "lock"})
        gens = {d["_id"]: d for d in state.find({"_id": {"$regex": "^gen\\."}})}
        reads = {d["_id"]: d
                 for d in state.find({"_id": {"$regex": "^reads\\."}}, {"served": 1, "n": 1, "claimed": 1})}
        events = list(self.coll("events").find({}, {"tokens": 0}))
        events.sort(key=lambda e: e["_id"])
        procs = list(self.coll("procs").find({}))
        committed = {}
        if swap is not None:
            for n in (swap["write_gen"], swap["write_gen"] + 1):
                if f"gen.{n}" in gens:
                    committed[n] = self.count_committed(self.gen_name(n))
        return {"swap": swap, "lock": lock, "gens": gens, "reads": reads, "events": events, "procs": procs,
                "committed": committed}

    def committed_total(self) -> int:
        """Samples committed so far: those swapped in (per the swap events) plus those in the open generations.

        Only the events of generations before the write generation count: a swap writes its event before it
        publishes the new write generation, and the generation being swapped is counted as a write generation until
        then (counting its event too counted it twice: a whole generation more in a rate's first reading)."""
        state = self.swap_state()
        if state is None:
            return 0
        write = int(state["write_gen"])
        swapped = sum(int(e["committed"]) for e in self.coll("events").find({"_id": {"$lt": write}}, {"committed": 1}))
        return swapped + sum(self.count_committed(self.gen_name(n)) for n in (write, write + 1))

    def server_status(self) -> dict[str, Any]:
        """The server's ``serverStatus`` (empty if the server does not support it)."""
        try:
            return self.db.client.admin.command("serverStatus")
        except pme.PyMongoError:
            return {}
