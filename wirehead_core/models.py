"""Segmentation networks of the paper: MeshNet (dilated, fully convolutional) and the SynthSeg-spec 3-D U-Net."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from wirehead_core.errors import ConfigError
from wirehead_core.paper_config import TrainConfig

__all__ = ["MeshNet", "UNet3D", "build_model", "count_parameters"]

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ConfigError(f"train.activation: expected one of {', '.join(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name](inplace=True) if name in ("relu", "elu") else _ACTIVATIONS[name]()


def _norm(kind: Optional[str], channels: int) -> nn.Module:
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    raise ConfigError(f"train.norm: expected batch, instance, group or none, got {kind!r}")


class MeshNet(nn.Module):
    """MeshNet: a stack of 3×3×3 convolutions with growing then shrinking dilation, constant width, and a 1×1×1
    classifier (Fedorov et al.; brainchop's models use dilations 1, 2, 4, 8, 16, 8, 4, 2, 1).

    Args:
        in_channels: input channels.
        n_classes: output classes (logits per voxel).
        channels: width of every layer (a multiple of 8 is much faster on CPU with oneDNN).
        dilations: dilation of each 3×3×3 layer.
        norm: ``batch``, ``instance``, ``group`` or None after each convolution.
        activation: ``relu``, ``elu`` or ``gelu``.
        dropout: dropout probability after each activation (0 = none).
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 4, channels: int = 16,
                 dilations: Sequence[int] = (1, 2, 4, 8, 16, 8, 4, 2, 1), norm: Optional[str] = "batch",
                 activation: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 1 or channels < 1:
            raise ValueError("MeshNet: in_channels, n_classes and channels must be >= 1")
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"MeshNet: dilations must be a non-empty list of integers >= 1, got {dilations!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for d in dilations:
            layers += [nn.Conv3d(c, channels, 3, padding=d, dilation=d, bias=norm in (None, "none")),
                       _norm(norm, channels), _activation(activation)]
            if dropout > 0:
                layers.append(nn.Dropout3d(dropout))
            c = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv3d(channels, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes, X, Y, Z) of an input (B, in_channels, X, Y, Z)."""
        return self.classifier(self.features(x))


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: Optional[str], activation: str, n_convs: int = 2) -> None:
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv3d(cin if i == 0 else cout, cout, 3, padding=1, bias=norm in (None, "none")),
                       _norm(norm, cout), _activation(activation)]
        super().__init__(*layers)


class UNet3D(nn.Module):
    """The SynthSeg-spec 3-D U-Net used by the Wirehead paper: `levels` resolutions, `features` base features
    doubled per level, two 3×3×3 convolutions with BatchNorm + ELU per block, max-pool down, trilinear up-sampling.

    Input sizes must be divisible by ``2 ** (levels - 1)``.

    Args:
        in_channels: input channels.
        n_classes: output classes.
        features: features of the first level.
        levels: number of resolution levels (5 in the paper).
        norm: ``batch`` (paper), ``instance``, ``group`` or None.
        activation: ``elu`` (paper), ``relu`` or ``gelu``.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 18, features: int = 24, levels: int = 5,
                 norm: Optional[str] = "batch", activation: str = "elu") -> None:
        super().__init__()
        if levels < 1 or features < 1 or n_classes < 1 or in_channels < 1:
            raise ValueError("UNet3D: in_channels, n_classes, features and levels must be >= 1")
        self.levels = levels
        widths = [features * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_ConvBlock(c, w, norm, activation))
            c = w
        self.up = nn.ModuleList(_ConvBlock(widths[i + 1] + widths[i], widths[i], norm, activation)
                                for i in reversed(range(levels - 1)))
        self.pool = nn.MaxPool3d(2)
        self.head = nn.Conv3d(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_classes, X, Y, Z) of an input (B, in_channels, X, Y, Z)."""
        step = 2 ** (self.levels - 1)
        if any(s % step for s in x.shape[2:]):
            raise ValueError(f"UNet3D: spatial size {tuple(x.shape[2:])} must be divisible by {step}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_model(train: TrainConfig, n_classes: int, in_channels: int = 1) -> nn.Module:
    """The network named by ``train.model`` with the section's width, depth, norm and activation."""
    norm: Any = None if train.norm == "none" else train.norm
    if train.model == "meshnet":
        return MeshNet(in_channels, n_classes, train.channels, tuple(train.dilations), norm, train.activation)
    if train.model == "unet":
        return UNet3D(in_channels, n_classes, train.unet_features, train.unet_levels, norm, train.activation)
    raise ConfigError(f"train.model: expected meshnet or unet, got {train.model!r}")
