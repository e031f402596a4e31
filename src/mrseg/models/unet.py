"""The single-resolution U-Net of the paper (its baseline; the base model with one branch, no fusion)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from mrseg.core.errors import ModelConfigError
from mrseg.models.base import SegmentationModel
from mrseg.models.encoder import UNetEncoder
from mrseg.models.registry import register_model


@register_model("unet")
class UNet(SegmentationModel):
    """U-Net: encoder (``depth`` units + pooling, bottleneck unit), decoder, 1x1 head to ``num_classes`` logits.

    Parameters
    ----------
    mpps
        The single input resolution in microns per pixel (a one-element sequence; recorded only).
    num_classes
        Logit channels ``C`` (1 for binary with sigmoid, > 1 for softmax).
    width
        Channels of the first level ``F``; level ``l`` has ``F * 2**l``.
    depth
        Number of pooling levels ``D``; input sizes must be multiples of ``2**D``.
    in_channels
        Image channels (3 for RGB).

    Input ``(N, in_channels, H, W)`` or ``(N, 1, in_channels, H, W)``; output logits ``(N, C, H, W)``.
    """

    def __init__(
        self,
        mpps: Sequence[float],
        num_classes: int = 1,
        width: int = 32,
        depth: int = 4,
        in_channels: int = 3,
    ) -> None:
        values = [float(m) for m in mpps]
        if len(values) != 1:
            raise ModelConfigError(
                f"unet takes one resolution, got mpps {values}; use mrn_bilinear or mrn_transposed for "
                f"several, or mpps=[{values[0] if values else 0.5}]"
            )
        super().__init__(
            "unet",
            values,
            encoder=partial(UNetEncoder, in_channels, width, depth),
            num_classes=num_classes,
            options={"width": width, "depth": depth, "in_channels": in_channels},
        )
