"""Figures of the training experiments: utilisation over time (the paper's Fig. 2) and Dice over time (Fig. 3).

Each experiment's folder (beside its metrics.json) holds the tracer's ``gpu.csv`` and the trainer's ``train/``
CSVs. A trace without NVML is whole-machine CPU utilisation and is labelled ``cpu-fallback``, never as a GPU.
"""

import csv
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import smk_entry  # beside this script: Snakemake puts its folder on sys.path
from training_tables import PAPER  # noqa: E402

_LOG = logging.getLogger("training_figures")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def busy_over_time(steps: list[dict[str, str]], window_s: float) -> list[tuple[float, float]]:
    """(window start, % of the window spent in optimiser steps), from the trainer's per-step times."""
    if not steps:
        return []
    end = float(steps[-1]["wall_s"])
    count = max(1, int(end // window_s))
    busy = [0.0] * count
    for r in steps:
        busy[min(count - 1, int(float(r["wall_s"]) // window_s))] += float(r["step_s"])
    return [(k * window_s, min(100.0, 100 * b / window_s)) for k, b in enumerate(busy)]


def plot_utilisation(runs: list[tuple[Path, dict[str, Any]]], out: str) -> None:
    """One panel per experiment: the traced device's utilisation and the trainer's busy share over time, their
    means, and the paper's GPU mean."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.2 * len(runs) + 0.6), sharex=True, squeeze=False)
    for ax, (folder, m) in zip(axes[:, 0], runs):
        util = m["utilisation"]
        rows = [r for r in _rows(folder / "gpu.csv") if r["device"] == util["device"] and r["util_percent"]]
        t = [float(r["time_s"]) / 60 for r in rows]
        ax.plot(t, [float(r["util_percent"]) for r in rows], lw=0.8, label=f"{util['source']} {util['device']}")
        if util["mean_percent"] is not None:
            ax.axhline(util["mean_percent"], color="k", ls="--", lw=1, label=f"mean {util['mean_percent']:.1f} %")
        busy = busy_over_time(_rows(folder / "train" / "steps.csv"), m["budget_s"] / 30)
        ax.step([t / 60 for t, _ in busy], [b for _, b in busy], where="post", color="tab:green", lw=1.2,
                label=f"trainer busy (optimiser steps), mean {100 * m['trainer_busy_fraction']:.1f} %")
        paper = PAPER.get(m["paper_row"] or "")
        if paper:
            ax.axhline(paper["gpu"], color="tab:red", ls=":", lw=1.2, label=f"paper GPU mean {paper['gpu']:.1f} %")
        ax.set_title(m["label"], fontsize=10)
        ax.set_ylabel("utilisation %")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("time since training started (min)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _smooth(values: list[float], width: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def plot_dice(runs: list[tuple[Path, dict[str, Any]]], out: str) -> None:
    """Evaluation Dice on real volumes (solid) and training Dice on generated samples (faint) over time."""
    fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for i, (folder, m) in enumerate(runs):
        colour = f"C{i}"
        steps = _rows(folder / "train" / "steps.csv")
        if steps:
            train_ax.plot([float(r["wall_s"]) / 60 for r in steps],
                          _smooth([float(r["train_dice"]) for r in steps], 20), color=colour, lw=1, label=m["label"])
        curve = m["dice_curve"]
        eval_ax.plot([t / 60 for t, _ in curve], [d for _, d in curve], "o-", color=colour, ms=3,
                     label=f"{m['label']} ({m['reads_per_sample']:.1f} reads/sample)")
        paper = PAPER.get(m["paper_row"] or "")
        if paper and curve:
            eval_ax.plot([curve[-1][0] / 60], [paper["dice"]], marker="*", ms=10, color=colour, ls="none",
                         label=f"paper, {paper['label']}: {paper['dice']:.2f} after 5 h")
    train_ax.set_title("training Dice (generated samples, running mean of 20 steps)", fontsize=9)
    eval_ax.set_title("evaluation Dice (real volumes, mean over classes)", fontsize=9)
    for ax in (train_ax, eval_ax):
        ax.set_xlabel("wall-clock training time (min)")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    train_ax.set_ylabel("Dice")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    runs = [(Path(p).parent, json.loads(Path(p).read_text())) for p in smk.input]
    if smk.params.figure == "utilisation":
        plot_utilisation(runs, smk.output[0])
    else:
        plot_dice(runs, smk.output[0])
    _LOG.info("wrote %s", smk.output[0])


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
