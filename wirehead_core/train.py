"""The trainer: a segmentation network trained on synthetic brains for a wall-clock budget.

Data come either from the brain generator called inline (``mode: coupled``, the paper's baseline) or from the
wirehead cache through `wirehead_core.dataset.WireheadDataset` (``mode: wirehead``). Every ``train.eval.every_s``
seconds the model is evaluated on real volumes (`wirehead_core.evaldata`). Under the output directory it writes
``steps.csv`` (one row per logged step), ``eval.csv`` (one row per evaluation and volume), ``checkpoint.pt``,
``summary.json`` and ``dice.png``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import dataclasses
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from wirehead_core.brain import CLASS_NAMES, BrainGenerator
from wirehead_core.errors import ConfigError
from wirehead_core.evaldata import EvalVolume, evaluation_paths, evaluation_volumes
from wirehead_core.metrics import DiceCELoss, dice_per_class
from wirehead_core.models import build_model, count_parameters
from wirehead_core.paper_config import BrainConfig, TrainConfig, brain_config, train_config

__all__ = [
    "TrainResult",
    "normalise_intensity",
    "crop_patch",
    "lr_factor",
    "parse_duration",
    "train",
    "plot_dice_curve",
    "add_cli",
]

logger = logging.getLogger(__name__)

STEP_COLUMNS = ["wall_s", "step", "samples_read", "unique_samples", "reads_per_sample", "loss", "train_dice", "lr",
                "data_s", "step_s"]


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        steps: optimiser steps taken.
        samples_read: samples consumed (steps × batch size).
        unique_samples: distinct sample ids among them.
        wall_s: wall-clock seconds of the run (evaluations included).
        final_dice: last evaluation per volume: ``{volume: {class_name: dice, ..., "mean": dice}}``.
        output_dir: where the files are.
    """

    steps: int
    samples_read: int
    unique_samples: int
    wall_s: float
    final_dice: dict[str, dict[str, float]]
    output_dir: Path


