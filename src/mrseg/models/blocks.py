"""Building blocks shared by the U-Net and the MRN (Gu et al. 2018).

Every convolution is followed by batch norm (so convolutions carry no bias) and, except in the
fusion layer, by ReLU. All spatial sizes below are in pixels of the feature map at that level;
level ``l`` of the encoder works at ``1 / 2**l`` of the input resolution.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationModel(nn.Module):
    """What every registry network offers besides ``forward``.

    Attributes
    ----------
    hparams
        ``{"name": ..., **create_model kwargs}`` in plain Python types (set by ``create_model``).
    mpps
        Input resolutions in microns per pixel, finest first (J = ``len(mpps)``).
    depth
        Pooling levels D.
    required_multiple
        Input height and width (pixels) must be multiples of it: ``2**depth * max(gamma)``.
    """

    hparams: dict[str, Any]
    mpps: list[float]
    depth: int
    required_multiple: int


class ConvBNReLU(nn.Sequential):
    """3x3 convolution ('same' padding, no bias) -> batch norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Unit(nn.Sequential):
    """The paper's unit: two :class:`ConvBNReLU` layers; keeps the spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


def level_channels(width: int, depth: int) -> list[int]:
    """Channels of encoder levels ``0..depth-1`` and of the bottleneck (last entry): ``width * 2**l``."""
    return [width * 2**level for level in range(depth + 1)]


class Encoder(nn.Module):
    """``depth`` units, each followed by 2x2 max pooling, then a bottleneck unit.

    ``forward`` returns the ``depth + 1`` feature maps *before* pooling: level ``l`` has
    ``width * 2**l`` channels at ``H / 2**l`` x ``W / 2**l``; the last one is the bottleneck.
    The input size must be divisible by ``2**depth``.
    """

    def __init__(self, in_channels: int, width: int, depth: int) -> None:
        super().__init__()
        channels = level_channels(width, depth)
        ins = [in_channels, *channels[:-1]]
        self.units = nn.ModuleList(Unit(i, o) for i, o in zip(ins, channels, strict=True))
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for index, unit in enumerate(self.units):
            if index > 0:
                x = self.pool(x)
            x = unit(x)
            features.append(x)
        return features


class UpBlock(nn.Module):
    """One decoder level: 2x2 transposed conv (stride 2) + BN + ReLU, concatenate the skip, a unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.unit = Unit(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.unit(torch.cat([self.up(x), skip], dim=1))


class Decoder(nn.Module):
    """The U-Net decoder: from the bottleneck up through ``depth`` :class:`UpBlock` levels.

    ``forward(features)`` takes the encoder's list (skips of levels ``0..depth-1`` then the
    bottleneck) and returns ``width`` channels at the input resolution.
    """

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        channels = level_channels(width, depth)
        # blocks[l] maps level l+1 -> level l; run from the deepest level up.
        self.blocks = nn.ModuleList(UpBlock(channels[level + 1], channels[level]) for level in range(depth))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for level in range(len(self.blocks) - 1, -1, -1):
            x = self.blocks[level](x, features[level])
        return x


def center_crop(x: torch.Tensor, gamma: int) -> torch.Tensor:
    """Centre crop of a ``(N, C, h, w)`` map to ``floor(h / gamma) x floor(w / gamma)``.

    The crop starts at ``floor((h - hc) / 2)`` (likewise for x): when ``h - hc`` is odd the crop sits
    half a pixel towards the top-left of the exact centre.
    """
    h, w = x.shape[-2], x.shape[-1]
    hc, wc = h // gamma, w // gamma
    top, left = (h - hc) // 2, (w - wc) // 2
    return x[..., top : top + hc, left : left + wc]


class CropUpscale(nn.Module):
    """Centre-crop a coarse branch's map by ``gamma`` and upscale it back by ``gamma``.

    Parameters
    ----------
    channels
        Channels of the map (unchanged).
    gamma
        Ratio ``mpp_j / mpp_1`` (a power of two); the central ``1/gamma`` of the coarse patch covers
        the same tissue as the whole finest patch.
    mode
        ``"bilinear"``: ``F.interpolate(..., mode="bilinear", align_corners=False)``, no parameters.
        ``"transposed"``: ``ConvTranspose2d(channels, channels, kernel=stride=gamma)`` + BN + ReLU
        (the decoder's up-sampling layer, generalised to ratio ``gamma``).
    """

    def __init__(self, channels: int, gamma: int, mode: str) -> None:
        super().__init__()
        if mode not in ("bilinear", "transposed"):
            raise ValueError(f"unknown upscaling mode {mode!r} (expected 'bilinear' or 'transposed')")
        self.gamma = int(gamma)
        self.mode = mode
        self.up: nn.Module | None = None
        if mode == "transposed":
            self.up = nn.Sequential(
                nn.ConvTranspose2d(channels, channels, kernel_size=self.gamma, stride=self.gamma, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop = center_crop(x, self.gamma)
        if self.up is not None:
            return self.up(crop)
        if self.gamma == 1:
            return crop
        return F.interpolate(crop, scale_factor=float(self.gamma), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, mode={self.mode!r}"


class Fusion(nn.Module):
    """Fuse one level of J branches: crop+upscale branches ``2..J``, concatenate, 1x1 conv + BN.

    The 1x1 convolution (no bias, identity activation) maps ``J * channels`` back to ``channels``,
    so the decoder sees the same shapes as a single-resolution U-Net.
    """

    def __init__(self, channels: int, gammas: list[int], mode: str) -> None:
        super().__init__()
        self.upscale = nn.ModuleList(CropUpscale(channels, g, mode) for g in gammas)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels * (len(gammas) + 1), channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, finest: torch.Tensor, coarser: list[torch.Tensor]) -> torch.Tensor:
        maps = [finest] + [up(x) for up, x in zip(self.upscale, coarser, strict=True)]
        return self.fuse(torch.cat(maps, dim=1))
