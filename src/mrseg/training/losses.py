"""Segmentation losses and the paper's L2 weight penalty (a loss term, Keras-style).

L2 as a loss term (as Keras ``kernel_regularizer=l2(lam)``): ``lam * sum(w**2)`` over the weights
of every convolution and transposed convolution (not biases, not normalisation parameters). Its
gradient is ``2 * lam * w``, so with plain SGD it equals weight decay ``2 * lam``; with Adam it is
*not* equivalent to decoupled weight decay (AdamW), because the penalty gradient is rescaled by
Adam's per-parameter second-moment estimate like any other gradient. ``train.l2_mode`` chooses the
reading (docs/training.md, "L2"): ``sum`` (Keras), ``half_sum`` (TensorFlow ``l2_loss``) or
``decoupled`` (:func:`make_optimizer` builds AdamW decaying exactly :func:`conv_weights`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrseg.core.label_spec import Activation, LabelSpec

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def conv_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors of every (transposed) convolution in ``model``."""
    return [m.weight for m in model.modules() if isinstance(m, _CONV_TYPES)]


def l2_penalty(model: nn.Module, lam: float, mode: str = "sum") -> torch.Tensor:
    """``lam * sum(w**2)`` over all conv and transposed-conv weights (Keras ``l2(lam)`` summed over layers).

    ``mode="half_sum"`` gives TensorFlow's ``lam * tf.nn.l2_loss(w) = lam * sum(w**2) / 2``; ``"decoupled"``
    returns zero (the decay is applied by the optimiser instead, see :func:`make_optimizer`).
    """
    weights = conv_weights(model)
    if lam == 0.0 or not weights or mode == "decoupled":
        return torch.zeros((), device=next(model.parameters()).device)
    total = torch.stack([w.pow(2).sum() for w in weights]).sum()
    return total * (lam / 2 if mode == "half_sum" else lam)


def make_optimizer(
    model: nn.Module,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    l2: float = 0.0,
    l2_mode: str = "sum",
) -> torch.optim.Optimizer:
    """Adam, or with ``l2_mode="decoupled"`` AdamW decaying only the conv weights by ``lr * l2`` per step.

    In the other modes the L2 term is part of the loss (:func:`l2_penalty`) and the optimiser is plain Adam.
    """
    if l2_mode != "decoupled" or l2 == 0.0:
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, eps=eps)
    decayed = {id(w) for w in conv_weights(model)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in decayed], "weight_decay": l2},
        {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


class SegmentationLoss(nn.Module):
    """Per-pixel BCE (sigmoid) or cross-entropy (softmax), plus an optional soft-Dice term.

    The loss follows the label spec's activation (the class rule of :mod:`mrseg.models.activation`):
    with ``"sigmoid"`` there is one logit and every label > 0 is foreground (BCE); with
    ``"softmax"`` there is one logit per class and labels are class indices (cross-entropy).

    Parameters
    ----------
    num_classes
        Channels of the logits ``(N, C, H, W)`` (``labels.num_outputs``).
    dice_weight
        Weight of ``1 - soft Dice`` (foreground for binary; mean over classes otherwise). 0 disables it.
    activation
        ``"sigmoid"`` (needs one channel) or ``"softmax"``; None: sigmoid for one channel, softmax otherwise.

    The forward pass takes logits ``(N, C, H, W)`` and integer labels ``(N, H, W)`` and returns the
    mean loss over the batch (a scalar).
    """

    def __init__(
        self,
        num_classes: int = 1,
        dice_weight: float = 0.0,
        smooth: float = 1.0,
        *,
        activation: Activation | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.activation: Activation = activation or ("sigmoid" if self.num_classes == 1 else "softmax")
        if self.activation == "sigmoid" and self.num_classes != 1:
            raise ValueError(f"a sigmoid loss takes one logit channel, got num_classes={self.num_classes}")

    @classmethod
    def for_labels(cls, labels: LabelSpec, dice_weight: float = 0.0) -> SegmentationLoss:
        """The loss of a label spec: its number of outputs and its activation."""
        return cls(labels.num_outputs, dice_weight, activation=labels.activation)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"expected logits (N, {self.num_classes}, H, W), got {tuple(logits.shape)}")
        logits = logits.float()
        if self.activation == "sigmoid":
            target = (labels > 0).to(logits.dtype).unsqueeze(1)
            loss = F.binary_cross_entropy_with_logits(logits, target)
            if self.dice_weight:
                prob = torch.sigmoid(logits)
                loss = loss + self.dice_weight * (1.0 - _soft_dice(prob, target, self.smooth).mean())
            return loss
        target_idx = labels.long()
        loss = F.cross_entropy(logits, target_idx)
        if self.dice_weight:
            prob = torch.softmax(logits, dim=1)
            onehot = F.one_hot(target_idx, self.num_classes).permute(0, 3, 1, 2).to(prob.dtype)
            loss = loss + self.dice_weight * (1.0 - _soft_dice(prob, onehot, self.smooth).mean())
        return loss


def _soft_dice(prob: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    """Soft Dice per class, pooled over the batch and pixels: ``(C,)``."""
    dims = (0, 2, 3)
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (2.0 * inter + smooth) / (denom + smooth)
