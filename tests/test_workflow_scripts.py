"""The workflow's pure helpers: an experiment's wirehead config and Tables I-II (workflow/scripts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wirehead_core.config import config_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
import experiment_config  # noqa: E402
import training_tables  # noqa: E402

TRAINING = {
    "budget_s": 60, "threads": 2, "swap_cap": 8,
    "brain": {"grid": 32, "labels": "tissue", "device": "cpu"},
    "train": {"model": "unet", "patch": 16, "eval": {"icbm152": True, "every_s": 30}},
    "wirehead": {"manager": {"lease_s": 7.0}},
}


def test_an_experiment_config_is_a_valid_wirehead_config_with_per_experiment_overrides(tmp_path):
    spec = {"mode": "wirehead", "generators": 2, "swap_cap": 4, "reuse": {"policy": "target", "target": 1.5},
            "train": {"patch": 24}}
    data = experiment_config.build("mongodb://h:1/", "train_x", TRAINING, spec, tmp_path)
    config = config_from_dict(data)
    assert config.swap_cap == 4 and config.reuse.policy == "target" and config.manager.lease_s == 7.0
    assert [(f.name, f.dtype, list(f.shape)) for f in config.fields] == [("image", "float32", [32, 32, 32]),
                                                                          ("label", "uint8", [32, 32, 32])]
    train = config.section("train")
    assert (train.mode, train.budget_s, train.patch, train.threads, train.progress) == ("wirehead", 60.0, 24, 2,
                                                                                       False)
    assert train.output_dir == str(tmp_path / "train")
    assert TRAINING["train"]["patch"] == 16  # the shared section is not modified


def _metrics(name, mode, read, generated, paper_row):
    rate = lambda v: {"per_s": v, "stderr": v / 10, "count": 10 * v, "seconds": 10.0, "windows": 10}  # noqa: E731
    return {"label": name, "mode": mode, "placement": "inline" if mode == "coupled" else "local", "generators": 1,
            "reuse": None if mode == "coupled" else "off", "reuse_target": None, "read_rate": rate(read),
            "generation_rate": rate(generated), "reads_per_sample": 1.0, "cache_reuse_mean": 1.0, "cache_reuse_p95": 2.0,
            "final_dice": 0.5, "trainer_busy_fraction": 0.5, "paper_row": paper_row,
            "utilisation": {"mean_percent": 90.0, "source": "cpu-fallback", "device": "cpu"}}


def test_tables_give_speedups_over_the_coupled_run_beside_the_papers_values():
    metrics = [_metrics("Coupled", "coupled", 0.5, 0.5, "coupled"), _metrics("Local", "wirehead", 1.5, 0.4, "local"),
               _metrics("Mine", "wirehead", 2.0, 1.0, None)]
    table1 = training_tables.build_rows(metrics, "table1")
    assert [r["speedup"] for r in table1] == [1.0, 3.0, 4.0]
    assert table1[1]["paper_samples_per_s"] == 0.74 and table1[1]["paper_speedup"] == pytest.approx(3.52)
    assert table1[2]["paper_samples_per_s"] is None
    table2 = training_tables.build_rows(metrics, "table2")
    assert [r["samples_per_s"] for r in table2] == [0.5, 0.4, 1.0]
    assert table2[2]["speedup"] == 2.0
    markdown = training_tables.to_markdown(table1, [{**m, "grid": 32, "model": "unet", "device": "cpu",
                                                     "budget_s": 60.0} for m in metrics], "table1")
    assert "| Local | off | 1.500 ± 0.150 | 3.00x | 1.00 | 1.00 (2) |" in markdown
