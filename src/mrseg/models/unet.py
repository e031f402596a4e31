"""The single-resolution U-Net of the paper (its baseline; an MRN with one branch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.blocks import Decoder, Encoder, SegmentationModel
from mrseg.models.sizes import check_spatial, gammas_from_mpps, required_multiple


def check_hparams(*, num_classes: int, width: int, depth: int, in_channels: int) -> None:
    """Validate the shape hyper-parameters shared by all networks (raises :class:`ModelConfigError`)."""
    for name, value, low in (("num_classes", num_classes, 1), ("width", width, 1), ("in_channels", in_channels, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ModelConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ModelConfigError(f"depth must be an integer >= 0, got {depth!r}")


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
        super().__init__()
        check_hparams(num_classes=num_classes, width=width, depth=depth, in_channels=in_channels)
        mpps = [float(m) for m in mpps]
        if len(mpps) != 1:
            raise ModelConfigError(
                f"unet takes one resolution, got mpps {mpps}; use mrn_bilinear or mrn_transposed for "
                f"several, or mpps=[{mpps[0] if mpps else 0.5}]"
            )
        gammas_from_mpps(mpps)
        self.mpps = mpps
        self.depth = depth
        self.required_multiple = required_multiple(depth, mpps)
        self.encoder = Encoder(in_channels, width, depth)
        self.decoder = Decoder(width, depth)
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)
        self.hparams: dict[str, Any] = {
            "name": "unet",
            "mpps": mpps,
            "num_classes": num_classes,
            "width": width,
            "depth": depth,
            "in_channels": in_channels,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            if not torch.jit.is_tracing() and x.shape[1] != 1:
                raise ModelConfigError(f"unet expects one resolution (N, 1, C, H, W), got shape {tuple(x.shape)}")
            x = x[:, 0]
        if x.ndim != 4:
            raise ModelConfigError(f"unet expects (N, C, H, W) or (N, 1, C, H, W), got shape {tuple(x.shape)}")
        check_spatial(x, self.required_multiple, self.depth, self.mpps)
        return self.head(self.decoder(self.encoder(x)))
