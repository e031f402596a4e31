"""Losses: BCE or cross-entropy by the label spec's activation, optional soft Dice, the Keras-style L2 penalty."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrseg.core.label_spec import LabelSpec
from mrseg.training.losses import SegmentationLoss, conv_weights, l2_penalty

FOUR = LabelSpec(
    classes=("background", "tumour", "lymphoid", "other"), label_map={"tumour": 1, "lymphoid": 2, "other": 3}
)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_l2_is_keras_sum_of_squares_on_conv_weights_only() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ConvTranspose2d(4, 2, 2, stride=2), nn.Linear(2, 2))
    expected = 0.005 * sum(float((m.weight.detach() ** 2).sum()) for m in (model[0], model[2]))
    assert l2_penalty(model, 0.005).item() == pytest.approx(expected, rel=1e-6)
    assert len(conv_weights(model)) == 2
    l2_penalty(model, 0.005).backward()
    torch.testing.assert_close(model[0].weight.grad, 2 * 0.005 * model[0].weight.detach())  # gradient 2*lambda*w
    assert model[0].bias.grad is None and model[3].weight.grad is None  # biases, linear, BN untouched
    assert l2_penalty(model, 0.0).item() == 0.0


def test_binary_is_bce_on_labels_above_zero() -> None:
    g = _generator()
    logits = torch.randn(2, 1, 8, 8, generator=g)
    labels = (torch.rand(2, 8, 8, generator=g) > 0.5).to(torch.uint8)
    bce = SegmentationLoss(1)(logits, labels)
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(logits, labels[:, None].float()))
    torch.testing.assert_close(SegmentationLoss(1)(logits, labels * 255), bce)  # 255 masks are foreground too
    assert SegmentationLoss.for_labels(LabelSpec()).activation == "sigmoid"
    torch.testing.assert_close(SegmentationLoss.for_labels(LabelSpec())(logits, labels), bce)


def test_dice_term() -> None:
    g = _generator()
    logits = torch.randn(2, 1, 8, 8, generator=g)
    labels = (torch.rand(2, 8, 8, generator=g) > 0.5).to(torch.uint8)
    assert SegmentationLoss(1, dice_weight=1.0)(logits, labels) > SegmentationLoss(1)(logits, labels)
    assert SegmentationLoss(1, dice_weight=1.0)(labels[:, None].float() * 40 - 20, labels) < 1e-3
    labels4 = torch.randint(0, 4, (2, 8, 8), generator=g)
    perfect = F.one_hot(labels4, 4).permute(0, 3, 1, 2).float() * 40 - 20
    assert SegmentationLoss(4, dice_weight=1.0)(perfect, labels4) < 1e-3


def test_softmax_is_cross_entropy_over_classes() -> None:
    g = _generator()
    logits = torch.randn(2, 4, 8, 8, generator=g)
    labels = torch.randint(0, 4, (2, 8, 8), generator=g).to(torch.uint8)
    loss = SegmentationLoss.for_labels(FOUR)
    assert loss.activation == "softmax" and loss.num_classes == 4
    torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels.long()))
    # A two-class task may also use softmax: two logits, cross-entropy.
    two = LabelSpec(activation="softmax")
    logits2 = torch.randn(2, 2, 8, 8, generator=g)
    labels2 = (labels > 1).to(torch.uint8)
    torch.testing.assert_close(
        SegmentationLoss.for_labels(two)(logits2, labels2), F.cross_entropy(logits2, labels2.long())
    )


def test_shape_and_activation_mismatches() -> None:
    with pytest.raises(ValueError, match="expected logits"):
        SegmentationLoss(3)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one logit channel"):
        SegmentationLoss(2, activation="sigmoid")
