"""Decoders: the interface the base model needs, and the U-Net decoder (deepest map up to the finest)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError
from mrseg.models.blocks import Unit, UpConvBNReLU


class Decoder(nn.Module):
    """Interface of a decoder.

    ``forward(features)`` takes the (fused) feature maps, finest first, and returns
    :attr:`out_channels` channels at the input resolution (the head's input).
    """

    out_channels: int

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class UpBlock(nn.Module):
    """One decoder level: 2x2 transposed conv (stride 2) + BN + ReLU, concatenate the skip, a unit."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = UpConvBNReLU(in_channels, out_channels, 2)
        self.unit = Unit(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.unit(torch.cat([self.up(x), skip], dim=1))


class UNetDecoder(Decoder):
    """From the deepest map up through one :class:`UpBlock` per shallower level.

    Parameters
    ----------
    encoder_channels
        Channels of the feature maps it receives, finest first (an encoder's ``out_channels``).
    reductions
        Their downsampling factors (an encoder's ``reductions``); must be ``1, 2, 4, ...``.

    ``forward(features)`` takes the maps (skips of levels ``0..D-1`` then the deepest) and returns
    :attr:`out_channels` ``= encoder_channels[0]`` channels at the input resolution.
    """

    def __init__(self, encoder_channels: Sequence[int], reductions: Sequence[int]) -> None:
        super().__init__()
        channels = list(encoder_channels)
        if list(reductions) != [2**level for level in range(len(channels))]:
            raise ModelConfigError(
                f"the U-Net decoder needs feature maps at reductions 1, 2, 4, ..., got {list(reductions)}"
            )
        self.out_channels = channels[0]
        # blocks[l] maps level l+1 -> level l; run from the deepest level up.
        self.blocks = nn.ModuleList(
            UpBlock(channels[level + 1], channels[level], channels[level]) for level in range(len(channels) - 1)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for level in range(len(self.blocks) - 1, -1, -1):
            x = self.blocks[level](x, features[level])
        return x
