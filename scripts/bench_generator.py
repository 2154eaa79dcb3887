"""Benchmark the synthetic brain generator: seconds per sample at several grid sizes (median of repeats).

Usage: python scripts/bench_generator.py [--grids 64 128 256] [--repeats 3] [--device cpu]
       [--out results/paper_components/generator_speed.csv]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from wirehead_core.brain import BrainGenerator, load_label_map
from wirehead_core.paper_config import BrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--labels", default="tissue", choices=["tissue", "paper18"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--out", default="results/paper_components/generator_speed.csv")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    label_map = load_label_map("ibsr")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for grid in args.grids:
        cfg = dataclasses.replace(BrainConfig(), grid=grid, labels=args.labels, device=args.device)
        gen = BrainGenerator(cfg, seed=0, label_maps=[label_map])
        gen.sample()  # warm-up: allocator, oneDNN/cuDNN kernels
        sync(device)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gen.sample()
            sync(device)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        row = {"grid": grid, "voxel_mm": 256 / grid, "device": str(device), "threads": torch.get_num_threads(),
               "repeats": args.repeats, "median_s": round(med, 4), "min_s": round(min(times), 4),
               "max_s": round(max(times), 4), "samples_per_s": round(1 / med, 3),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "load_avg_1m": round(os.getloadavg()[0], 2), "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__}
        rows.append(row)
        print(f"{grid}^3: median {med:.3f} s/sample ({1 / med:.2f} samples/s) over {args.repeats}", file=sys.stderr)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
