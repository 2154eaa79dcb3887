"""Specification of the segmentation networks (wirehead_core.models)."""

from __future__ import annotations

import pytest
import torch

from wirehead_core.errors import ConfigError
from wirehead_core.models import MeshNet, UNet3D, build_model, count_parameters
from wirehead_core.paper_config import TrainConfig


def test_meshnet_maps_a_64_cube_to_class_logits_of_the_same_size():
    model = MeshNet(in_channels=1, n_classes=4, channels=8)
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 1, 64, 64, 64))
    assert out.shape == (1, 4, 64, 64, 64)


def test_unet_maps_a_64_cube_to_class_logits_of_the_same_size():
    model = UNet3D(in_channels=1, n_classes=18, features=4, levels=5)
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 1, 64, 64, 64))
    assert out.shape == (1, 18, 64, 64, 64)


def test_unet_has_the_paper_layout():
    model = UNet3D(n_classes=18)  # 5 levels, 24 base features doubling, BatchNorm + ELU
    widths = [block[0].out_channels for block in model.down]
    assert widths == [24, 48, 96, 192, 384]
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert any(isinstance(m, torch.nn.ELU) for m in model.modules())
    assert model.head.out_channels == 18


def test_unet_rejects_sizes_not_divisible_by_its_depth():
    with pytest.raises(ValueError, match="divisible by 16"):
        UNet3D(features=2, levels=5)(torch.rand(1, 1, 24, 24, 24))


def test_meshnet_receptive_field_follows_the_dilations():
    # dilations 1,2,4,8,16,8,4,2,1: the centre output sees 1 + 2 * 46 = 93 voxels along each axis
    model = MeshNet(n_classes=2, channels=2, norm=None).double()
    for p in model.parameters():
        torch.nn.init.uniform_(p, 0.1, 0.2)  # all-positive weights: no cancellation inside the field
    x = torch.zeros(1, 1, 101, 1, 1, dtype=torch.float64, requires_grad=True)
    model(x)[0, 0, 50, 0, 0].backward()
    reach = (x.grad[0, 0, :, 0, 0] != 0).nonzero().flatten()
    assert int(reach.min()) == 50 - 46 and int(reach.max()) == 50 + 46


@pytest.mark.parametrize("norm,layer", [("batch", torch.nn.BatchNorm3d), ("instance", torch.nn.InstanceNorm3d),
                                        ("group", torch.nn.GroupNorm)])
def test_build_model_honours_the_train_section(norm, layer):
    model = build_model(TrainConfig(model="meshnet", channels=16, norm=norm, activation="elu"), n_classes=4)
    assert isinstance(model, MeshNet)
    assert any(isinstance(m, layer) for m in model.modules())
    assert any(isinstance(m, torch.nn.ELU) for m in model.modules())
    assert model.classifier.out_channels == 4
    unet = build_model(TrainConfig(model="unet", unet_features=8, unet_levels=3), n_classes=18)
    assert isinstance(unet, UNet3D) and len(unet.down) == 3
    plain = build_model(TrainConfig(norm="none", channels=8), n_classes=4)
    assert not any(isinstance(m, (torch.nn.BatchNorm3d, torch.nn.GroupNorm)) for m in plain.modules())
    assert count_parameters(plain) < count_parameters(build_model(TrainConfig(channels=16), n_classes=4))


def test_bad_model_arguments_raise():
    with pytest.raises(ValueError):
        MeshNet(dilations=())
    with pytest.raises(ConfigError, match="train.norm"):
        MeshNet(norm="layer")
