"""The generator scaling figure: our samples/s against the ideal line, and scale factors beside the paper's."""

import csv
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import smk_entry  # beside this script: Snakemake puts its folder on sys.path

_LOG = logging.getLogger("scaling_figure")


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) if r[key] not in ("", "None") else float("nan") for r in rows]


def plot(rows: list[dict[str, str]], out: str) -> None:
    """Two panels: samples/s (ours, ideal) and scale factor (ours, paper, ideal) over the generator count."""
    n = [int(r["generators"]) for r in rows]
    ours = _floats(rows, "samples_per_s")
    label = f"ours, {rows[0]['generator']}"
    per_generator = ours[0] / n[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(n, ours, "o-", label=label)
    left.plot(n, [per_generator * k for k in n], "k--", label="ideal (linear)")
    left.set_xlabel("generator processes")
    left.set_ylabel("samples committed to the read collection / s")
    left.set_title(f"Throughput ({rows[0]['generator']})", fontsize=9)
    right.plot(n, _floats(rows, "scale_factor"), "o-", label=label)
    paper = _floats(rows, "paper_scale_factor")
    if any(v == v for v in paper):  # not all NaN
        right.plot(n, paper, "s-", label="paper (GPU generation)")
    right.plot(n, n, "k--", label="ideal")
    right.set_xlabel("generator processes")
    right.set_ylabel("scale factor over one generator")
    right.set_title("Scaling")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(k) for k in n])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(smk) -> None:
    """Entry point under Snakemake's ``script:`` directive."""
    with open(smk.input[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    plot(rows, smk.output[0])
    _LOG.info("wrote %s", smk.output[0])


if __name__ == "__main__":
    smk_entry.run(main, snakemake)  # noqa: F821 (injected by Snakemake)