def normalise_intensity(image: torch.Tensor, quantiles: tuple[float, float] = (0.0, 0.999)) -> torch.Tensor:
    """Clip each volume of a batch (B, C, ...) to its [low, high] intensity quantiles and scale that to [0, 1].

    Applied identically to training samples and evaluation volumes. The default keeps the minimum: synthetic
    backgrounds cover ~90 % of a 256 mm field of view, so a 2 % / 98 % clip would fall inside the background's
    intensity spread and flatten the brain to 0 or 1 whenever the background is bright.
    """
    flat = image.reshape(image.shape[0], -1).float()
    n = flat.shape[1]
    lo_k = min(n, max(1, int(round(quantiles[0] * (n - 1))) + 1))
    hi_k = min(n, max(1, int(round(quantiles[1] * (n - 1))) + 1))
    lo = flat.kthvalue(lo_k, dim=1).values
    hi = flat.kthvalue(hi_k, dim=1).values
    shape = (image.shape[0],) + (1,) * (image.ndim - 1)
    lo, hi = lo.view(shape), hi.view(shape)
    return ((image.float() - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


def crop_patch(image: torch.Tensor, label: torch.Tensor, size: int,
               generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random `size`³ crop of a batch (image (B, C, X, Y, Z), label (B, X, Y, Z)).

    Along each axis the crop holds the whole labelled foreground of the first sample when it fits, else at least
    the foreground's centre. Volumes not larger than `size` are returned whole.
    """
    spatial = label.shape[1:]
    if size <= 0 or all(s <= size for s in spatial):
        return image, label
    fg = (label[0] > 0).nonzero()
    if fg.numel():
        first, last = fg.min(0).values.tolist(), fg.max(0).values.tolist()
    else:
        first = last = [s // 2 for s in spatial]
    starts, sizes = [], []
    for a, b, s in zip(first, last, spatial):
        p = min(size, s)
        lo, hi = max(0, b - p + 1), min(s - p, a)  # crops holding the whole foreground extent
        if lo > hi:
            c = (a + b) // 2
            lo, hi = max(0, c - p + 1), min(s - p, c)  # crops holding its centre
        starts.append(int(torch.randint(lo, hi + 1, (1,), generator=generator)))
        sizes.append(p)
    (x, y, z), (px, py, pz) = starts, sizes
    return image[..., x:x + px, y:y + py, z:z + pz], label[..., x:x + px, y:y + py, z:z + pz]


def lr_factor(schedule: str, fraction: float, warmup_frac: float = 0.05, min_frac: float = 0.05) -> float:
    """Learning-rate multiplier at `fraction` (0..1) of the wall-clock budget."""
    f = min(max(fraction, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "warmup_cosine" and f < warmup_frac:
        return max(f / warmup_frac, 0.01)
    if schedule == "warmup_cosine":
        f = (f - warmup_frac) / (1.0 - warmup_frac)
    elif schedule != "cosine":
        raise ConfigError(f"train.lr_schedule: expected constant, cosine or warmup_cosine, got {schedule!r}")
    return min_frac + (1.0 - min_frac) * 0.5 * (1.0 + math.cos(math.pi * f))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|hr)?\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``90``, ``90s``, ``20m``, ``1.5h``."""
    m = _DURATION.match(str(text))
    if not m:
        raise ConfigError(f"train.budget_s: expected a duration like 600, 90s, 20m or 1.5h, got {text!r}")
    unit = (m.group(2) or "s").lower()
    value = float(m.group(1)) * {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}[unit]
    if value <= 0:
        raise ConfigError(f"train.budget_s: expected a duration > 0, got {text!r}")
    return value


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name} requested but CUDA is not available")
    return device


def _coupled_batches(brain: BrainConfig, train: TrainConfig) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches drawn inline from the brain generator; every sample is new (key = [0, running id])."""
    generator = BrainGenerator(brain, seed=train.seed, forbidden=evaluation_paths(train))
    sample_id = 0
    while True:
        images, labels = [], []
        for _ in range(train.batch_size):
            image, label = generator.sample()
            images.append(image)
            labels.append(label)
        keys = torch.tensor([[0, sample_id + i] for i in range(train.batch_size)], dtype=torch.int64)
        sample_id += train.batch_size
        yield torch.stack(images), torch.stack(labels), keys


def _wirehead_batches(config: Any, train: TrainConfig, pin: bool) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches read from the wirehead cache; each item is (image, label, key[generation, sample_id])."""
    from torch.utils.data import DataLoader

    from wirehead_core.dataset import WireheadDataset

    dataset = WireheadDataset(config, return_key=True)
    loader = DataLoader(dataset, batch_size=train.batch_size, num_workers=train.num_workers, pin_memory=pin,
                        persistent_workers=train.num_workers > 0)
    while True:  # a finite (map-style) dataset is read again from the start
        got = False
        for image, label, key in loader:
            got = True
            yield image, label, key
        if not got:
            raise ConfigError("train.mode: wirehead dataset yielded no samples")


class _CsvLog:
    """A CSV file written row by row and flushed, so a killed run keeps what it measured."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.columns = columns
        self._fh = open(path, "w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(columns)
        self._fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow([_fmt(row.get(c)) for c in self.columns])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return str(value)


@torch.no_grad()
def _evaluate(model: torch.nn.Module, volumes: list[EvalVolume], n_classes: int, train: TrainConfig,
              device: torch.device, amp: bool,
              memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, list[float]]:
    """Per volume: per-class Dice followed by the mean (background and classes absent from both excluded)."""
    was_training = model.training
    model.eval()
    out = {}
    try:
        for vol in volumes:
            image = torch.as_tensor(vol.image, device=device)[None, None]
            image = normalise_intensity(image, tuple(train.normalise_quantiles)).contiguous(memory_format=memory_format)
            with _autocast(device, amp):
                logits = model(image)
            pred = logits.argmax(1)[0].cpu()
            result = dice_per_class(pred, torch.as_tensor(vol.label), n_classes)
            out[vol.name] = result.per_class + [result.mean]
    finally:
        model.train(was_training)
    return out


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train(config: Any, *, budget_s: Optional[float] = None, mode: Optional[str] = None,
          output_dir: Optional[str | Path] = None, progress: Optional[bool] = None) -> TrainResult:
    """Train for a wall-clock budget and evaluate on real volumes; the keyword arguments override the config.

    Args:
        config: the wirehead `Config` (sections ``brain:`` and ``train:``; defaults where absent).
        budget_s: wall-clock budget in seconds.
        mode: ``coupled`` or ``wirehead``.
        output_dir: results directory (created).
        progress: show a tqdm progress bar on stderr.
    """
    brain = brain_config(config)
    tcfg = train_config(config)
    overrides = {k: v for k, v in (("budget_s", budget_s), ("mode", mode), ("output_dir", output_dir),
                                   ("progress", progress)) if v is not None}
    if overrides:
        tcfg = dataclasses.replace(tcfg, **{k: (str(v) if k == "output_dir" else v) for k, v in overrides.items()})
        tcfg.validate("train")
    if tcfg.mode not in ("coupled", "wirehead"):
        raise ConfigError(f"train.mode: expected coupled or wirehead, got {tcfg.mode!r}")
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    device = _resolve_device(tcfg.device)
    amp = tcfg.amp == "on" or (tcfg.amp == "auto" and device.type == "cuda")
    n_classes = brain.n_classes
    names = CLASS_NAMES[brain.labels]
    out = Path(tcfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    volumes = evaluation_volumes(tcfg, brain.grid, brain.labels)
    if not volumes:
        logger.warning("no evaluation volumes configured: training without evaluation")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(tcfg.seed)
        model = build_model(tcfg, n_classes).to(device)
    memory_format = torch.channels_last_3d if tcfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    logger.info("model %s: %d parameters on %s, amp=%s", tcfg.model, count_parameters(model), device, amp)
    optimiser = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    loss_fn = DiceCELoss(dice_weight=0.0 if tcfg.loss == "ce" else 1.0,
                         ce_weight=0.0 if tcfg.loss == "dice" else 1.0).to(device)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None
    batches = (_coupled_batches(brain, tcfg) if tcfg.mode == "coupled"
               else _wirehead_batches(config, tcfg, pin=device.type == "cuda"))

    step_log = _CsvLog(out / "steps.csv", STEP_COLUMNS)
    eval_columns = ["wall_s", "step", "samples_read", "volume"] + [f"dice_{n}" for n in names] + ["mean_dice"]
    eval_log = _CsvLog(out / "eval.csv", eval_columns)
    bar = None
    if tcfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=round(tcfg.budget_s), unit="s", desc=f"train[{tcfg.mode}]", file=sys.stderr,
                   dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f}s {postfix}")

    seen: collections.Counter[tuple[int, int]] = collections.Counter()
    data_wait = compute = 0.0
    crop_rng = torch.Generator().manual_seed(tcfg.seed)
    step = samples = 0
    final: dict[str, dict[str, float]] = {}
    start = time.monotonic()
    last_eval = start
    elapsed = 0.0

    def run_eval() -> None:
        scores = _evaluate(model, volumes, n_classes, tcfg, device, amp, memory_format)
        now = time.monotonic() - start
        for name, values in scores.items():
            row = {"wall_s": now, "step": step, "samples_read": samples, "volume": name, "mean_dice": values[-1]}
            row.update({f"dice_{n}": v for n, v in zip(names, values[:-1])})
            eval_log.write(row)
            final[name] = {**{n: v for n, v in zip(names, values[:-1])}, "mean": values[-1]}
            logger.info("eval %s at %.0fs step %d: mean Dice %.3f, reads per sample %.2f", name, now, step,
                        values[-1], samples / len(seen) if seen else 0.0)
        _save_checkpoint(out / "checkpoint.pt", model, optimiser, step, samples, brain, tcfg)

    try:
        model.train()
        while elapsed < tcfg.budget_s:
            t0 = time.monotonic()
            image, label, key = next(batches)
            image = image.to(device, non_blocking=True).float()
            if image.ndim == 4:
                image = image[:, None]
            label = label.to(device, non_blocking=True).long()
            seen.update(map(tuple, key.reshape(-1, 2).tolist()))
            data_wait += time.monotonic() - t0
            image, label = crop_patch(image, label, tcfg.patch, crop_rng)
            image = normalise_intensity(image, tuple(tcfg.normalise_quantiles))
            image = image.contiguous(memory_format=memory_format)
            t1 = time.monotonic()
            lr = tcfg.lr * lr_factor(tcfg.lr_schedule, (t1 - start) / tcfg.budget_s, tcfg.warmup_frac,
                                     tcfg.min_lr_frac)
            for group in optimiser.param_groups:
                group["lr"] = lr
            optimiser.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                logits = model(image)
                loss = loss_fn(logits, label)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
            step += 1
            samples += image.shape[0]
            t2 = time.monotonic()
            compute += t2 - t1
            elapsed = t2 - start
            if step % tcfg.log_every_steps == 0:
                train_dice = dice_per_class(logits.detach().argmax(1), label, n_classes).mean
                step_log.write({"wall_s": elapsed, "step": step, "samples_read": samples,
                                "unique_samples": len(seen), "reads_per_sample": samples / len(seen), "loss": float(loss.detach()),
                                "train_dice": train_dice, "lr": lr, "data_s": t1 - t0, "step_s": t2 - t1})
            if bar is not None:
                bar.n = min(elapsed, tcfg.budget_s)
                bar.set_postfix_str(f"{step / elapsed:.2f} step/s {samples / elapsed:.2f} samples/s "
                                    f"loss {float(loss.detach()):.3f}", refresh=True)
            if volumes and time.monotonic() - last_eval >= tcfg.eval.every_s:
                run_eval()
                last_eval = time.monotonic()
                elapsed = last_eval - start
        if volumes:
            run_eval()
        else:
            _save_checkpoint(out / "checkpoint.pt", model, optimiser, step, samples, brain, tcfg)
    finally:
        step_log.close()
        eval_log.close()
        if bar is not None:
            bar.close()
        close = getattr(batches, "close", None)
        if close is not None:
            close()

    wall = time.monotonic() - start
    result = TrainResult(step, samples, len(seen), wall, final, out)
    summary = {
        "mode": tcfg.mode, "model": tcfg.model, "parameters": count_parameters(model), "device": str(device),
        "grid": brain.grid, "labels": brain.labels, "steps": step, "samples_read": samples,
        "unique_samples": len(seen), "wall_s": wall, "steps_per_s": step / wall if wall else 0.0,
        # How often the trainer saw each distinct sample (the reuse the paper's section VII-B warns about).
        "reads_per_sample_mean": samples / len(seen) if seen else 0.0,
        "reads_per_sample_p95": _p95(list(seen.values())),
        "data_wait_s": data_wait,
        # Time in optimiser steps: over wall_s, the trainer's analogue of the paper's GPU utilisation.
        "compute_s": compute,
        "final_dice": final,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")
    if volumes:
        plot_dice_curve(out / "eval.csv", out / "dice.png")
    return result


def _p95(values: list[int]) -> float:
    """The 95th percentile (nearest rank) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)])


