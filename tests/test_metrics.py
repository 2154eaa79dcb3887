"""Specification of the Dice metric and the Dice + cross-entropy loss (wirehead_core.metrics)."""

from __future__ import annotations

import math

import pytest
import torch

from wirehead_core.metrics import DiceCELoss, dice_per_class, soft_dice_loss


def volumes() -> tuple[torch.Tensor, torch.Tensor]:
    """Hand-built 4×4×4 volumes with known overlaps."""
    target = torch.zeros(4, 4, 4, dtype=torch.long)
    pred = torch.zeros_like(target)
    target[0] = 1          # class 1: 16 voxels in the target
    pred[0, :2] = 1        # ... 8 of them predicted, nothing else -> Dice 2*8/(16+8) = 2/3
    target[1, :, :2] = 2   # class 2: 8 voxels
    pred[1, :, :2] = 2     # predicted exactly -> Dice 1
    pred[2, 0, 0] = 3      # class 3: predicted once, absent from the target -> Dice 0
    return pred, target     # class 4 absent from both -> NaN, left out of the mean


def test_per_class_dice_on_hand_built_volumes():
    pred, target = volumes()
    result = dice_per_class(pred, target, n_classes=5)
    assert result.per_class[1] == pytest.approx(2 / 3)
    assert result.per_class[2] == pytest.approx(1.0)
    assert result.per_class[3] == 0.0
    assert math.isnan(result.per_class[4])
    # background: target 40 voxels, prediction 47, overlap 39 (one target-background voxel predicted as 3)
    assert result.per_class[0] == pytest.approx(2 * 39 / (40 + 47))


def test_mean_excludes_background_and_classes_absent_from_both():
    pred, target = volumes()
    result = dice_per_class(pred, target, n_classes=5)
    assert result.mean == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    with_bg = dice_per_class(pred, target, n_classes=5, ignore_background=False)
    assert with_bg.mean == pytest.approx((2 * 39 / 87 + 2 / 3 + 1.0 + 0.0) / 4)


def test_identical_volumes_score_one_and_empty_foreground_is_nan():
    t = torch.randint(0, 4, (8, 8, 8))
    assert dice_per_class(t, t, 4).mean == pytest.approx(1.0)
    zeros = torch.zeros(8, 8, 8, dtype=torch.long)
    assert math.isnan(dice_per_class(zeros, zeros, 4).mean)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="shapes differ"):
        dice_per_class(torch.zeros(2, 2), torch.zeros(2, 3), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        dice_per_class(torch.full((2, 2), 2), torch.zeros(2, 2), 2)


def test_soft_dice_loss_is_low_for_confident_right_and_high_for_wrong_logits():
    target = torch.randint(0, 3, (2, 6, 6, 6))
    right = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 20
    wrong = torch.nn.functional.one_hot((target + 1) % 3, 3).movedim(-1, 1).float() * 20
    assert float(soft_dice_loss(right, target)) < 0.01
    assert float(soft_dice_loss(wrong, target)) > 0.95


def test_dice_ce_loss_combines_both_terms_and_trains():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (1, 5, 5, 5))
    logits = torch.zeros(1, 3, 5, 5, 5, requires_grad=True)
    with torch.no_grad():
        ce = DiceCELoss(dice_weight=0.0)(logits, target)
        dice = DiceCELoss(ce_weight=0.0)(logits, target)
        both = DiceCELoss()(logits, target)
    assert float(ce) == pytest.approx(math.log(3), rel=1e-5)
    assert float(both) == pytest.approx(float(ce) + float(dice), rel=1e-5)
    opt = torch.optim.Adam([logits], lr=0.5)
    for _ in range(40):
        opt.zero_grad()
        loss = DiceCELoss()(logits, target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(DiceCELoss()(logits, target)) < 0.1 * float(both)
    with pytest.raises(ValueError):
        DiceCELoss(dice_weight=0.0, ce_weight=0.0)


def test_soft_dice_leaves_out_classes_absent_from_the_target():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 20
    logits[0, 2, 0, 0, 0] = 40.0  # one voxel predicted as class 2, which the target lacks
    # classes 0 and 1 are still almost perfect; an absent class 2 does not count, so the loss stays small
    assert float(soft_dice_loss(logits, target)) < 0.05
