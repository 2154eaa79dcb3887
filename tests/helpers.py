"""Helpers shared by the system tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def wait_until(cond: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    """Poll `cond` until truthy; fail the test with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def log_text(proc: Any) -> str:
    """Everything a spawned process wrote."""
    return Path(proc.log_path).read_text(errors="replace")


class Reader:
    """A thread that reads the read generation in a loop and checks every byte of every sample.

    Attributes:
        reads: samples read and verified.
        errors: exceptions raised by reads (should stay empty).
        corrupt: samples whose bytes did not match their seed.
        seen: key ``(generation, id)`` -> seed; a key mapping to two seeds is recorded in ``conflicts``.
    """

    def __init__(self, config: Any) -> None:
        import threading

        from wirehead_core.dataset import WireheadDataset

        self.config = config
        self.dataset = WireheadDataset(config, return_key=True)
        self.reads = 0
        self.errors: list[BaseException] = []
        self.corrupt = 0
        self.seen: dict[tuple[int, int], int] = {}
        self.conflicts: list[tuple[tuple[int, int], int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Reader":
        self._thread.start()
        return self

    def _run(self) -> None:
        from wirehead_core.errors import CorruptSampleError
        from wirehead_core.sources import verify_seeded

        i = 0
        while not self._stop.is_set():
            try:
                *arrays, key = self.dataset[i]
            except BaseException as exc:  # noqa: BLE001 - recorded for the test to assert on
                self.errors.append(exc)
                time.sleep(0.1)
                continue
            i += 1
            try:
                seed = verify_seeded(arrays, self.config.fields)
            except CorruptSampleError:
                self.corrupt += 1
                continue
            k = (int(key[0]), int(key[1]))
            if self.seen.setdefault(k, seed) != seed:
                self.conflicts.append((k, self.seen[k], seed))
            self.reads += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.dataset.close()


def seeds_by_id(store: Any, coll: str) -> dict[int, int]:
    """Seed of every committed sample in a collection, by id, decoded from the stored bytes."""
    from wirehead_core.codec import decode_sample, field_meta_from_doc
    from wirehead_core.sources import sample_seed

    seeds = {}
    for rec in store.records(coll, {"s": "c"}, {"t": 1, "f": 1}):
        chunks = [bytes(d["d"]) for d in store.chunk_docs(coll, rec["t"])]
        seeds[int(rec["_id"])] = sample_seed(decode_sample([field_meta_from_doc(f) for f in rec["f"]], chunks,
                                                           as_torch=False))
    return seeds


def swaps(store: Any) -> int:
    """Completed swaps recorded in the events collection."""
    return store.coll("events").count_documents({})


def fill_and_swap(config: Any, swaps: int, source: Any, timeout_s: float = 60) -> tuple[Any, Any]:
    """Run a manager thread for `swaps` swaps while a generator commits everything `source` yields.

    Returns ``(generator stats, manager)``.
    """
    import threading

    from wirehead_core.generator import Generator
    from wirehead_core.manager import SwapManager

    manager = SwapManager(config)
    thread = threading.Thread(target=manager.run, kwargs={"max_swaps": swaps, "duration_s": timeout_s})
    thread.start()
    stats = Generator(config, source).run()
    thread.join()
    return stats, manager
