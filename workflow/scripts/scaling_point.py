"""One point of the generator scaling sweep (rule scaling_point, Table III).

Starts the swap manager and N generator processes against this point's own database, waits until every generator
has reported in, measures for a fixed window, stops them (SIGTERM) and writes the rate at which samples reached
the read collection, computed from the swap events that finished inside the window. The generators are emulated
(``wirehead_core.sources:seeded`` with a sleep per sample standing in for GPU generation time) or, with
``scaling.generator: brain``, the real brain generator configured in ``training.brain``.
"""

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from wirehead_core.config import load_config
from wirehead_core.launch import spawn, wirehead_command
from wirehead_core.status import collect_status
from wirehead_core.store import Store

import pool  # beside this script, like smk_entry
import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("scaling_point")


def window_rate(events: list[dict[str, Any]], t0: float, t1: float) -> tuple[float, int]:
    """Samples per second that reached the read collection between the first and last swap inside [t0, t1].

    The first swap in the window only opens it: its samples were written before, so they do not count.
    Returns ``(rate, swaps in the window)``; the rate is 0 with fewer than two swaps.
    """
    inside = [e for e in events if t0 <= e["finished_at"] <= t1]
    if len(inside) < 2:
        return 0.0, len(inside)
    span = inside[-1]["finished_at"] - inside[0]["finished_at"]
    return (sum(e["committed"] for e in inside[1:]) / span if span > 0 else 0.0), len(inside)


def cache_config(path: Path, uri: str, database: str, p) -> Path:
    """Write the cache config this point's processes share."""
    brain = p.generator == "brain"
    shape = [int(p.brain["grid"])] * 3 if brain else list(p.shape)
    data = {
        "mongo": {"uri": uri, "database": database, "namespace": "wh"},
        "swap_cap": p.swap_cap,
        "fields": [{"name": "image", "dtype": "float32", "shape": shape},
                   {"name": "label", "dtype": "uint8", "shape": shape}],
        "manager": {"reservation_timeout_s": 10.0},
    }
    if brain:
        data["brain"] = dict(p.brain)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def generator_command(i: int, cfg_path: Path, p) -> list[str]:
    """argv of generator `i` of the point: the emulated source with its sleep, or the configured real source."""
    common = ["generate", "--config", str(cfg_path), "--seed", str((i + 1) * 10**9), "--name", f"gen-{i}"]
    if p.generator == "brain":
        return wirehead_command(*common, "--source", p.source)
    return wirehead_command(*common, "--source", "wirehead_core.sources:seeded",
                            "--arg", f"delay_s={p.emulated_cost_s}")


def run_point(n: int, uri: str, workdir: Path, p) -> dict[str, Any]:
    """Run the manager and `n` generators, measure, stop them; returns the point's result."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = cache_config(workdir / "cache.yaml", uri, p.database, p)
    config = load_config(cfg_path)
    pool.fresh_database(config)  # a rerun on the same server starts from an empty database
    procs = [spawn(wirehead_command("manager", "--config", str(cfg_path), "--name", f"manager-n{n}"),
                   workdir / "manager.log")]
    try:
        for i in range(n):
            procs.append(spawn(generator_command(i, cfg_path, p), workdir / f"generator-{i}.log"))
        deadline = time.monotonic() + p.startup_timeout_s
        while True:
            dead = [proc.args for proc in procs if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"a process exited during start-up: {dead[0]} (logs in {workdir})")
            alive = collect_status(config).generators_alive
            if alive >= n:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {alive} of {n} generators reported in within {p.startup_timeout_s} s")
            time.sleep(0.5)
        t0 = time.time()
        _LOG.info("%d generators up; measuring for %.0f s", n, p.duration_s)
        time.sleep(p.duration_s)
        t1 = time.time()
        store = Store(config)
        try:
            events = store.snapshot()["events"]
        finally:
            store.close()
        status = collect_status(config)
    finally:
        codes = pool.stop_local(procs)
    rate, swaps = window_rate(events, t0, t1)
    real = p.generator == "brain"
    if swaps < 2:
        raise RuntimeError(f"only {swaps} swaps in the {p.duration_s} s window: lengthen scaling.duration_s "
                           f"or lower cache.swap_cap")
    return {
        "generators": n,
        "samples_per_s": rate,
        "swaps_in_window": swaps,
        "window_s": t1 - t0,
        "emulated": not real,
        "emulated_cost_s": None if real else p.emulated_cost_s,
        "generator_label": (f"{p.source}, {p.brain['grid']}^3 on {p.brain.get('device', 'cpu')}" if real
                            else f"emulated ({p.emulated_cost_s:g} s sleep/sample)"),
        "ideal_samples_per_s": n / p.emulated_cost_s if not real and p.emulated_cost_s > 0 else None,
        "swap_cap": p.swap_cap,
        "shape": [int(p.brain["grid"])] * 3 if real else list(p.shape),
        "database": p.database,
        "exit_codes": codes,
        # What `wirehead status --json` reports for the whole run (start-up included).
        "status": {k: getattr(status, k) for k in ("swaps", "swapped_in_per_s", "committed_per_s", "committed",
                                                    "produced", "blocked_s", "lost_after_commit")},
    }


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    # A cancelled job (scancel, Ctrl-C) must still stop its generators: turn SIGTERM into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n = int(smk.wildcards.n)
    uri = Path(smk.input.uri).read_text().strip()
    result = run_point(n, uri, Path(smk.params.workdir), smk.params)
    _LOG.info("n=%d: %.3f samples/s in %d swaps", n, result["samples_per_s"], result["swaps_in_window"])
    if smk.params.fail:
        raise RuntimeError(f"fail_point={n}: failing on purpose after the run (teardown test)")
    Path(smk.output[0]).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
