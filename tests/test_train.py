"""Specification of the trainer (wirehead_core.train), coupled mode (the generator inline)."""

from __future__ import annotations

import argparse
import csv
import json
import math

import pytest
import torch
import yaml

import wirehead_core.paper_config  # noqa: F401  (registers the brain/train sections)
from wirehead_core.errors import ConfigError
from wirehead_core.models import build_model
from wirehead_core.paper_config import TrainConfig
from wirehead_core.train import STEP_COLUMNS, add_cli, crop_patch, lr_factor, normalise_intensity, parse_duration


@pytest.fixture(scope="module")
def coupled_run(tmp_path_factory):
    """One ~20 s coupled-mode training run through the ``train`` subcommand."""
    tmp = tmp_path_factory.mktemp("train")
    config = {
        "mongo": {}, "swap_cap": 4, "fields": ["image", "label"],
        "brain": {"grid": 32, "labels": "tissue", "p_zero_background": 0.5},
        "train": {"budget_s": 600, "output_dir": str(tmp / "ignored"), "channels": 8, "lr": 0.003,
                  "eval": {"every_s": 5}, "progress": True, "threads": 2},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    parser = argparse.ArgumentParser(prog="wirehead")
    add_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp / "out"
    args = parser.parse_args(["train", "--config", str(path), "--budget", "18s", "--output-dir", str(out),
                              "--mode", "coupled"])
    assert args.func(args) == 0
    return out


def read_csv(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


def test_coupled_run_writes_a_well_formed_step_csv(coupled_run):
    columns, rows = read_csv(coupled_run / "steps.csv")
    assert columns == STEP_COLUMNS
    assert len(rows) >= 2  # a loaded 2-core machine may manage only a few steps in 18 s
    steps = [int(r["step"]) for r in rows]
    assert steps == list(range(1, len(rows) + 1))
    walls = [float(r["wall_s"]) for r in rows]
    assert walls == sorted(walls) and walls[-1] <= 18 + 30  # the budget stops new steps, not a running one
    for r in rows:
        # coupled mode: every sample is freshly generated, so every sample id is unique
        assert int(r["samples_read"]) == int(r["step"]) == int(r["unique_samples"])
        assert float(r["reads_per_sample"]) == 1.0
        assert math.isfinite(float(r["loss"])) and float(r["loss"]) > 0
        assert 0.0 <= float(r["train_dice"]) <= 1.0
        assert 0.0 < float(r["lr"]) <= 0.003
    if len(rows) >= 12:
        first, last = rows[:4], rows[-4:]
        assert sum(float(r["loss"]) for r in last) < sum(float(r["loss"]) for r in first)


def test_coupled_run_evaluates_periodically_on_icbm152(coupled_run):
    columns, rows = read_csv(coupled_run / "eval.csv")
    assert columns == ["wall_s", "step", "samples_read", "volume", "dice_background", "dice_csf", "dice_gm",
                       "dice_wm", "mean_dice"]
    assert len(rows) >= 2  # every 5 s (at least once in 18 s) plus one at the end
    assert {r["volume"] for r in rows} == {"icbm152"}
    for r in rows:
        per_class = [float(r[f"dice_{n}"]) for n in ("csf", "gm", "wm")]
        assert all(0.0 <= d <= 1.0 for d in per_class)
        assert float(r["mean_dice"]) == pytest.approx(sum(per_class) / 3, abs=1e-5)
    assert [int(r["step"]) for r in rows] == sorted(int(r["step"]) for r in rows)


def test_coupled_run_saves_a_loadable_checkpoint_and_summary(coupled_run):
    ckpt = torch.load(coupled_run / "checkpoint.pt", weights_only=False)
    model = build_model(TrainConfig(**{k: v for k, v in ckpt["train"].items() if k in ("model", "channels")}), 4)
    model.load_state_dict(ckpt["model"])
    summary = json.loads((coupled_run / "summary.json").read_text())
    assert summary["mode"] == "coupled" and summary["steps"] == ckpt["step"] > 0
    assert summary["unique_samples"] == summary["samples_read"]
    assert summary["reads_per_sample_mean"] == summary["reads_per_sample_p95"] == 1.0
    assert 0.0 < summary["data_wait_s"] < summary["wall_s"]
    assert 0.0 < summary["compute_s"] and summary["data_wait_s"] + summary["compute_s"] <= summary["wall_s"]
    assert set(summary["final_dice"]["icbm152"]) == {"background", "csf", "gm", "wm", "mean"}
    assert (coupled_run / "dice.png").stat().st_size > 1000


def test_learning_rate_schedules():
    assert lr_factor("constant", 0.7) == 1.0
    assert lr_factor("cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor("cosine", 1.0, min_frac=0.1) == pytest.approx(0.1)
    assert lr_factor("warmup_cosine", 0.025, warmup_frac=0.05) == pytest.approx(0.5)
    assert lr_factor("warmup_cosine", 0.05, warmup_frac=0.05) == pytest.approx(1.0)
    assert lr_factor("cosine", 0.3) > lr_factor("cosine", 0.6)
    with pytest.raises(ConfigError):
        lr_factor("step", 0.5)


def test_durations_parse_from_seconds_to_hours():
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("20m") == 1200
    assert parse_duration("1.5h") == 5400
    with pytest.raises(ConfigError, match="budget"):
        parse_duration("soon")


def test_normalisation_clips_quantiles_to_the_unit_range_per_volume():
    x = torch.arange(1000, dtype=torch.float32).reshape(1, 1, 10, 10, 10)
    batch = torch.cat([x, 3 * x + 7])
    out = normalise_intensity(batch, (0.02, 0.98))
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert torch.allclose(out[0], out[1], atol=1e-6)  # affine intensity changes are normalised away
    assert int((out[0] == 0).sum()) == 21 and int((out[0] == 1).sum()) == 21


def test_bad_train_config_is_rejected_with_the_key():
    from wirehead_core.config import config_from_dict

    base = {"mongo": {}, "swap_cap": 4, "fields": ["image"]}
    with pytest.raises(ConfigError, match=r"train\.budget_s"):
        config_from_dict(dict(base, train={"budget_s": 0}))
    with pytest.raises(ConfigError, match=r"train\.mode"):
        config_from_dict(dict(base, train={"mode": "inline"}))
    with pytest.raises(ConfigError, match=r"train\.eval\.every_s"):
        config_from_dict(dict(base, train={"eval": {"every_s": -1}}))


def test_patches_keep_the_whole_brain_when_it_fits_and_its_centre_otherwise():
    image = torch.rand(1, 1, 64, 64, 64)
    label = torch.zeros(1, 64, 64, 64, dtype=torch.long)
    label[0, 10:40, 20:50, 5:30] = 2
    gen = torch.Generator().manual_seed(0)
    corners = set()
    for _ in range(10):
        img, lab = crop_patch(image, label, 48, gen)
        assert img.shape == (1, 1, 48, 48, 48) and lab.shape == (1, 48, 48, 48)
        assert int((lab > 0).sum()) == int((label > 0).sum())
        corners.add(tuple((lab[0] > 0).nonzero().min(0).values.tolist()))
    assert len(corners) > 1  # the crop position is random
    label[0, 2:62] = 1  # foreground (x 2..61, whole y and z) wider than the patch: the crop holds its centre
    for _ in range(10):
        img, lab = crop_patch(image, label, 48, gen)
        assert lab.shape == (1, 48, 48, 48) and bool((lab[0, :, 24, 24] > 0).sum() >= 46)
    whole = crop_patch(image, label, 0)
    assert whole[0] is image
