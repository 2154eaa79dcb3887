"""Tables I and II of the paper from the training experiments' metrics, ours beside the published values.

Table I: samples read per second by the trainer (N/T, ± the batch-means standard error), the speed-up over the
coupled run, reads per sample and the final evaluation Dice. Table II: samples generated per second (committed to
the cache during the training window; inline generation for the coupled run). Rows follow the config's order;
``paper_row`` (coupled, local, distributed) picks the published row shown beside ours.
"""

import csv
import json
import logging
from pathlib import Path
from typing import Any, Optional

import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("training_tables")

#: Doan & Plis, Tables I and II (samples/s, uncertainty) and section VI (mean GPU utilisation %, final eval Dice).
PAPER: dict[str, dict[str, Any]] = {
    "coupled": {"label": "Coupled", "read": (0.21, 0.01), "generated": (0.21, 0.01), "gpu": 34.76, "dice": 0.39},
    "local": {"label": "Local Wirehead", "read": (0.74, 0.18), "generated": (0.21, 0.00), "gpu": 89.27, "dice": 0.28},
    "distributed": {"label": "Distributed Wirehead", "read": (0.75, 0.06), "generated": (0.25, 0.00), "gpu": 87.48,
                    "dice": 0.80},
}

COLUMNS = {
    "table1": ["experiment", "mode", "placement", "generators", "reuse", "samples_per_s", "uncertainty", "speedup",
               "reads_per_sample", "cache_reads_per_sample", "cache_reads_per_sample_p95", "final_dice", "trainer_busy_percent",
               "utilisation_percent", "utilisation_source", "paper_samples_per_s", "paper_uncertainty", "paper_speedup", "paper_dice",
               "paper_utilisation_percent"],
    "table2": ["experiment", "mode", "placement", "generators", "samples_per_s", "uncertainty", "speedup",
               "paper_samples_per_s", "paper_uncertainty", "paper_speedup"],
}


def _r(value: Optional[float], digits: int = 3) -> Optional[float]:
    return None if value is None else round(value, digits)


def _baseline(metrics: list[dict[str, Any]], key: str) -> Optional[float]:
    coupled = [m for m in metrics if m["mode"] == "coupled"]
    return coupled[0][key]["per_s"] if coupled else None


def _reuse(m: dict[str, Any]) -> str:
    if m["reuse"] is None:
        return "-"
    return f"target {m['reuse_target']:g}" if m["reuse"] == "target" else m["reuse"]


def build_rows(metrics: list[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    """The rows of Table I (``table1``) or Table II (``table2``)."""
    key = "read_rate" if table == "table1" else "generation_rate"
    paper_key = "read" if table == "table1" else "generated"
    base = _baseline(metrics, key)
    paper_base = PAPER["coupled"][paper_key][0]
    rows = []
    for m in metrics:
        rate = m[key]
        paper = PAPER.get(m["paper_row"] or "")
        row = {
            "experiment": m["label"], "mode": m["mode"], "placement": m["placement"], "generators": m["generators"],
            "samples_per_s": _r(rate["per_s"]), "uncertainty": _r(rate["stderr"]),
            "speedup": _r(rate["per_s"] / base, 2) if base else None,
            "paper_samples_per_s": paper[paper_key][0] if paper else None,
            "paper_uncertainty": paper[paper_key][1] if paper else None,
            "paper_speedup": round(paper[paper_key][0] / paper_base, 2) if paper else None,
        }
        if table == "table1":
            util = m["utilisation"]
            row.update(reuse=_reuse(m), reads_per_sample=_r(m["reads_per_sample"], 2),
                       cache_reads_per_sample=_r(m["cache_reuse_mean"], 2),
                       cache_reads_per_sample_p95=_r(m["cache_reuse_p95"], 2),
                       final_dice=_r(m["final_dice"]),
                       trainer_busy_percent=_r(100 * m["trainer_busy_fraction"], 1),
                       utilisation_percent=_r(util["mean_percent"], 1), utilisation_source=util["source"],
                       paper_dice=paper["dice"] if paper else None, paper_utilisation_percent=paper["gpu"] if paper
                       else None)
        rows.append(row)
    return rows


def _cell(value: Any, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def to_markdown(rows: list[dict[str, Any]], metrics: list[dict[str, Any]], table: str) -> str:
    """The table as Markdown with a note on how it was measured."""
    m0 = metrics[0]
    setting = (f"Ours: {m0['grid']}³ synthetic brains, {m0['model']} on {m0['device']}, "
               f"{m0['budget_s']:.0f} s training budget per experiment. Paper: 256³, A100 GPU, 5 hours.")
    if table == "table1":
        lines = [
            "# Table I: samples read per second by the trainer",
            "",
            setting + " Samples/s is N/T (samples read over the training time) ± the standard error of 10 equal "
            "sub-windows; reads/sample: how often the trainer saw each distinct sample it read, and how often the "
            "cache served each committed sample of the generations that were read (mean, p95); busy is the share of "
            "the training time spent in optimiser steps rather than waiting for data or evaluating (what GPU "
            "utilisation measures in the paper); utilisation is the traced device's mean (cpu-fallback = "
            "whole-machine CPU, not a GPU).",
            "",
            "| experiment | reuse | ours: samples/s | ours: speed-up | reads/sample: trainer | reads/sample: cache "
            "(p95) | final eval Dice | trainer busy % | utilisation % (source) | paper: samples/s | paper: speed-up "
            "| paper: Dice | paper: GPU % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['experiment']} | {r['reuse']} | {r['samples_per_s']:.3f} ± {r['uncertainty']:.3f} "
                f"| {_cell(r['speedup'], '{:.2f}x')} | {r['reads_per_sample']:.2f} "
                f"| {_cell(r['cache_reads_per_sample'], '{:.2f}')} ({_cell(r['cache_reads_per_sample_p95'], '{:g}')}) "
                f"| {_cell(r['final_dice'], '{:.3f}')} "
                f"| {_cell(r['trainer_busy_percent'], '{:.1f}')} | {_cell(r['utilisation_percent'], '{:.1f}')} ({r['utilisation_source']}) "
                f"| {_cell(r['paper_samples_per_s'])} ± {_cell(r['paper_uncertainty'])} "
                f"| {_cell(r['paper_speedup'], '{:.2f}x')} | {_cell(r['paper_dice'])} "
                f"| {_cell(r['paper_utilisation_percent'])} |")
    else:
        lines = [
            "# Table II: samples generated per second",
            "",
            setting + " Wirehead rows count samples committed to the cache during the training window (N/T ± the "
            "standard error of 10 sub-windows); the coupled row generates inline, one sample per sample read.",
            "",
            "| experiment | generators | ours: samples/s | ours: speed-up | paper: samples/s | paper: speed-up |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['experiment']} | {r['generators']} | {r['samples_per_s']:.3f} ± {r['uncertainty']:.3f} "
                f"| {_cell(r['speedup'], '{:.2f}x')} | {_cell(r['paper_samples_per_s'])} ± "
                f"{_cell(r['paper_uncertainty'])} | {_cell(r['paper_speedup'], '{:.2f}x')} |")
    return "\n".join(lines) + "\n"


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    metrics = [json.loads(Path(path).read_text()) for path in smk.input]
    table = smk.params.table
    rows = build_rows(metrics, table)
    with open(smk.output.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS[table])
        writer.writeheader()
        writer.writerows(rows)
    Path(smk.output.md).write_text(to_markdown(rows, metrics, table))
    _LOG.info("wrote %s with %d rows", smk.output.md, len(rows))


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
