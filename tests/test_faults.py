"""Process death, pauses and server restarts: nothing partial is read, nothing committed is lost, no lock sticks."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import Reader, log_text, seeds_by_id, swaps, wait_until
from wirehead_core.generator import Generator
from wirehead_core.manager import SWAP_STEPS, SwapManager
from wirehead_core.server import LocalServer
from wirehead_core.sources import sample_seed, seeded
from wirehead_core.store import Store, unpack_tokens


def _seeds_of(store: Store, coll: str) -> set[int]:
    """Seeds of every committed sample in a collection, decoded from the stored bytes."""
    return set(seeds_by_id(store, coll).values())


def test_generator_killed_mid_write_never_exposes_a_partial_sample_and_swaps_continue(make_config, procs):
    # 2 MB samples in 64 KiB chunks: a kill lands inside a sample's chunk writes most of the time.
    config, path = make_config(swap_cap=4, chunk_bytes=64 * 1024,
                               fields=[{"name": "image", "dtype": "float32", "shape": [64, 64, 128]},
                                       {"name": "label", "dtype": "uint8", "shape": [64, 64, 128]}])
    procs.manager(path)
    steady = procs.generator(path, seed=10**9)
    reader = Reader(config).start()
    store = Store(config)
    rng = random.Random(3)
    for round_ in range(5):
        victim = procs.generator(path, seed=(round_ + 2) * 10**9)
        time.sleep(rng.uniform(0.5, 1.5))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    after_kills = swaps(store)
    wait_until(lambda: swaps(store) >= after_kills + 3, 120, "three more swaps after the kills")
    reader.stop()
    assert steady.poll() is None
    assert reader.errors == [] and reader.corrupt == 0 and reader.conflicts == []
    assert reader.reads > 0
    events = list(store.coll("events").find({}))
    assert all(e["committed"] == 4 for e in events)


_STEP_CASES = [(step, "pointer") for step in SWAP_STEPS] + [
    (step, "rename") for step in ("reads-doc", "promote", "open-next", "publish")]


@pytest.mark.parametrize("step,promote", _STEP_CASES)
def test_manager_killed_at_each_swap_step_is_finished_by_a_new_manager_without_loss(make_config, procs, tmp_path,
                                                                                  step, promote):
    config, path = make_config(swap_cap=4, manager__lease_s=2, manager__promote=promote)
    marker = tmp_path / "fault"
    fault_env = {"WIREHEAD_FAULT_PAUSE": f"{step}:120", "WIREHEAD_FAULT_FILE": str(marker),
                 "WIREHEAD_FAULT_SKIP": "1"}  # pause in the second swap, so readers already have data
    doomed = procs.manager(path, env=fault_env)
    gens = [procs.generator(path, seed=(i + 1) * 10**9) for i in range(2)]
    reader = Reader(config).start()
    store = Store(config)
    wait_until(lambda: marker.exists() and marker.read_text().strip() == step, 90, f"the manager to reach {step}")
    state = store.swap_state()
    swapping = state["swapping_gen"] if state["phase"] == "swapping" else state["write_gen"]
    # One generator can fill both generations alone; the other may still be starting, and a process signalled
    # before Python runs dies of the signal. Wait until both run, so both can be asked to stop cleanly.
    wait_until(lambda: store.coll("procs").count_documents({"kind": "generator"}) >= 2, 60, "both generators to run")
    for g in gens:  # freeze the generations so the set of committed samples is fixed
        g.send_signal(signal.SIGTERM)
    for g in gens:
        assert g.wait(timeout=30) == 0, log_text(g)
    coll = f"gen.{swapping}"
    committed = _seeds_of(store, coll) if store.collection_exists(coll) else _seeds_of(store, store.read_coll())
    assert len(committed) == 4
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    killed_at = time.monotonic()
    procs.manager(path)
    wait_until(lambda: (store.swap_state() or {}).get("read_gen") == swapping
               and store.swap_state()["phase"] == "idle", 60, f"generation {swapping} to be swapped in")
    assert time.monotonic() - killed_at < 30, "the lock stayed stuck"
    assert _seeds_of(store, store.read_coll()) == committed, "a committed sample was lost or changed"
    assert store.read_coll() == ("read" if promote == "rename" else coll)
    for i in range(2):
        procs.generator(path, seed=(i + 5) * 10**9)
    wait_until(lambda: swaps(store) >= swapping + 3, 90, "swaps to continue after recovery")
    reader.stop()
    assert reader.errors == [] and reader.corrupt == 0 and reader.conflicts == []
    event = store.coll("events").find_one({"_id": swapping})
    assert event is not None and event["committed"] == 4
    lock = store.lock_doc()
    assert lock["owner"] is not None and lock["expires"] > time.time() - 5


def test_two_managers_never_swap_at_once_and_a_paused_one_is_replaced_after_its_lease(make_config, procs):
    config, path = make_config(swap_cap=3, manager__lease_s=2)
    first = procs.manager(path, "--name", "first")
    store = Store(config)
    wait_until(lambda: (store.lock_doc() or {}).get("owner", "") and store.lock_doc()["owner"].startswith("first"),
               30, "the first manager to take the lock")
    procs.manager(path, "--name", "second")
    for i in range(2):
        procs.generator(path, seed=(i + 1) * 10**9)
    wait_until(lambda: swaps(store) >= 4, 60, "four swaps")
    first.send_signal(signal.SIGSTOP)
    paused_at = time.time()
    try:
        wait_until(lambda: store.lock_doc()["owner"].startswith("second"), 30, "the second manager to take over")
        assert time.time() - paused_at < 2 * 2 + 3
        before = swaps(store)
        wait_until(lambda: swaps(store) >= before + 3, 60, "swaps by the second manager")
    finally:
        first.send_signal(signal.SIGCONT)
    resumed = swaps(store)
    wait_until(lambda: swaps(store) >= resumed + 3, 60, "swaps after the first manager resumed")
    events = sorted(store.coll("events").find({}), key=lambda e: e["_id"])
    assert [e["_id"] for e in events] == list(range(len(events)))
    assert {e["manager"] for e in events} == {"first", "second"}
    spans = [(e["started_at"], e["finished_at"]) for e in events]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "two managers swapped at the same time"
    assert "lost the swap lock" in log_text(first)


def test_server_stopped_and_restarted_while_generators_and_a_reader_run(make_config, procs, tmp_path):
    server = LocalServer(tmp_path / "own-server")
    server.start()
    port = server.info.port
    try:
        config, path = make_config(swap_cap=4, mongo__uri=server.uri)
        manager = procs.manager(path)
        gens = [procs.generator(path, seed=(i + 1) * 10**9) for i in range(2)]
        reader = Reader(config).start()
        store = Store(config)
        wait_until(lambda: swaps(store) >= 3, 60, "three swaps")
        server.stop()
        time.sleep(3)
        server = LocalServer(tmp_path / "own-server", port=port)
        server.start()
        before = swaps(store)
        wait_until(lambda: swaps(store) >= before + 3, 120, "three swaps after the restart")
        reader.stop()
        assert all(p.poll() is None for p in [manager, *gens]), "a process died during the outage"
        assert reader.errors == [] and reader.corrupt == 0 and reader.conflicts == []
        assert "unreachable" in log_text(gens[0]) + log_text(manager)
    finally:
        server.stop()


def test_a_standby_manager_survives_the_server_going_down_as_it_first_finds_the_lock_held(make_config, tmp_path):
    # The server stops right after the standby's first lock attempt finds another owner, before it reads who that
    # owner is (the moment a chaos run killed a standby with AutoReconnect). It must wait the outage out and take the
    # lock once the owner gives it up.
    server = LocalServer(tmp_path / "own-server")
    server.start()
    port = server.info.port
    servers = [server]
    try:
        config, _ = make_config(mongo__uri=server.uri, mongo__connect_timeout_s=1)
        holder = Store(config)
        holder.init_namespace()
        assert holder.acquire_lock("holder", lease_s=600)
        standby = SwapManager(config, name="standby")
        real_acquire = standby.store.acquire_lock
        outage = threading.Event()

        def acquire_then_outage(owner: str, lease_s: float) -> bool:
            held = real_acquire(owner, lease_s)
            if not held and not outage.is_set():
                outage.set()
                servers[0].stop()
                threading.Timer(3.0, restart).start()  # longer than the client's 1 s server selection
            return held

        def restart() -> None:
            again = LocalServer(tmp_path / "own-server", port=port)
            again.start()
            servers.append(again)

        standby.store.acquire_lock = acquire_then_outage
        errors: list[BaseException] = []

        def run() -> None:
            try:
                standby.run(duration_s=90)
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_until(outage.is_set, 30, "the standby's first lock attempt")
        wait_until(lambda: len(servers) == 2, 60, "the server to restart")
        holder.retry("release", lambda: holder.release_lock("holder"), timeout_s=60)
        wait_until(lambda: not thread.is_alive() or str((holder.lock_doc() or {}).get("owner", "")).startswith(
            "standby:"), 60, "the standby to take the lock")
        assert errors == [] and thread.is_alive()
        standby.stop()
        thread.join(timeout=30)
    finally:
        for s in servers:
            s.stop()


def test_stale_claim_of_a_dead_writer_is_reissued_and_the_generation_completes(make_config):
    config, _ = make_config(swap_cap=3, manager__reservation_timeout_s=1)
    manager = SwapManager(config)
    manager.step()
    store = Store(config)
    (dead_sid,), _ = store.reserve(0, config.swap_cap)
    assert store.claim(0, dead_sid, "dead-writer-token", "ghost")
    store.write_chunks(0, "dead-writer-token", [b"half a sample"], renew=lambda: None)
    thread = threading.Thread(target=manager.run, kwargs={"max_swaps": 1, "duration_s": 30})
    thread.start()
    stats = Generator(config, seeded(config, seed=1, count=2)).run()  # fills the other two ids
    gen = Generator(config, seeded(config, seed=50, count=1))
    gen.run()  # takes the reissued id once the claim has gone stale
    thread.join()
    assert stats.committed == 2 and gen.stats.committed == 1 and manager.swaps_done == 1
    read = store.records(store.read_coll(), {})
    assert sorted(r["_id"] for r in read) == [0, 1, 2] and all(r["s"] == "c" for r in read)
    assert store.coll(store.read_coll()).count_documents({"t": "dead-writer-token"}) == 0, "the dead writer's chunks stayed"
    event = store.coll("events").find_one({"_id": 0})
    assert event["reissued"] == 1


def test_sigterm_stops_a_generator_cleanly_without_a_visible_partial_sample(make_config, procs):
    config, path = make_config(swap_cap=50, chunk_bytes=16 * 1024,
                               fields=[{"name": "image", "dtype": "float32", "shape": [64, 64, 64]},
                                       {"name": "label", "dtype": "uint8", "shape": [64, 64, 64]}])
    SwapManager(config).step()
    gen = procs.generator(path, seed=7)
    store = Store(config)
    wait_until(lambda: store.count_committed("gen.0") >= 3, 60, "three commits")
    gen.send_signal(signal.SIGTERM)
    assert gen.wait(timeout=30) == 0
    assert store.coll("gen.0").count_documents({"s": "w"}) == 0
    committed_tokens = {r["t"] for r in store.records("gen.0", {"s": "c"}, {"t": 1})}
    assert set(store.coll("gen.0").distinct("t", {"s": {"$exists": False}})) == committed_tokens
    assert '"committed"' in log_text(gen)


def test_library_has_no_print_no_sys_exit_and_one_pymongo_module():
    root = Path(__file__).resolve().parents[1] / "wirehead_core"
    offenders = {"print(": [], "sys.exit": [], "import pymongo": [], "from pymongo": []}
    for path in root.rglob("*.py"):
        text = path.read_text()
        for needle in offenders:
            if needle in text:
                offenders[needle].append(path.name)
    assert offenders["print("] == [] and offenders["sys.exit"] == []
    assert sorted(set(offenders["import pymongo"] + offenders["from pymongo"])) == ["store.py"]
    assert os.sep not in "store.py"


def test_writers_stalled_between_reserving_and_claiming_never_lose_a_logged_commit(make_config, tmp_path,
                                                                                   monkeypatch):
    # A writer stalled (SIGSTOP, a busy node) after reserving an id loses it to another writer; when it wakes up
    # the generation may already be swapped in, and its writes would land in a recreated collection that nobody
    # reads. It must notice and write the sample again, so every commit it reports is in a swapped generation.
    import collections
    import json

    import wirehead_core.store as store_module

    rng = random.Random(5)

    def stalling(real):
        def write(self, *args):
            if rng.random() < 0.3:
                # some stalls stay under half the reservation timeout, some outlast the second after which blocked
                # writers ask for ids handed back (so a reissued id is taken while its first writer sleeps)
                time.sleep(rng.uniform(0.05, 1.5))
            return real(self, *args)
        return write

    for name in ("write_and_commit", "write_and_commit_many", "claim_and_write"):
        monkeypatch.setattr(store_module.Store, name, stalling(getattr(store_module.Store, name)))
    config, _ = make_config(swap_cap=4, manager__reservation_timeout_s=0.3, manager__poll_s=0.01)
    manager = SwapManager(config)
    thread = threading.Thread(target=manager.run, kwargs={"max_swaps": 40, "duration_s": 120})
    thread.start()
    logs = [tmp_path / f"commits{i}.jsonl" for i in range(3)]
    gens = [Generator(config, seeded(config, seed=(i + 1) * 10**9), commit_log=log) for i, log in enumerate(logs)]
    runs = [threading.Thread(target=g.run) for g in gens]
    for t in runs:
        t.start()
    thread.join()
    for g in gens:
        g.stop()
    for t in runs:
        t.join(timeout=30)
    per_id = collections.Counter()
    logged = set()
    for log in logs:
        for line in log.read_text().splitlines():
            d = json.loads(line)
            per_id[(d["gen"], d["sid"])] += 1
            logged.add(d["token"])
    store = Store(config)
    swapped = {t for e in store.coll("events").find({}) for t in unpack_tokens(e)}
    state = store.swap_state()
    open_tokens = {r["t"] for r in store.records(store.gen_name(state["write_gen"]), {"s": "c"}, {"t": 1})}
    assert manager.swaps_done == 40
    assert max(per_id.values()) == 1, [k for k, v in per_id.items() if v > 1][:5]
    assert logged - swapped - open_tokens == set()
    assert sum(g.stats.claims_lost for g in gens) > 0, "the stall never cost a writer its id: the test is too weak"


@pytest.mark.parametrize("mode, damage", [("full", "flip a byte"), ("structure", "drop a chunk"),
                                          ("records", "misstate the size")])
def test_each_verify_mode_removes_a_damaged_commit_before_it_can_be_swapped_in(make_config, mode, damage):
    import bson

    config, _ = make_config(swap_cap=3, manager__verify=mode)
    manager = SwapManager(config)
    manager.step()  # opens generation 0
    assert Generator(config, seeded(config, seed=1, count=2)).run().committed == 2
    store = Store(config)
    coll = store.coll("gen.0")
    rec = coll.find_one({"_id": 1, "s": "c"})
    chunk = coll.find_one({"t": rec["t"], "c": 0})
    # the seed of the sample that id 1 holds (seeds 1 and 2 may land in either order: writer threads race)
    damaged_seed = sample_seed((np.frombuffer(chunk["d"], dtype=np.uint8),))
    if damage == "flip a byte":
        data = bytearray(chunk["d"])
        data[100] ^= 0xFF
        coll.update_one({"_id": chunk["_id"]}, {"$set": {"d": bson.Binary(bytes(data))}})
    elif damage == "drop a chunk":
        coll.delete_one({"t": rec["t"], "s": {"$exists": False}})
    else:
        coll.update_one({"_id": 1}, {"$set": {"b": rec["b"] + 1}})
    gen = manager._gens[0]
    wait_until(lambda: manager.step() or len(gen.verified) + gen.corrupt >= 2, 30, "both commits checked")
    assert sorted(gen.verified) == [0] and gen.corrupt == 1, f"{mode} let the damage ({damage}) through"
    assert coll.count_documents({"t": rec["t"]}) == 0, "the damaged sample's record or chunks stayed"
    # Its id is handed back: the generation still fills to its cap and swaps in, and every sample read is intact.
    assert Generator(config, seeded(config, seed=100, count=2)).run().committed == 2
    wait_until(lambda: manager.step() or manager.swaps_done == 1, 30, "the swap")
    reader = Reader(config)
    seeds = {sample_seed(reader.dataset[i]) for i in range(3)}
    reader.dataset.close()
    assert damaged_seed not in seeds and len(seeds) == 3


def test_manager_verifies_a_filled_generation_with_one_chunk_query_per_batch(make_config):
    """Verification reads the chunks of up to 256 commits in one query: one query per sample took the server from
    generators at high sample rates."""
    from pymongo import monitoring

    import wirehead_core.manager as manager_module

    config, _ = make_config(swap_cap=300, manager__verify="full")
    chunk_queries: list[dict] = []
    counting = threading.Event()

    class Listener(monitoring.CommandListener):  # registered for every client made from here on: counts only ours
        def started(self, event):
            query = event.command.get("filter") or {}
            if (counting.is_set() and event.database_name == config.mongo.database and event.command_name == "find"
                    and ".gen." in "." + str(event.command.get("find", "")) and "t" in query):
                chunk_queries.append(query["t"])

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    monitoring.register(Listener())
    manager = SwapManager(config)
    manager.step()  # opens generation 0
    assert Generator(config, seeded(config, seed=1, count=300)).run().committed == 300
    counting.set()
    try:
        wait_until(lambda: manager.step() or manager.swaps_done == 1, 60, "the swap")
    finally:
        counting.clear()
    event = Store(config).coll("events").find_one({"_id": 0})
    assert event["committed"] == 300
    per_query = min(manager_module._VERIFY_BATCH_SAMPLES, manager_module._VERIFY_BATCH_BYTES // (8**3 * 5))
    assert 1 <= len(chunk_queries) <= -(-300 // per_query) < 300, f"{len(chunk_queries)} chunk queries for 300"
    assert sum(len(q["$in"]) for q in chunk_queries) == 300


def test_a_blocked_generator_checks_less_often_the_longer_it_waits(make_config):
    config, _ = make_config(generator__poll_s=0.05)
    gen = Generator(config, seeded(config, seed=1, count=1))
    for polls in range(10):
        delay = gen._poll_delay(polls)
        assert 0.5 * 0.05 * min(2 ** polls, 16) <= delay <= 0.05 * min(2 ** polls, 16)
    gen.store.close()


def test_committed_total_counts_a_generation_once_while_its_swap_is_being_published(make_config):
    config, _ = make_config(swap_cap=4)
    at_publish, release = threading.Event(), threading.Event()

    def hook(step: str) -> None:
        if step == "publish" and not release.is_set():
            at_publish.set()
            release.wait(30)

    manager = SwapManager(config, fault_hook=hook)
    thread = threading.Thread(target=manager.run, kwargs={"max_swaps": 1, "duration_s": 60})
    thread.start()
    store = Store(config)
    try:
        Generator(config, seeded(config, seed=1, count=4)).run()
        assert at_publish.wait(30), "the manager never reached the publish step"
        # generation 0's event is written and the swap state still names it the write generation
        assert store.event(0) is not None and store.swap_state()["write_gen"] == 0
        assert store.committed_total() == 4
    finally:
        release.set()
        thread.join(30)
    assert store.swap_state()["write_gen"] == 1 and store.committed_total() == 4
