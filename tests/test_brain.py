"""Specification of the synthetic brain generator (wirehead_core.brain)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import wirehead_core.paper_config  # noqa: F401  (registers the brain/train sections)
from wirehead_core._brain_labels import NEUROMORPHOMETRICS_TO_ASEG, canonical_aseg, map_labels
from wirehead_core.brain import BrainGenerator, LabelMap, grid_affine, load_label_map, source
from wirehead_core.config import config_from_dict
from wirehead_core.errors import ConfigError
from wirehead_core.paper_config import BrainConfig

STILL = dict(rotation_deg=0.0, scaling=0.0, shear=0.0, translation_mm=0.0, elastic_mm=0.0, bias_std=0.0,
             blur_mm=[0.0, 0.0], lowres_factor=[1.0, 1.0], noise_std=0.0, gamma_std=0.0)


@pytest.fixture(scope="module")
def ibsr() -> LabelMap:
    return load_label_map("ibsr")


def blocks_map() -> LabelMap:
    """A 96 mm cube of eight 24 mm label blocks (aseg ids) centred on the world origin, 2 mm voxels."""
    ids = np.array([2, 3, 4, 17, 41, 42, 16, 24], dtype=np.uint8)
    vol = np.zeros((64, 64, 64), dtype=np.uint8)
    k = 0
    for i in (8, 32):
        for j in (8, 32):
            for z in (8, 32):
                vol[i:i + 24, j:j + 24, z:z + 24] = ids[k]
                k += 1
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = -63.0
    return LabelMap("blocks", vol, aff)


def test_same_seed_gives_identical_samples(ibsr):
    cfg = BrainConfig(grid=32)
    a = BrainGenerator(cfg, seed=7, label_maps=[ibsr])
    b = BrainGenerator(cfg, seed=7, label_maps=[ibsr])
    for _ in range(2):
        (ia, la), (ib, lb) = a.sample(), b.sample()
        assert torch.equal(ia, ib) and torch.equal(la, lb)


def test_different_seeds_and_successive_samples_differ(ibsr):
    cfg = BrainConfig(grid=32)
    a = BrainGenerator(cfg, seed=1, label_maps=[ibsr])
    b = BrainGenerator(cfg, seed=2, label_maps=[ibsr])
    ia1, la1 = a.sample()
    ia2, _ = a.sample()
    ib1, lb1 = b.sample()
    assert not torch.allclose(ia1, ia2)
    assert not torch.allclose(ia1, ib1)
    assert not torch.equal(la1, lb1)  # different random deformations


def test_sample_shape_dtype_range_and_all_tissue_classes(ibsr):
    gen = BrainGenerator(BrainConfig(grid=64), seed=0, label_maps=[ibsr])
    image, label = gen.sample()
    assert image.shape == label.shape == (64, 64, 64)
    assert image.dtype == torch.float32 and label.dtype == torch.uint8
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert set(torch.unique(label).tolist()) == {0, 1, 2, 3}


def test_paper18_labels_cover_the_large_structures(ibsr):
    gen = BrainGenerator(BrainConfig(grid=64, labels="paper18"), seed=0, label_maps=[ibsr])
    _, label = gen.sample()
    present = set(torch.unique(label).tolist())
    assert present <= set(range(18))
    # cerebral WM, cortex, lateral ventricle, cerebellum WM/cortex, thalamus, brainstem are far larger than a voxel
    assert {0, 1, 2, 3, 5, 6, 7, 13} <= present


@pytest.mark.parametrize("labels", ["tissue", "paper18"])
def test_every_label_of_the_input_survives_strong_deformation(labels):
    lm = blocks_map()
    cfg = dataclasses.replace(BrainConfig(grid=64, labels=labels), rotation_deg=30.0, scaling=0.2, shear=0.05,
                              elastic_mm=6.0, translation_mm=8.0)
    expected = set(np.unique(map_labels(lm.aseg, labels)).tolist())
    gen = BrainGenerator(cfg, seed=3, label_maps=[lm])
    for _ in range(3):
        _, label = gen.sample()
        assert set(torch.unique(label).tolist()) == expected


def test_without_augmentation_labels_are_the_input_resampled():
    lm = blocks_map()
    gen = BrainGenerator(BrainConfig(grid=128, labels="tissue", **STILL), seed=0, label_maps=[lm])
    _, label = gen.sample()
    # output voxel 2 mm = input voxel: the grid centre voxel row matches the input map exactly
    expected = map_labels(lm.aseg, "tissue")
    inner = label[32:96, 32:96, 32:96].numpy()
    assert (inner == expected).mean() > 0.99


def test_intensities_follow_the_drawn_class_means(ibsr):
    cfg = BrainConfig(grid=32, std_range=[0.0, 0.0], **STILL)
    gen = BrainGenerator(cfg, seed=5, label_maps=[ibsr])
    image, _ = gen.sample()
    cls = gen.last_params["generation_classes"]
    means = gen.last_params["means"]
    present = torch.unique(cls)
    lo, hi = means[present].min(), means[present].max()
    for c in present.tolist():
        expected = float((means[c] - lo) / (hi - lo))
        values = image[cls == c]
        assert torch.allclose(values, torch.full_like(values, expected), atol=1e-5), c


def test_small_noise_keeps_region_means_near_the_class_means(ibsr):
    cfg = dataclasses.replace(BrainConfig(grid=32, std_range=[0.02, 0.02], **STILL))
    gen = BrainGenerator(cfg, seed=9, label_maps=[ibsr])
    image, _ = gen.sample()
    cls, means = gen.last_params["generation_classes"], gen.last_params["means"]
    raw = torch.stack([image[cls == c].mean() for c in torch.unique(cls)])
    drawn = means[torch.unique(cls)]
    # after min-max scaling the region means are an increasing affine function of the drawn means
    slope, intercept = np.polyfit(drawn.numpy(), raw.numpy(), 1)
    assert slope > 0
    assert np.abs(np.polyval([slope, intercept], drawn.numpy()) - raw.numpy()).max() < 0.03


def test_zero_background_makes_the_outside_exactly_zero(ibsr):
    gen = BrainGenerator(BrainConfig(grid=32, p_zero_background=1.0), seed=0, label_maps=[ibsr])
    image, label = gen.sample()
    assert gen.last_params["zero_background"]
    assert float(image[label == 0].abs().max()) == 0.0
    assert float(image[label > 0].mean()) > 0.05


def test_csf_shell_adds_csf_only_outside_the_brain(ibsr):
    base = BrainConfig(grid=64, **STILL)
    plain = BrainGenerator(base, seed=0, label_maps=[ibsr]).sample()[1]
    shelled = BrainGenerator(dataclasses.replace(base, csf_shell_mm=[6.0, 6.0]), seed=0, label_maps=[ibsr]).sample()[1]
    assert int((shelled == 1).sum()) > 2 * int((plain == 1).sum())
    # brain tissue is untouched; the new CSF replaced background
    assert torch.equal(shelled[plain > 0], plain[plain > 0])


def test_supersampling_gives_partial_volume_values(ibsr):
    cfg = BrainConfig(grid=32, supersample=2, std_range=[0.0, 0.0], **STILL)
    image, _ = BrainGenerator(cfg, seed=0, label_maps=[ibsr]).sample()
    gen1 = BrainGenerator(dataclasses.replace(cfg, supersample=1), seed=0, label_maps=[ibsr])
    flat = gen1.sample()[0]
    assert torch.unique(image).numel() > 3 * torch.unique(flat).numel()


def test_label_tables():
    tissue = map_labels(np.array([0, 24, 4, 3, 17, 2, 16, 28], dtype=np.uint8), "tissue")
    assert tissue.tolist() == [0, 1, 1, 2, 2, 3, 3, 3]
    paper = map_labels(np.array([0, 24, 2, 41, 3, 42, 17, 53, 28, 60], dtype=np.uint8), "paper18")
    assert paper.tolist() == [0, 0, 1, 1, 2, 2, 14, 14, 17, 17]
    assert canonical_aseg(np.array([1001, 2035, 11105, 17, 5001])).tolist() == [3, 42, 3, 17, 0]
    nm = canonical_aseg(np.array([100, 101, 44, 45, 52, 999]), "neuromorphometrics")
    assert nm.tolist() == [42, 3, 41, 2, 4, 0]
    assert all(v <= 255 for v in NEUROMORPHOMETRICS_TO_ASEG.values())


def test_neuromorphometrics_map_collapses_cortical_parcels_to_cortex():
    lm = load_label_map("neuromorphometrics")
    ids = set(np.unique(lm.aseg).tolist())
    assert {0, 2, 3, 41, 42, 4, 43, 16, 17, 53} <= ids
    assert max(ids) <= 60
    assert set(np.unique(map_labels(lm.aseg, "tissue")).tolist()) == {0, 1, 2, 3}


def test_grid_affine_is_a_centred_256mm_field_of_view():
    aff = grid_affine(64)
    assert np.allclose(np.diag(aff)[:3], 4.0)
    centre = aff @ np.array([31.5, 31.5, 31.5, 1.0])
    assert np.allclose(centre[:3], 0.0)
    corner = aff @ np.array([-0.5, -0.5, -0.5, 1.0])
    assert np.allclose(corner[:3], -128.0)


def test_source_yields_numpy_pairs_from_the_config():
    cfg = config_from_dict({"mongo": {}, "swap_cap": 4, "fields": ["image", "label"],
                            "brain": {"grid": 32, "labels": "paper18"}})
    stream = source(cfg, seed=4)
    image, label = next(stream)
    again = next(source(cfg, seed=4))
    assert isinstance(image, np.ndarray) and image.dtype == np.float32 and image.shape == (32, 32, 32)
    assert label.dtype == np.uint8 and label.max() <= 17
    assert np.array_equal(image, again[0])
    assert not np.array_equal(image, next(stream)[0])


def test_bad_brain_config_is_rejected_with_the_key():
    with pytest.raises(ConfigError, match=r"brain\.grid"):
        config_from_dict({"mongo": {}, "swap_cap": 4, "fields": ["image"], "brain": {"grid": 8}})
    with pytest.raises(ConfigError, match=r"brain\.blur_mm"):
        config_from_dict({"mongo": {}, "swap_cap": 4, "fields": ["image"], "brain": {"blur_mm": [3, 1]}})
    with pytest.raises(ConfigError, match=r"brain\.label_maps"):
        BrainGenerator(BrainConfig(label_maps=["/nonexistent/labels.nii.gz"]))


def test_generator_on_cuda_matches_the_cpu_contract(ibsr):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    image, label = BrainGenerator(BrainConfig(grid=64, device="cuda"), seed=0, label_maps=[ibsr]).sample()
    assert image.is_cuda and label.dtype == torch.uint8 and set(torch.unique(label).tolist()) == {0, 1, 2, 3}


def test_tissue_generation_classes_share_one_gaussian_and_jitter_separates_structures(ibsr):
    cfg = BrainConfig(grid=32, generation_classes="tissue", std_range=[0.0, 0.0], **STILL)
    image, _ = BrainGenerator(cfg, seed=2, label_maps=[ibsr]).sample()
    gen = BrainGenerator(cfg, seed=2, label_maps=[ibsr])
    gen.sample()
    aseg = gen.last_params["aseg"]
    cortex, thalamus = image[aseg == 3], image[aseg == 10]  # both grey matter
    assert float(cortex.std()) < 1e-6 and float((cortex.mean() - thalamus.mean()).abs()) < 1e-6
    jittered = BrainGenerator(dataclasses.replace(cfg, mean_jitter=0.2), seed=2, label_maps=[ibsr])
    image_j, _ = jittered.sample()
    assert float((image_j[aseg == 3].mean() - image_j[aseg == 10].mean()).abs()) > 1e-3


def test_t1_contrast_orders_the_random_tissue_means(ibsr):
    cfg = BrainConfig(grid=32, generation_classes="synthseg", contrast="t1", std_range=[0.0, 0.0], **STILL)
    gen = BrainGenerator(cfg, seed=0, label_maps=[ibsr])
    firsts = []
    for _ in range(5):
        image, label = gen.sample()
        csf, gm, wm = (float(image[(label == k)].median()) for k in (1, 2, 3))
        assert csf < gm < wm
        firsts.append(round(gm, 4))
    assert len(set(firsts)) == 5  # still random from sample to sample
    anyc = BrainGenerator(dataclasses.replace(cfg, contrast="any"), seed=0, label_maps=[ibsr])
    orders = set()
    for _ in range(8):
        image, label = anyc.sample()
        orders.add(tuple(np.argsort([float(image[label == k].median()) for k in (1, 2, 3)]).tolist()))
    assert len(orders) > 1  # the default is contrast-agnostic
