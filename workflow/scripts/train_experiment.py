"""One training experiment (rule train_experiment): Tables I-II, the utilisation and the Dice figures.

``mode: coupled`` trains on brains generated inline (the paper's baseline). ``mode: wirehead`` trains from the cache:
with ``placement: local`` this job starts the manager and the generators beside the trainer; with ``placement:
distributed`` they already run as separate jobs (rule pool_start). Training starts once the cache is readable and
runs for ``training.budget_s`` under the NVML tracer (CPU fallback, labelled, without a GPU). A background thread
samples the cache's committed-sample count, so the generation rate covers exactly the training window.

Writes ``metrics.json``: reads and generation per second as N/T with a batch-means error, reads per sample, mean
utilisation, final and best evaluation Dice.
"""

import contextlib
import csv
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from wirehead_core.config import Config, load_config
from wirehead_core.status import collect_status
from wirehead_core.store import Store
from wirehead_core.throughput import rate_from_counts
from wirehead_core.tracer import Tracer
from wirehead_core.train import train

import experiment_config
import pool
import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("train_experiment")


class CommitSampler:
    """Samples (unix time, samples committed so far) of a cache from a background thread."""

    def __init__(self, config: Config, period_s: float) -> None:
        self.config = config
        self.period_s = period_s
        self.times: list[float] = []
        self.counts: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="commit-sampler", daemon=True)

    def __enter__(self) -> "CommitSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        store = Store(self.config)
        try:
            while True:
                self.sample(store)
                if self._stop.wait(self.period_s):
                    self.sample(store)
                    return
        finally:
            store.close()

    def sample(self, store: Store) -> None:
        """Record the samples swapped in so far plus those committed to the open generations."""
        total = store.committed_total()
        # A swap moves samples from "open" to "swapped" between two queries; the count never goes back.
        self.counts.append(max([total] + self.counts[-1:]))
        self.times.append(time.time())


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file written by the trainer or the tracer."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def utilisation(trace: Path, t_start: float, t_end: float) -> dict[str, Any]:
    """Mean utilisation of the first traced device between two unix times, and what was traced."""
    rows = [r for r in read_rows(trace) if t_start <= float(r["unix_time"]) <= t_end and r["util_percent"]]
    if not rows:
        return {"source": None, "device": None, "mean_percent": None, "samples": 0}
    device = rows[0]["device"]
    values = [float(r["util_percent"]) for r in rows if r["device"] == device]
    return {"source": rows[0]["source"], "device": device, "mean_percent": sum(values) / len(values),
            "samples": len(values)}


def dice_over_time(eval_csv: Path) -> list[tuple[float, float]]:
    """(wall seconds, mean Dice over the evaluation volumes) per evaluation."""
    by_time: dict[float, list[float]] = {}
    for r in read_rows(eval_csv):
        by_time.setdefault(float(r["wall_s"]), []).append(float(r["mean_dice"]))
    return [(t, sum(v) / len(v)) for t, v in sorted(by_time.items())]


def run(smk) -> dict[str, Any]:
    """Run the experiment; returns its metrics."""
    name, spec, training = smk.wildcards.name, dict(smk.params.spec), dict(smk.params.training)
    workdir = Path(smk.params.workdir)
    cfg_path = workdir / "wirehead.yaml"
    wirehead = spec["mode"] == "wirehead"
    placement = spec.get("placement", "local") if wirehead else "inline"
    if placement != "distributed":  # a distributed pool's job wrote it already, with the same content
        uri = Path(smk.input.uri).read_text().strip()
        experiment_config.write(cfg_path, uri, smk.params.database, training, spec)
    config = load_config(cfg_path)
    procs = []
    startup_s = 0.0
    try:
        if wirehead:
            if placement == "local":
                pool.fresh_database(config)
                procs = pool.start_local(cfg_path, spec["generators"], training["source"], workdir / "logs")
            startup_s = pool.wait_ready(config, spec["generators"], training["startup_timeout_s"],
                                        pool.check_alive(procs))
            _LOG.info("cache ready after %.1f s", startup_s)
        period = max(1.0, float(training["budget_s"]) / 100)
        sampler = CommitSampler(config, period) if wirehead else None
        with contextlib.ExitStack() as stack:
            tracer = stack.enter_context(Tracer(workdir / "gpu.csv", hz=training["trace_hz"]))
            if sampler is not None:
                stack.enter_context(sampler)
            t_start = time.time()
            try:
                result = train(config)
            finally:
                t_end = time.time()
        status = collect_status(config) if wirehead else None
    finally:
        codes = pool.stop_local(procs) if procs else []
    out = workdir / "train"
    summary = json.loads((out / "summary.json").read_text())
    steps = read_rows(out / "steps.csv")
    times = [0.0] + [float(r["wall_s"]) for r in steps]
    reads = [0.0] + [float(r["samples_read"]) for r in steps]
    read_rate = rate_from_counts(times, reads, end=max(result.wall_s, times[-1]))
    if sampler is not None and len(sampler.times) >= 2:
        generation = rate_from_counts(sampler.times, sampler.counts, start=sampler.times[0], end=sampler.times[-1])
    else:  # coupled: every sample read was generated inline for it
        generation = read_rate
    curve = dice_over_time(out / "eval.csv")
    return {
        "experiment": name,
        "label": spec.get("label", name),
        "paper_row": spec.get("paper_row"),
        "mode": spec["mode"],
        "placement": placement,
        "generators": spec.get("generators", 1) if wirehead else 1,
        "reuse": config.reuse.policy if wirehead else None,
        "reuse_target": config.reuse.target if wirehead and config.reuse.policy == "target" else None,
        "budget_s": float(training["budget_s"]),
        "startup_s": startup_s,
        "wall_s": result.wall_s,
        "steps": result.steps,
        "samples_read": result.samples_read,
        "unique_samples": result.unique_samples,
        "read_rate": read_rate.as_dict(),
        "generation_rate": generation.as_dict(),
        "reads_per_sample": summary["reads_per_sample_mean"],
        "reads_per_sample_p95": summary["reads_per_sample_p95"],
        "cache_reuse_mean": status.reuse_mean if status else None,
        "cache_reuse_p95": status.reuse_p95 if status else None,
        "data_wait_fraction": summary["data_wait_s"] / result.wall_s if result.wall_s else None,
        "trainer_busy_fraction": summary["compute_s"] / result.wall_s if result.wall_s else None,
        "utilisation": utilisation(workdir / "gpu.csv", t_start, t_end),
        "trace_source": tracer.source,
        "device": summary["device"],
        "grid": summary["grid"],
        "model": summary["model"],
        "final_dice": curve[-1][1] if curve else None,
        "best_dice": max(d for _, d in curve) if curve else None,
        "dice_curve": curve,
        "exit_codes": codes,
    }


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    # A cancelled job (scancel, Ctrl-C) must still stop its generators: turn SIGTERM into an exception.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    metrics = run(smk)
    _LOG.info("%s: %.3f reads/s, %.3f generated/s, %.2f reads per sample, final Dice %s", metrics["experiment"],
              metrics["read_rate"]["per_s"], metrics["generation_rate"]["per_s"], metrics["reads_per_sample"],
              metrics["final_dice"])
    if smk.params.fail:
        raise RuntimeError(f"fail_experiment={metrics['experiment']}: failing on purpose after the run (teardown test)")
    Path(smk.output[0]).write_text(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
