"""Segmentation metrics and losses: per-class Dice on hard labels, and a soft Dice + cross-entropy loss."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["DiceResult", "dice_per_class", "soft_dice_loss", "DiceCELoss"]


@dataclass(frozen=True)
class DiceResult:
    """Dice of one (prediction, target) pair.

    Attributes:
        per_class: Dice per class id (index = class); NaN where the class is absent from both volumes.
        mean: mean over foreground classes (class 0 excluded) present in at least one volume; NaN when none is.
    """

    per_class: list[float]
    mean: float


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                   ignore_background: bool = True) -> DiceResult:
    """Per-class Dice of hard label volumes (any matching shapes, integer class ids).

    Args:
        pred: predicted classes.
        target: true classes.
        n_classes: number of classes (ids 0..n_classes-1).
        ignore_background: leave class 0 out of the mean.
    """
    if pred.shape != target.shape:
        raise ValueError(f"dice_per_class: shapes differ, prediction {tuple(pred.shape)} vs target "
                         f"{tuple(target.shape)}")
    p = pred.reshape(-1).long()
    t = target.reshape(-1).long()
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= n_classes or int(t.min()) < 0
                      or int(t.max()) >= n_classes):
        raise ValueError(f"dice_per_class: class ids must lie in [0, {n_classes})")
    inter = torch.bincount(p[p == t], minlength=n_classes).double()
    sizes = torch.bincount(p, minlength=n_classes).double() + torch.bincount(t, minlength=n_classes).double()
    per_class = [float(2 * inter[c] / sizes[c]) if sizes[c] > 0 else math.nan for c in range(n_classes)]
    start = 1 if ignore_background else 0
    present = [d for d in per_class[start:] if not math.isnan(d)]
    return DiceResult(per_class, float(sum(present) / len(present)) if present else math.nan)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_background: bool = False,
                   eps: float = 1e-5) -> torch.Tensor:
    """1 − mean soft Dice over the classes present in the batch's target.

    Classes absent from the target are left out: their Dice would be ~0 for any non-zero probability, which
    teaches a network never to predict small classes (CSF) in patches or volumes that happen to lack them.

    Args:
        logits: (B, C, ...) raw scores.
        target: (B, ...) class ids.
        ignore_background: leave class 0 out.
        eps: smoothing term.
    """
    n_classes = logits.shape[1]
    probs = logits.float().softmax(1)
    onehot = F.one_hot(target.long(), n_classes).movedim(-1, 1).float()
    dims = (0,) + tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    present = onehot.sum(dims) > 0
    if ignore_background:
        dice, present = dice[1:], present[1:]
    if not bool(present.any()):
        return logits.new_zeros((), dtype=torch.float32) + 0.0 * probs.sum()
    return 1.0 - dice[present].mean()


class DiceCELoss(torch.nn.Module):
    """Weighted sum of soft Dice loss and cross-entropy.

    Args:
        dice_weight: weight of the Dice term (0 = plain cross-entropy).
        ce_weight: weight of the cross-entropy term (0 = plain Dice).
        class_weights: optional cross-entropy class weights.
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 class_weights: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0 or dice_weight + ce_weight == 0:
            raise ValueError("DiceCELoss: weights must be >= 0 and not both 0")
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.register_buffer("class_weights", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits (B, C, ...) against class ids (B, ...)."""
        loss = logits.new_zeros((), dtype=torch.float32)
        if self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(logits.float(), target.long(), weight=self.class_weights)
        if self.dice_weight:
            loss = loss + self.dice_weight * soft_dice_loss(logits, target)
        return loss
