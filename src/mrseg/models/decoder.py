"""Decoders: the interface the base model needs, the U-Net decoder and the decoder over a backbone's stages.

Both go from the deepest (fused) feature map up to the input resolution, one :class:`UpBlock` per
factor of two. :class:`UNetDecoder` mirrors the U-Net encoder (a skip at every level, reductions
1, 2, 4, ...). :class:`BackboneDecoder` adapts to any encoder whose maps sit at consecutive powers of
two (a timm backbone: strides 2, 4, ..., 32 for a ResNet, 4, ..., 32 for a ConvNeXt): it takes the
skips with the backbone's channels and adds skip-less up-steps down to stride 1.
"""

from __future__ import annotations

import itertools
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
    """One decoder level: 2x2 transposed conv (stride 2) + BN + ReLU, concatenate the skip, a unit.

    With ``skip_channels=0`` the level has no skip (``forward(x, None)``): a backbone whose finest map
    is at stride 2 or more gets such levels on the way to the input resolution.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = UpConvBNReLU(in_channels, out_channels, 2)
        self.unit = Unit(out_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = self.up(x)
        return self.unit(x if skip is None else torch.cat([x, skip], dim=1))


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


def decoder_levels(reductions: Sequence[int]) -> list[int]:
    """``log2`` of each reduction; they must be consecutive (each map half the size of the previous).

    Raises
    ------
    ModelConfigError
        A reduction that is not a power of two, or a gap / repeat between consecutive maps.
    """
    levels = [int(r).bit_length() - 1 for r in reductions]
    if any(r < 1 or 2**level != r for r, level in zip(reductions, levels, strict=True)) or any(
        b != a + 1 for a, b in itertools.pairwise(levels)
    ):
        raise ModelConfigError(
            f"the decoder needs feature maps at consecutive powers of two (e.g. strides 2, 4, 8, 16, 32), "
            f"got {list(reductions)}"
        )
    return levels


class BackboneDecoder(Decoder):
    """A U-Net decoder of base width ``width`` over any encoder's maps at consecutive strides.

    Level ``l`` of the decoder is at stride ``2**l`` and has ``width * 2**l`` channels; the deepest
    encoder map (stride ``2**D``) enters with its own channels. ``blocks[l]`` maps level ``l + 1`` to
    level ``l`` and concatenates the encoder's map of stride ``2**l`` when there is one (its channels
    are the backbone's); levels finer than the encoder's finest map have no skip. With an encoder at
    strides 1, 2, 4, ... of ``width * 2**l`` channels this is the same network as
    :class:`UNetDecoder`.

    Parameters
    ----------
    encoder_channels
        Channels of the encoder's maps, finest first.
    reductions
        Their strides (input pixels per map pixel), consecutive powers of two.
    width
        Channels of the decoder at stride 1 (the head's input).
    """

    def __init__(self, encoder_channels: Sequence[int], reductions: Sequence[int], width: int) -> None:
        super().__init__()
        levels = decoder_levels(reductions)
        first, deepest = levels[0], levels[-1]
        if deepest == 0:
            raise ModelConfigError(f"the decoder needs at least one map coarser than the input, got {list(reductions)}")
        skips = dict(zip(levels, encoder_channels, strict=True))
        channels = [width * 2**level for level in range(deepest)] + [int(encoder_channels[-1])]
        self.out_channels = width
        self.first_skip = first
        self.blocks = nn.ModuleList(
            UpBlock(channels[level + 1], skips.get(level, 0), channels[level]) for level in range(deepest)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for level in range(len(self.blocks) - 1, -1, -1):
            skip = features[level - self.first_skip] if level >= self.first_skip else None
            x = self.blocks[level](x, skip)
        return x
