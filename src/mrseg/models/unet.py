"""The single-resolution U-Net of the paper (its baseline; the base model with one branch, no fusion)."""

from __future__ import annotations

from collections.abc import Sequence

from mrseg.core.errors import ModelConfigError
from mrseg.models.backbones import DEFAULT_ENCODER, encoder_parts
from mrseg.models.base import SegmentationModel
from mrseg.models.registry import register_model


@register_model("unet")
class UNet(SegmentationModel):
    """U-Net: encoder (``depth`` units + pooling, bottleneck unit, or a timm backbone), decoder, 1x1 head.

    Parameters
    ----------
    mpps
        The single input resolution in microns per pixel (a one-element sequence; recorded only).
    num_classes
        Logit channels ``C`` (1 for binary with sigmoid, > 1 for softmax).
    width
        Channels of the first level ``F``; level ``l`` has ``F * 2**l`` (with a backbone: the decoder's).
    depth
        Number of pooling levels ``D``; input sizes must be multiples of ``2**D``. With a backbone:
        the stages of stride up to ``2**D`` are used (:mod:`mrseg.models.backbones`).
    in_channels
        Image channels (3 for RGB).
    encoder
        ``"unet"`` (the paper's encoder) or a timm model name (``"resnet34"``, ...; needs ``mrseg[timm]``).
    freeze
        Encoder parts to freeze for fine-tuning (:mod:`mrseg.models.freeze`), e.g. ``["stage0", "stage1"]``.

    Input ``(N, in_channels, H, W)`` or ``(N, 1, in_channels, H, W)``; output logits ``(N, C, H, W)``.
    """

    def __init__(
        self,
        mpps: Sequence[float],
        num_classes: int = 1,
        width: int = 32,
        depth: int = 4,
        in_channels: int = 3,
        encoder: str = DEFAULT_ENCODER,
        freeze: Sequence[str] = (),
    ) -> None:
        values = [float(m) for m in mpps]
        if len(values) != 1:
            raise ModelConfigError(
                f"unet takes one resolution, got mpps {values}; use mrn_bilinear or mrn_transposed for "
                f"several, or mpps=[{values[0] if values else 0.5}]"
            )
        make_encoder, make_decoder = encoder_parts(encoder, in_channels, width, depth)
        super().__init__(
            "unet",
            values,
            encoder=make_encoder,
            num_classes=num_classes,
            decoder=make_decoder,
            freeze=freeze,
            options={
                "width": width,
                "depth": depth,
                "in_channels": in_channels,
                "encoder": encoder,
                "freeze": list(freeze),
            },
        )
