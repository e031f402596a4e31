"""The class rule, applied in one place: logits -> probabilities by the label spec's activation.

``sigmoid`` (binary, one logit) gives the foreground probability; ``softmax`` (one logit per class)
gives every class's probability, summing to 1. Training's loss follows the same rule (BCE for
sigmoid, cross-entropy for softmax; :class:`mrseg.training.losses.SegmentationLoss`).
"""

from __future__ import annotations

import torch

from mrseg.core.label_spec import LabelSpec


def class_probabilities(logits: torch.Tensor, labels: LabelSpec) -> torch.Tensor:
    """Probabilities of every class ``(N, C, H, W)`` (C includes the background) from logits.

    With sigmoid (one logit ``z``) the two classes are ``1 - sigmoid(z)`` and ``sigmoid(z)``.
    """
    _check(logits, labels)
    if labels.activation == "sigmoid":
        fg = torch.sigmoid(logits)
        return torch.cat([1.0 - fg, fg], dim=1)
    return torch.softmax(logits, dim=1)


def foreground_probabilities(logits: torch.Tensor, labels: LabelSpec) -> torch.Tensor:
    """Probabilities of the non-background classes ``(N, C - 1, H, W)`` (one channel for binary tasks)."""
    _check(logits, labels)
    if labels.activation == "sigmoid":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)[:, 1:]


def _check(logits: torch.Tensor, labels: LabelSpec) -> None:
    if logits.ndim != 4 or logits.shape[1] != labels.num_outputs:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not fit the label spec ({labels.num_outputs} output channel(s), "
            f"{labels.activation}, classes {list(labels.classes)})"
        )


__all__ = ["class_probabilities", "foreground_probabilities"]
