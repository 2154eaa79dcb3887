"""End to end on a real server: generator processes, the manager process and PyTorch readers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import fill_and_swap, Reader, seeds_by_id, swaps, wait_until
from wirehead_core.dataset import WireheadDataset
from wirehead_core.generator import Generator
from wirehead_core.manager import SwapManager
from wirehead_core.sources import seeded, verify_seeded
from wirehead_core.store import Store, unpack_tokens


def test_four_generators_manager_and_dataloader_workers_run_twenty_swaps_with_every_byte_verified(make_config, procs):
    config, path = make_config(swap_cap=5)
    procs.manager(path)
    for i in range(4):
        procs.generator(path, seed=(i + 1) * 10**9)
    store = Store(config)
    loader = DataLoader(WireheadDataset(config, return_key=True), batch_size=3, shuffle=True, num_workers=2)
    key_seed: dict[tuple[int, int], int] = {}
    seed_key: dict[int, tuple[int, int]] = {}
    reads = 0
    deadline = time.monotonic() + 240
    while swaps(store) < 20:
        assert time.monotonic() < deadline, "fewer than 20 swaps in 240 s"
        for images, labels, keys in loader:
            for j in range(images.shape[0]):
                seed = verify_seeded((images[j], labels[j]), config.fields)  # raises on any wrong byte
                key = (int(keys[j, 0]), int(keys[j, 1]))
                assert key_seed.setdefault(key, seed) == seed, "one (generation, id) returned two samples"
                assert seed_key.setdefault(seed, key) == key, "one sample committed under two ids"
                reads += 1
    events = sorted(store.coll("events").find({}), key=lambda e: e["_id"])
    assert [e["_id"] for e in events] == list(range(len(events)))
    assert all(e["committed"] == 5 for e in events)
    assert reads > 0 and len({k[0] for k in key_seed}) >= 2, "the readers did not follow the swaps"
    assert all(0 <= sid < 5 for _, sid in key_seed)
    # each event holds its swap's time, seal to publish, and each step's share (the newest may still await it)
    timed = [e for e in events if "published_at" in e]
    assert len(timed) >= len(events) - 1
    for e in timed:
        assert e["started_at"] <= e["finished_at"] <= e["published_at"]
        assert e["duration_s"] == pytest.approx(e["published_at"] - e["started_at"])
        assert list(e["steps_s"]) == ["seal", "intent", "strays", "indexes", "reads-doc", "promote", "open-next",
                                      "event", "publish"]
        assert all(v >= 0 for v in e["steps_s"].values())
        assert sum(e["steps_s"].values()) == pytest.approx(e["duration_s"], abs=0.002)
    intervals = [(e["started_at"], e["published_at"]) for e in timed]
    assert all(a[1] <= b[0] for a, b in zip(intervals, intervals[1:])), "two swaps overlapped"


def test_a_200_mb_sample_round_trips_through_the_server_bit_exactly(make_config):
    config, _ = make_config(swap_cap=1, fields=[{"name": "volume", "dtype": "uint8"}], chunk_bytes=8 * 1024 * 1024,
                            manager__reservation_timeout_s=60)
    big = np.random.default_rng(7).integers(0, 256, size=200 * 1024 * 1024, dtype=np.uint8)
    stats, manager = fill_and_swap(config, 1, iter([(big,)]), timeout_s=240)
    assert stats.committed == 1 and manager.swaps_done == 1
    ds = WireheadDataset(config)
    (out,) = ds[0]
    assert out.dtype == torch.uint8 and out.shape == (200 * 1024 * 1024,)
    assert torch.equal(out, torch.from_numpy(big))
    ds.close()


def test_dataset_waits_for_the_first_generation_then_raises_timeout_naming_what_it_waited_for(make_config):
    config, _ = make_config()
    ds = WireheadDataset(config, wait_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no swap has completed") as info:
        len(ds)
    assert 1.0 <= time.monotonic() - started < 10
    assert config.mongo.database in str(info.value)


def test_dataset_len_follows_the_read_generation_and_returns_dicts_with_keys(make_config):
    config, _ = make_config(swap_cap=4)
    fill_and_swap(config, 1, seeded(config, seed=5, count=4))
    ds = WireheadDataset(config, return_dict=True, return_key=True)
    assert len(ds) == 4
    item = ds[2]
    assert set(item) == {"image", "label", "key"}
    assert item["image"].dtype == torch.float32 and item["label"].dtype == torch.uint8
    assert item["key"].tolist() == [0, 2]
    assert verify_seeded((item["image"], item["label"]), config.fields) in range(5, 9)
    ds.flush_counts()
    reads = Store(config).coll("state").find_one({"_id": "reads.0"})
    assert reads["served"] == 1 and reads["served_per"] == {"2": 1} and reads["n"] == 4
    ds.close()


@pytest.mark.parametrize("policy, expected", [("block", 5), ("carry", 10)])
def test_full_write_generation_blocks_or_carries_but_never_discards(make_config, policy, expected):
    config, _ = make_config(swap_cap=5, generator__backpressure=policy)
    manager = SwapManager(config)
    manager.step()  # opens the write generation(s), then no manager runs: nothing is swapped
    store = Store(config)
    # and those the next swap hands to the generators, so that the swap does not have to create them
    assert [n for n in range(4) if store.gen_doc(n) is not None] == ([0, 1, 2] if policy == "carry" else [0, 1])
    gen = Generator(config, seeded(config, seed=1))
    thread = threading.Thread(target=gen.run)
    thread.start()
    try:
        wait_until(lambda: gen.stats.committed >= expected and gen.stats.blocked_s > 0.5, 30,
                   f"{expected} commits then blocking")
    finally:
        gen.stop()
        thread.join(timeout=10)
    assert gen.stats.committed == expected
    assert gen.stats.produced == expected + gen.stats.abandoned  # the one in hand when stopped was withdrawn
    assert store.count_committed("gen.0") == 5
    assert store.count_committed("gen.1") == (5 if policy == "carry" else 0)
    assert store.coll("gen.0").count_documents({"s": "w"}) == 0, "the stopped generator left a claim behind"


@pytest.mark.parametrize("writers", [1, 2])
def test_writer_threads_commit_every_sample_once_and_one_writer_keeps_the_source_order(make_config, writers):
    config, _ = make_config(swap_cap=24, generator__writers=writers)
    SwapManager(config).step()  # opens generation 0
    stats = Generator(config, seeded(config, seed=1, count=24)).run()
    assert (stats.produced, stats.committed, stats.abandoned, stats.claims_lost) == (24, 24, 0, 0)
    seed_at = seeds_by_id(Store(config), "gen.0")
    assert sorted(seed_at.values()) == list(range(1, 25))  # each sample once
    if writers == 1:
        assert [seed_at[i] for i in range(24)] == list(range(1, 25))


def test_reads_during_continuous_swaps_never_mix_generations(make_config, procs):
    config, path = make_config(swap_cap=3, manager__poll_s=0.01)
    procs.manager(path)
    procs.generator(path, seed=10**9)
    procs.generator(path, seed=2 * 10**9)
    reader = Reader(config).start()
    store = Store(config)
    wait_until(lambda: swaps(store) >= 15, 120, "15 swaps")
    reader.stop()
    assert reader.errors == [] and reader.corrupt == 0 and reader.conflicts == []
    assert reader.reads > 0
    assert reader.dataset.stats.generations_seen and len(reader.dataset.stats.generations_seen) >= 3


@pytest.mark.parametrize("promote", ["pointer", "rename"])
def test_each_promote_mode_serves_the_swapped_generation_and_drops_the_one_before(make_config, promote):
    config, _ = make_config(swap_cap=3, manager__promote=promote)
    fill_and_swap(config, 1, seeded(config, seed=1, count=3))
    store = Store(config)
    ds = WireheadDataset(config, return_key=True)
    assert store.read_coll() == ("gen.0" if promote == "pointer" else "read")
    assert {int(ds[i][2][0]) for i in range(3)} == {0}
    fill_and_swap(config, 1, seeded(config, seed=100, count=3))
    assert store.read_coll() == ("gen.1" if promote == "pointer" else "read")
    names = {n.split(".", 1)[1] for n in store.db.list_collection_names() if n.startswith(config.mongo.namespace)}
    assert "gen.0" not in names and ("read" in names) == (promote == "rename")
    samples = [ds[i] for i in range(3)]  # the reader follows to generation 1
    assert {int(s[2][0]) for s in samples} == {1}
    for s in samples:
        verify_seeded(s[:2], config.fields)
    ds.close()


def test_a_commit_that_lands_in_the_read_generation_after_the_swap_is_never_served(make_config):
    # A writer stalled past the reservation timeout may commit into a generation that was already swapped in
    # (pointer mode keeps gen.N as the read collection). Readers serve exactly the ids the swap published.
    config, _ = make_config(swap_cap=2)
    fill_and_swap(config, 1, seeded(config, seed=1, count=2))
    store = Store(config)
    late = next(seeded(config, seed=999, count=1))
    from wirehead_core.codec import encode_sample

    enc = encode_sample(late, config.fields, config.chunk_bytes)
    assert store.claim(0, 7, "late-token", "stalled")
    store.write_chunks(0, "late-token", enc.chunks, renew=lambda: None)
    assert store.commit(0, 7, "late-token", {"f": [f.to_doc() for f in enc.fields], "k": len(enc.chunks), "b": 1})
    ds = WireheadDataset(config, return_key=True)
    assert len(ds) == 2 and sorted(int(ds[i][2][1]) for i in range(2)) == [0, 1]
    ds.close()


def test_a_fast_source_of_small_samples_is_committed_in_groups_with_every_byte_intact(make_config, monkeypatch):
    groups: list[int] = []
    real = Store.write_and_commit_many

    def counting(self, n, samples):
        groups.append(len(samples))
        return real(self, n, samples)

    monkeypatch.setattr(Store, "write_and_commit_many", counting)
    config, _ = make_config(swap_cap=40)
    stats, manager = fill_and_swap(config, 2, seeded(config, seed=7, count=80))
    assert stats.committed == 80 and stats.abandoned == 0 and manager.swaps_done == 2
    assert groups and max(groups) > 1, "the writer never committed two waiting samples together"
    store = Store(config)
    events = sorted(store.coll("events").find({}), key=lambda e: e["_id"])
    assert [e["committed"] for e in events] == [40, 40]
    # an event holds the tokens it swapped in as one binary value, 16 bytes each: the read generation's tokens
    assert all(isinstance(e["tokens"], bytes) and len(e["tokens"]) == 16 * 40 for e in events)
    read_tokens = {r["t"] for r in store.records(store.gen_name(1), {"s": "c"}, {"t": 1})}
    assert set(unpack_tokens(events[1])) == read_tokens and len(read_tokens) == 40
    ds = WireheadDataset(config, return_key=True)
    seeds = {verify_seeded(ds[i][:2], config.fields) for i in range(40)}  # raises on any wrong byte
    assert len(seeds) == 40
    ds.close()


def test_concurrent_reservations_hand_out_every_id_exactly_once(make_config):
    # Eight writers reserving groups of 1 to 3 at once: no id twice, none skipped, and the last groups get what is
    # left. (An update-pipeline version of the reservation failed this on SecantusDB: its pipelines are not atomic.)
    cap = 600
    config, _ = make_config(swap_cap=cap)
    SwapManager(config).step()  # opens generation 0
    got: list[int] = []

    def writer(k: int) -> None:
        store = Store(config)
        while True:
            sids, fresh = store.reserve(0, cap, k)
            if not sids:
                break
            assert fresh and len(sids) <= k
            got.extend(sids)
        store.close()

    threads = [threading.Thread(target=writer, args=(1 + i % 3,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(cap))


def _group_items(config, sids):
    """`Store.write_and_commit_many` items for ids `sids`, as a generator's writer builds them: sample `sid` is seed
    ``sid + 1``, its token ``tok<sid>``, its owner ``me``."""
    from wirehead_core.codec import encode_sample
    from wirehead_core.generator import _commit_meta

    encoded = [encode_sample(next(seeded(config, seed=sid + 1, count=1)), config.fields, config.chunk_bytes)
               for sid in sids]
    return [(sid, f"tok{sid}", "me", _commit_meta(e), e.chunks) for sid, e in zip(sids, encoded)]


def test_a_group_insert_that_meets_a_taken_id_commits_the_others_and_removes_its_own_chunks(make_config):
    config, _ = make_config(swap_cap=4)
    SwapManager(config).step()  # opens generation 0
    store = Store(config)
    sids, fresh = store.reserve(0, 4, 3)
    assert sids == [0, 1, 2] and fresh
    assert store.reserve(0, 4, 2) == ([3], True) and store.reserve(0, 4, 2) == ([], False)  # what is left, then none
    assert store.claim(0, 1, "other-writer", "other")
    assert store.write_and_commit_many(0, _group_items(config, sids)) == [True, False, True]
    coll = store.coll("gen.0")
    assert coll.count_documents({"t": "tok1"}) == 0, "the refused sample's chunks stayed"
    assert {r["_id"]: r["s"] for r in store.records("gen.0", {})} == {0: "c", 1: "w", 2: "c"}


def test_the_manager_passes_often_as_soon_as_every_id_is_handed_out(make_config):
    # Passes come every 4 x poll_s while generators still take ids, every poll_s once every id is handed out, since
    # the last commits may land at any moment. The first pass to see them all handed out used to wait out 3/4 of
    # the previous generation's landing time, timed from its own late sight of the hand-out: in a 1 MB pipeline the
    # swap came up to 40 ms after the generation was full and read.
    config, _ = make_config(swap_cap=4)
    manager, store = SwapManager(config), Store(config)
    manager.step()  # opens generation 0
    sids, _ = store.reserve(0, 4, 3)
    manager.step()
    assert not manager._due, "ids are left to hand out: nothing can be due yet"
    sids += store.reserve(0, 4, 1)[0]
    manager.step()
    assert manager._due
    time.sleep(0.5)  # the last commits take their time to land
    assert store.write_and_commit_many(0, _group_items(config, sids)) == [True] * 4
    store.report_commits(0, 4)
    wait_until(lambda: manager.step() or manager.swaps_done == 1, 30, "the swap")
    store.reserve(1, 4, 4)
    manager.step()
    assert manager._due, "every id of generation 1 is handed out: its last commits may land at once"
    store.close()


@pytest.mark.parametrize("asked", [3, 40])
def test_the_manager_finds_the_commits_it_has_not_verified_by_id_or_by_state(make_config, asked):
    # `commit_records` asks for a few ids by id and for more by state from the lowest: either way it returns
    # every commit among them and no claim (chunks, whose ids are not sample ids, are never records)
    config, _ = make_config(swap_cap=60)
    SwapManager(config).step()  # opens generation 0
    store = Store(config)
    coll = store.coll("gen.0")
    for sid in range(60):
        state = "w" if sid % 3 == 0 else "c"
        coll.insert_many([{"t": f"tok{sid}", "c": 0, "n": 1, "d": b"x"},
                          {"_id": sid, "g": 0, "t": f"tok{sid}", "s": state, "k": 1}])
    ids = list(range(60 - asked, 60))
    got = store.commit_records("gen.0", ids, {"t": 1})
    wanted = [sid for sid in ids if sid % 3]
    assert [r["_id"] for r in got if r["_id"] in ids] == wanted
    assert all(r["s"] == "c" and r["t"] == f"tok{r['_id']}" for r in got)
    store.close()


def test_a_batch_is_read_with_one_query_and_matches_reading_each_sample(make_config, monkeypatch):
    config, _ = make_config(swap_cap=6)
    fill_and_swap(config, 1, seeded(config, seed=3, count=6))
    ds = WireheadDataset(config, return_key=True)
    single = [ds[i] for i in range(6)]
    calls = {"many": 0, "one": 0}
    for name, key in (("read_chunks_many", "many"), ("read_chunks", "one")):
        real = getattr(Store, name)

        def counted(self, *args, _real=real, _key=key):
            calls[_key] += 1
            return _real(self, *args)

        monkeypatch.setattr(Store, name, counted)
    batch = ds.__getitems__([0, 1, 2, 3, 4, 5])
    assert calls == {"many": 1, "one": 0}
    for a, b in zip(single, batch):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        verify_seeded(b[:2], config.fields)
    loader = DataLoader(ds, batch_size=3, shuffle=False)
    images, labels, keys = next(iter(loader))
    assert keys[:, 1].tolist() == [0, 1, 2] and calls["many"] == 2
    ds.close()
