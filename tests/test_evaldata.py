"""Specification of the real evaluation data and of the guard that keeps it out of training."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

import wirehead_core.paper_config  # noqa: F401  (registers the brain/train sections)
from wirehead_core.brain import BrainGenerator, LeakageError, grid_affine, load_label_map, source
from wirehead_core.config import config_from_dict
from wirehead_core.evaldata import (evaluation_paths, icbm152_paths, load_icbm152, load_volume_pair,
                                    resample_to_grid)
from wirehead_core.paper_config import BrainConfig, EvalVolumeConfig, TrainConfig


@pytest.fixture(scope="module")
def icbm64():
    return load_icbm152(64)


def test_icbm152_ships_with_nilearn():
    paths = icbm152_paths()
    assert set(paths) == {"t1", "gm", "wm"}
    assert all(p.is_file() for p in paths.values())


def test_icbm152_on_the_training_grid_has_tissue_labels(icbm64):
    assert icbm64.image.shape == icbm64.label.shape == (64, 64, 64)
    counts = np.bincount(icbm64.label.ravel(), minlength=4)
    assert counts.size == 4 and (counts > 500).all()
    assert counts[2] > counts[3] > counts[1]  # GM > WM > CSF at 4 mm
    # skull-stripped: background is dark, WM brightest
    means = [icbm64.image[icbm64.label == k].mean() for k in range(4)]
    assert means[0] < 5 and means[0] < means[1] < means[2] < means[3]


def test_icbm152_lines_up_with_the_generator_grid(icbm64):
    still = dict(rotation_deg=0.0, scaling=0.0, shear=0.0, translation_mm=0.0, elastic_mm=0.0)
    _, label = BrainGenerator(BrainConfig(grid=64, **still), seed=0).sample()
    a, b = icbm64.label > 0, label.numpy() > 0
    overlap = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert overlap > 0.85  # same MNI space, same 256 mm RAS grid: brain masks agree
    flipped = b[:, ::-1, :]  # an anterior/posterior mix-up would not
    assert 2 * (a & flipped).sum() / (a.sum() + flipped.sum()) < overlap - 0.1


def test_resampling_a_volume_already_on_the_grid_is_the_identity():
    vol = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    assert np.allclose(resample_to_grid(vol, grid_affine(32), 32, "nearest"), vol)
    assert np.allclose(resample_to_grid(vol, grid_affine(32), 32, "average"), vol, atol=1e-5)
    fine = np.repeat(np.repeat(np.repeat(vol, 2, 0), 2, 1), 2, 2)
    assert np.allclose(resample_to_grid(fine, grid_affine(64), 32, "average"), vol, atol=1e-5)


def test_user_pair_with_aparc_aseg_ids_is_mapped_to_the_label_set(tmp_path):
    lab = np.zeros((32, 32, 32), dtype=np.int16)
    lab[4:12] = 1001   # left cortical parcel -> GM
    lab[12:20] = 2   # left cerebral WM -> WM
    lab[20:28] = 4   # lateral ventricle -> CSF
    img = (lab > 0).astype(np.float32) * 100
    aff = grid_affine(32)
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "t1.nii.gz")
    nib.save(nib.Nifti1Image(lab, aff), tmp_path / "aparc+aseg.nii.gz")
    vol = load_volume_pair(EvalVolumeConfig("subj", str(tmp_path / "t1.nii.gz"),
                                            str(tmp_path / "aparc+aseg.nii.gz")), 32, "tissue")
    assert vol.label[8].max() == 2 and vol.label[16].max() == 3 and vol.label[24].max() == 1
    assert vol.label[0].max() == 0 and np.allclose(vol.image[8], 100)


def test_generator_refuses_an_evaluation_file_as_label_map():
    for path in icbm152_paths().values():
        with pytest.raises(LeakageError, match="evaluation file"):
            BrainGenerator(BrainConfig(grid=32, label_maps=[str(path)]))


def test_generator_refuses_a_copy_of_an_evaluation_file(tmp_path):
    copy = tmp_path / "renamed.nii.gz"
    shutil.copyfile(icbm152_paths()["gm"], copy)
    with pytest.raises(LeakageError, match="same content"):
        load_label_map(str(copy), evaluation_paths())


def test_source_refuses_a_configured_evaluation_volume(tmp_path):
    lab = np.zeros((16, 16, 16), dtype=np.uint8)
    lab[4:12, 4:12, 4:12] = 2
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(lab, grid_affine(16)), path)
    base = {"mongo": {}, "swap_cap": 4, "fields": ["image", "label"], "brain": {"grid": 32, "label_maps": [str(path)]}}
    # not an evaluation volume: accepted
    image, label = next(source(config_from_dict(base), seed=0))
    assert label.max() == 3
    guarded = dict(base, train={"eval": {"volumes": [{"name": "mine", "image": str(path), "label": str(path)}]}})
    with pytest.raises(LeakageError):
        next(source(config_from_dict(guarded), seed=0))


def test_default_generator_inputs_are_not_evaluation_files():
    from wirehead_core.brain import builtin_label_map_path

    evaluation = {p.resolve() for p in evaluation_paths(TrainConfig())}
    inputs = {builtin_label_map_path(n).resolve() for n in ("ibsr", "neuromorphometrics")}
    assert all("deepmriprep" in str(p) for p in inputs)
    assert not evaluation & inputs
    gen = BrainGenerator(BrainConfig(grid=32, label_maps=["ibsr", "neuromorphometrics"]), seed=0)
    assert torch.is_tensor(gen.sample()[0])
