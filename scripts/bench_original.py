"""Run the original wirehead 0.9.3 (PyPI) with emulated generators and a reader; print one JSON line of counts.

Run by the Python of a separate virtual environment holding ``wirehead==0.9.3`` (``wirehead bench`` creates it).
The generators yield the same verifiable uint8 samples as ours (the original casts everything to uint8, so uint8
data survives it); the reader checks every byte it gets back.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import time

import numpy as np


def _sample(seed: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    image = rng.integers(0, 256, size=n, dtype=np.uint8)
    label = rng.integers(0, 256, size=n, dtype=np.uint8)
    image[:8] = np.frombuffer(np.uint64(seed).tobytes(), dtype=np.uint8)
    return image.reshape(shape), label.reshape(shape)


def _generator(config_path: str, base: int, cost: float, shape: tuple[int, ...], produced) -> None:
    from wirehead import WireheadGenerator

    def samples():
        i = 0
        while True:
            time.sleep(cost)
            with produced.get_lock():
                produced.value += 1
            yield _sample(base + i, shape)
            i += 1

    with contextlib.redirect_stdout(io.StringIO()):
        WireheadGenerator(samples(), config_path=config_path).run()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--generators", type=int, default=4)
    ap.add_argument("--cost", type=float, default=0.2)
    ap.add_argument("--cap", type=int, default=20)
    ap.add_argument("--duration", type=float, default=45)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shape = (a.size, a.size, a.size)
    cfg = os.path.join(a.workdir, "original.yaml")
    with open(cfg, "w") as fh:
        fh.write(f"MONGOHOST: {a.host}\nPORT: {a.port}\nDBNAME: {a.db}\nSWAP_CAP: {a.cap}\nSAMPLE: [data, label]\n"
                 "WRITE_COLLECTION: write\nREAD_COLLECTION: read\nTEMP_COLLECTION: temp\n"
                 "COUNTER_COLLECTION: counters\nCHUNKSIZE: 10\n")
    produced = mp.Value("q", 0)
    procs = [mp.Process(target=_generator, args=(cfg, (i + 1) * 10**9, a.cost, shape, produced), daemon=True)
             for i in range(a.generators)]
    started = time.time()
    for p in procs:
        p.start()
    from pymongo import MongoClient

    from wirehead import MongoTupleheadDataset

    db = MongoClient(f"mongodb://{a.host}:{a.port}")[a.db]
    reads = corrupt = failed = 0
    read_started = None
    with contextlib.redirect_stdout(io.StringIO()):
        while time.time() - started < a.duration:
            if db["status"].count_documents({"swapped": True}) == 0:
                time.sleep(0.2)
                continue
            try:
                ds = MongoTupleheadDataset(config_path=cfg)
                read_started = read_started or time.time()
                for i in range(a.cap):
                    if time.time() - started >= a.duration:
                        break
                    try:
                        image, label = ds[[i]][0]
                    except Exception:  # noqa: BLE001 - counted
                        failed += 1
                        continue
                    got = image.to(dtype=__import__("torch").uint8).numpy().reshape(-1)
                    seed = int(np.frombuffer(got[:8].tobytes(), dtype=np.uint64)[0])
                    want_image, want_label = _sample(seed, shape)
                    ok = np.array_equal(got, want_image.reshape(-1)) and np.array_equal(
                        label.numpy().astype(np.uint8).reshape(-1), want_label.reshape(-1))
                    reads += 1
                    corrupt += 0 if ok else 1
            except Exception:  # noqa: BLE001 - counted
                failed += 1
                time.sleep(0.2)
    elapsed = time.time() - started
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)
    stamps = sorted(d["swap_timestamp"] for d in db["status"].find({"swapped": True}, {"swap_timestamp": 1}))
    swaps = len(stamps)
    # samples swapped in per second between the first swap and the last (start-up falls before the first), as
    # wirehead_core's status reports its own (`swapped_in_per_s`)
    span = stamps[-1] - stamps[0] if swaps >= 2 else 0.0
    completed = (db["counters"].find_one({"_id": "completed"}) or {}).get("sequence_value", 0)
    committed = swaps * a.cap
    print(json.dumps({
        "elapsed_s": elapsed, "produced": produced.value, "swaps": swaps, "committed_to_read": committed,
        "swapped_in_per_s": (swaps - 1) * a.cap / span if span > 0 else 0.0,
        "in_write_at_end": completed, "discarded": max(0, produced.value - committed - completed - a.generators),
        "reads": reads, "reads_per_s": reads / (time.time() - read_started) if read_started else 0.0,
        "corrupt_reads": corrupt, "failed_reads": failed}))


if __name__ == "__main__":
    main()
