"""Table III: generator scaling, ours (emulated or real generator, as configured) beside the paper's values.

Reads the sweep points' JSON results and writes the table as CSV and Markdown. The scale factor is relative to the
smallest generator count in the sweep (per generator), the efficiency is the scale factor over the count.
"""

import csv
import json
import logging
from pathlib import Path
from typing import Any, Optional

import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("table3_scaling")

#: Table III of Doan & Plis (samples/s and scale factor over one generator), real GPU brain generation.
PAPER_TABLE3: dict[int, tuple[float, float]] = {
    1: (0.25, 1.00),
    2: (0.50, 1.99),
    4: (0.98, 3.91),
    8: (1.95, 7.75),
    16: (3.94, 15.70),
}

COLUMNS = ["generators", "generator", "samples_per_s", "scale_factor", "efficiency", "ideal_samples_per_s",
           "swaps_in_window", "paper_samples_per_s", "paper_scale_factor", "paper_efficiency"]


def build_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per generator count, sorted; ours and the paper's values side by side."""
    points = sorted(points, key=lambda p: p["generators"])
    base = points[0]
    per_generator = base["samples_per_s"] / base["generators"]
    rows = []
    for p in points:
        n = p["generators"]
        scale = p["samples_per_s"] / per_generator if per_generator > 0 else 0.0
        paper: Optional[tuple[float, float]] = PAPER_TABLE3.get(n)
        rows.append({
            "generators": n,
            "generator": p["generator_label"],
            "samples_per_s": round(p["samples_per_s"], 3),
            "scale_factor": round(scale, 2),
            "efficiency": round(scale / n, 3),
            "ideal_samples_per_s": None if p["ideal_samples_per_s"] is None else round(p["ideal_samples_per_s"], 3),
            "swaps_in_window": p["swaps_in_window"],
            "paper_samples_per_s": paper[0] if paper else None,
            "paper_scale_factor": paper[1] if paper else None,
            "paper_efficiency": round(paper[1] / n, 3) if paper else None,
        })
    return rows


def _fmt(value: Any) -> str:
    return "–" if value is None else str(value)


def to_markdown(rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> str:
    """The table as Markdown, with a note on the emulated generator and the measurement."""
    p0 = points[0]
    what = (f"each generator sleeps {p0['emulated_cost_s']:g} s per sample (standing in for GPU generation) and "
            if p0["emulated"] else f"each generator runs {p0['generator_label']} and ")
    lines = [
        "# Table III: generator scaling" + (" (EMULATED generator)" if p0["emulated"] else ""),
        "",
        f"Ours: {what}"
        f"writes {'x'.join(map(str, p0['shape']))} float32 image + uint8 label samples; samples committed to the "
        f"read collection per second from swap events in a {p0['window_s']:.0f} s window, swap_cap "
        f"{p0['swap_cap']}. Paper: real GPU brain generation (Doan & Plis, Table III).",
        "",
        "| generators | ours: samples/s | ours: scale factor | ours: efficiency | ideal samples/s "
        "| paper: samples/s | paper: scale factor | paper: efficiency |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        paper_scale = "–" if r["paper_scale_factor"] is None else f"{r['paper_scale_factor']:.2f}x"
        paper_rate = "–" if r["paper_samples_per_s"] is None else f"{r['paper_samples_per_s']:.2f}"
        lines.append(
            f"| {r['generators']} | {r['samples_per_s']:.3f} | {r['scale_factor']:.2f}x | {r['efficiency']:.3f} "
            f"| {_fmt(r['ideal_samples_per_s'])} | {paper_rate} | {paper_scale} | {_fmt(r['paper_efficiency'])} |")
    return "\n".join(lines) + "\n"


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    points = [json.loads(Path(path).read_text()) for path in smk.input]
    rows = build_rows(points)
    with open(smk.output.csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    Path(smk.output.md).write_text(to_markdown(rows, sorted(points, key=lambda p: p["generators"])))
    _LOG.info("wrote %d rows", len(rows))


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
