"""Reuse control: reads per sample held to a target, a hard per-sample cap, and no extra round trip per read."""

from __future__ import annotations

import collections
import threading
import time

import pymongo.monitoring
import pytest

from helpers import fill_and_swap, wait_until
from wirehead_core.dataset import WireheadDataset
from wirehead_core.generator import Generator
from wirehead_core.manager import SwapManager
from wirehead_core.sources import seeded
from wirehead_core.store import Store


class _Cluster:
    """A manager and one generator as threads, plus reader threads that read as fast as they can."""

    def __init__(self, config, delay_s: float, readers: int, read_sleep_s: float = 0.0) -> None:
        self.config = config
        self.manager = SwapManager(config)
        self.generator = Generator(config, seeded(config, seed=11, delay_s=delay_s))
        self.stop = threading.Event()
        self.keys: collections.Counter = collections.Counter()
        self.errors: list[BaseException] = []
        self.read_sleep_s = read_sleep_s
        self.threads = [threading.Thread(target=self.manager.run), threading.Thread(target=self.generator.run)]
        self.threads += [threading.Thread(target=self._read) for _ in range(readers)]

    def _read(self) -> None:
        ds = WireheadDataset(self.config, return_key=True)
        i = 0
        try:
            while not self.stop.is_set():
                *_, key = ds[i]
                self.keys[tuple(key.tolist())] += 1
                i += 1
                if self.read_sleep_s:
                    time.sleep(self.read_sleep_s)
        except BaseException as exc:  # noqa: BLE001 - asserted empty by the test
            if not self.stop.is_set():
                self.errors.append(exc)
        finally:
            ds.close()

    def __enter__(self) -> "_Cluster":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.generator.stop()
        self.manager.stop()
        for t in self.threads:
            t.join(timeout=30)


def _served_per_sample(store: Store, gens: range) -> list[float]:
    out = []
    for g in gens:
        doc = store.reads_doc(g)
        out.append(doc["served"] / doc["n"])
    return out


@pytest.mark.parametrize("mode", ["wait", "early_swap"])
def test_fast_readers_and_a_slow_generator_keep_mean_reads_per_sample_within_tolerance(make_config, mode):
    config, _ = make_config(swap_cap=10, reuse={"policy": "target", "target": 2.0, "tolerance": 0.2,
                                                "when_readers_ahead": mode, "early_swap_min": 3, "claim_batch": 1})
    store = Store(config)
    with _Cluster(config, delay_s=0.05, readers=2) as cluster:
        wait_until(lambda: store.coll("events").count_documents({}) >= 7, 120, "seven swaps")
    assert cluster.errors == []
    events = sorted(store.coll("events").find({}, {"tokens": 0}), key=lambda e: e["_id"])
    finished = range(1, len(events) - 1)  # generations that were read and then replaced
    means = _served_per_sample(store, finished)
    overall = sum(store.reads_doc(g)["served"] for g in finished) / sum(store.reads_doc(g)["n"] for g in finished)
    assert 1.6 <= overall <= 2.4, means
    assert all(1.6 <= m <= 2.4 for m in means), means
    if mode == "early_swap":
        assert any(e["early"] and e["committed"] < 10 for e in events), "no early swap with a smaller generation"


def test_slow_readers_hold_back_swaps_until_the_target_is_met(make_config):
    config, _ = make_config(swap_cap=5, reuse={"policy": "target", "target": 2.0, "tolerance": 0.2,
                                               "claim_batch": 1})
    store = Store(config)
    with _Cluster(config, delay_s=0.0, readers=1, read_sleep_s=0.02) as cluster:
        wait_until(lambda: store.coll("events").count_documents({}) >= 5, 120, "five swaps")
        blocked = cluster.generator.stats.blocked_s
    assert cluster.errors == []
    means = _served_per_sample(store, range(0, 3))
    assert all(m >= 1.6 for m in means), means  # each generation was read to its target before being replaced
    assert blocked > 0.5, "the generators were not held back"


def test_max_reads_never_returns_a_sample_more_often_than_the_cap(make_config):
    config, _ = make_config(swap_cap=6, reuse={"policy": "max_reads", "max_reads": 3, "claim_batch": 2})
    store = Store(config)
    with _Cluster(config, delay_s=0.03, readers=3) as cluster:
        wait_until(lambda: store.coll("events").count_documents({}) >= 5, 120, "five swaps")
    assert cluster.errors == []
    assert cluster.keys and max(cluster.keys.values()) <= 3, cluster.keys.most_common(3)
    assert max(cluster.keys.values()) == 3  # the cap is reached, not just respected by starving readers


class _Counter(pymongo.monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1

    def succeeded(self, event: object) -> None:
        pass

    def failed(self, event: object) -> None:
        pass


@pytest.mark.parametrize("policy", ["off", "target"])
def test_round_trips_per_thousand_reads(make_config, policy):
    reuse = {"policy": "target", "target": 1000.0, "claim_batch": 8} if policy == "target" else {"policy": "off"}
    config, _ = make_config(swap_cap=20, reuse=reuse)
    fill_and_swap(config, 1, seeded(config, seed=3, count=20))
    ds = WireheadDataset(config)
    ds[0]  # connect and load the table outside the measured window
    counter = _Counter()
    pymongo.monitoring.register(counter)  # applies to clients created from now on
    ds.close()
    ds = WireheadDataset(config)
    ds[0]
    counter.counts.clear()
    for i in range(1000):
        ds[i]
    ds.flush_counts()
    total = sum(counter.counts.values())
    extra = total - counter.counts["find"]
    assert counter.counts["find"] == 1000, counter.counts  # one query per read: the sample's chunks
    limit = 1000 / 8 + 10 if policy == "target" else 10
    assert extra <= limit, f"{extra} extra round trips per 1000 reads ({dict(counter.counts)})"
    ds.close()


def test_a_batch_read_claims_its_rights_in_one_round_trip(make_config):
    # claim_batch 2 and batches of 8: each batch asks for the 8 rights it needs at once, not in four claims of 2
    config, _ = make_config(swap_cap=24, reuse={"policy": "target", "target": 1.0, "claim_batch": 2})
    fill_and_swap(config, 1, seeded(config, seed=5, count=24))
    ds = WireheadDataset(config, return_key=True)
    keys = [tuple(key.tolist()) for i in range(0, 24, 8) for *_, key in ds.__getitems__(range(i, i + 8))]
    assert len(set(keys)) == 24  # every sample once: the target of one read each is kept
    assert ds.stats.claims == 3, ds.stats.claims
    ds.close()