def _save_checkpoint(path: Path, model: torch.nn.Module, optimiser: torch.optim.Optimizer, step: int,
                     samples: int, brain: BrainConfig, tcfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimiser.state_dict(), "step": step,
                "samples_read": samples, "brain": dataclasses.asdict(brain), "train": dataclasses.asdict(tcfg)}, tmp)
    tmp.replace(path)


def plot_dice_curve(eval_csv: str | Path, png: str | Path) -> Optional[Path]:
    """Plot per-class and mean Dice over wall-clock time from an ``eval.csv``; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no Dice plot written")
        return None
    with open(eval_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for volume in sorted({r["volume"] for r in rows}):
        sel = [r for r in rows if r["volume"] == volume]
        t = np.array([float(r["wall_s"]) for r in sel]) / 60.0
        for col in [c for c in sel[0] if c.startswith("dice_") and c != "dice_background"] + ["mean_dice"]:
            ax.plot(t, [float(r[col]) for r in sel], marker="o", ms=3, lw=2.5 if col == "mean_dice" else 1.2,
                    label=f"{volume}: {col.removeprefix('dice_')}")
    ax.set_xlabel("wall-clock time (min)")
    ax.set_ylabel("Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


def _cli_train(args: argparse.Namespace) -> int:
    from wirehead_core.config import load_config

    overrides: dict[str, Any] = {}
    if args.budget is not None:
        overrides["train.budget_s"] = parse_duration(args.budget)
    for flag, key in (("mode", "train.mode"), ("output_dir", "train.output_dir"), ("model", "train.model"),
                      ("device", "train.device"), ("seed", "train.seed")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.no_progress:
        overrides["train.progress"] = False
    config = load_config(args.config, overrides)
    result = train(config)
    for volume, scores in result.final_dice.items():
        logger.info("final %s: %s", volume, ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return 0


def add_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to an argparse subparsers object (``args.func(args) -> int``)."""
    p = subparsers.add_parser("train", help="train a segmentation model on synthetic brains for a time budget",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", required=True, help="wirehead YAML config with brain: and train: sections")
    p.add_argument("--budget", help="wall-clock budget (600, 90s, 20m, 1.5h); overrides train.budget_s")
    p.add_argument("--mode", choices=["coupled", "wirehead"], help="overrides train.mode")
    p.add_argument("--output-dir", dest="output_dir", help="overrides train.output_dir")
    p.add_argument("--model", choices=["meshnet", "unet"], help="overrides train.model")
    p.add_argument("--device", help="overrides train.device (auto, cpu, cuda, cuda:N)")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_train)
    return p
